"""Audio-visual offset and confidence; drop clips whose lips and audio disagree."""

from __future__ import annotations

from ..record import Row
from .base import Stage


class SyncFilter(Stage):
    name = "sync"
    uses_model = True

    def process(self, row: Row) -> Row | list[Row]:
        raise NotImplementedError("SyncFilter is being written")
