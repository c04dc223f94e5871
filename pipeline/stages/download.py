"""Fetch a source (URL, ytsearch query or local path) with yt-dlp into the work dir."""

from __future__ import annotations

from ..record import Row
from .base import Stage


class Download(Stage):
    name = "download"
    uses_model = False

    def process(self, row: Row) -> Row | list[Row]:
        raise NotImplementedError("Download is being written")
