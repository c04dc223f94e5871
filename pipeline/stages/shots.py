"""Split a video into single-shot clips (PySceneDetect AdaptiveDetector), 2-20 s each."""

from __future__ import annotations

from ..record import Row
from .base import Stage


class ShotSplit(Stage):
    name = "shots"
    uses_model = False

    def process(self, row: Row) -> Row | list[Row]:
        raise NotImplementedError("ShotSplit is being written")
