"""Sharpness, brightness and head-pose gates on the face crop."""

from __future__ import annotations

from ..record import Row
from .base import Stage


class QualityFilter(Stage):
    name = "quality"
    uses_model = False

    def process(self, row: Row) -> Row | list[Row]:
        raise NotImplementedError("QualityFilter is being written")
