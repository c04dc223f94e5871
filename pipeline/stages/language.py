"""Whisper language ID, speech activity and the single-speaker check."""

from __future__ import annotations

from ..record import Row
from .base import Stage


class LanguageTagger(Stage):
    name = "language"
    uses_model = True

    def process(self, row: Row) -> Row | list[Row]:
        raise NotImplementedError("LanguageTagger is being written")
