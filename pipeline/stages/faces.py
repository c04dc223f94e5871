"""Detect, track and crop the one speaking face; per-frame boxes, landmarks, pose, identity."""

from __future__ import annotations

from ..record import Row
from .base import Stage


class FaceTrack(Stage):
    name = "faces"
    uses_model = True

    def process(self, row: Row) -> Row | list[Row]:
        raise NotImplementedError("FaceTrack is being written")
