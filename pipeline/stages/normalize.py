"""Re-encode to 25 fps CFR H.264 + 16 kHz mono PCM so every later stage sees the same timeline."""

from __future__ import annotations

from ..record import Row
from .base import Stage


class Normalize(Stage):
    name = "normalize"
    uses_model = False

    def process(self, row: Row) -> Row | list[Row]:
        raise NotImplementedError("Normalize is being written")
