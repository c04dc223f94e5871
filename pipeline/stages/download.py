"""Fetch a source (URL, ytsearch query or local path) with yt-dlp into the work dir.

Local files are used in place. URLs go through the yt-dlp Python API (never a shell) into
`<out>/work/<lang>/<video_key>/source.<ext>`; a file already there from an earlier run is reused. A
`ytsearchN:` row fans out into one row per result (key from the result's id, never its title), skipping results
the ledger marks finished. Every failure is a recorded drop so one bad source never stops a build.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from .. import media
from ..manifest import source_kind
from ..record import Row, drop, make_key
from .base import Stage

log = logging.getLogger(__name__)

_SEARCH = re.compile(r"^ytsearch(\d*|all):(.+)$", re.DOTALL)
_DONE_FILE = re.compile(r"^source\.[A-Za-z0-9]{1,8}$")  # not .part/.ytdl/.f137.mp4 intermediates


class _YdlLogger:
    """Routes yt-dlp's messages to logging (quiet console) and keeps the last error for the drop detail."""

    def __init__(self, key: str):
        self.key, self.last_error = key, ""

    def debug(self, msg: str) -> None:
        log.debug("yt-dlp %s: %s", self.key, msg)

    def info(self, msg: str) -> None:
        log.debug("yt-dlp %s: %s", self.key, msg)

    def warning(self, msg: str) -> None:
        log.info("yt-dlp %s: %s", self.key, msg)

    def error(self, msg: str) -> None:
        self.last_error = msg
        log.warning("yt-dlp %s: %s", self.key, msg)


def _finished_file(work: Path) -> Path | None:
    files = sorted(p for p in work.glob("source.*") if _DONE_FILE.match(p.name) and p.stat().st_size > 0)
    return files[0] if files else None


class Download(Stage):
    name = "download"
    uses_model = False

    def _opts(self, key: str, **extra: Any) -> dict[str, Any]:
        c = self.cfg.download
        opts: dict[str, Any] = {
            "quiet": True,
            "no_warnings": False,
            "noprogress": True,
            "logger": _YdlLogger(key),
            "socket_timeout": c.socket_timeout_s,
            "retries": c.retries,
            "fragment_retries": c.retries,
            "extractor_retries": c.retries,
            "noplaylist": True,
            "restrictfilenames": True,
            "format": c.format,
            "merge_output_format": "mkv",
            # YouTube needs a JS runtime (plus the yt-dlp-ejs package); use whichever of these is installed.
            "js_runtimes": {"deno": {}, "node": {}},
        }
        if c.rate_limit:
            from yt_dlp.utils import parse_bytes

            opts["ratelimit"] = parse_bytes(c.rate_limit)
        return opts | extra

    def process(self, row: Row) -> Row | list[Row]:
        kind = source_kind(row["source"])
        if kind == "local":
            return self._local(row)
        if kind == "url":
            return self._url(row)
        if kind == "ytsearch":
            return self._search(row)
        return drop(row, "unsupported_source", self.name, f"unsupported source {row['source'][:80]!r}")

    def _local(self, row: Row) -> Row:
        path = Path(row["source"])
        if not path.is_file():
            return drop(row, "download_failed", self.name, f"local file not found: {path}")
        try:
            duration = media.probe(path)["duration_s"]
        except media.MediaError:
            duration = 0.0  # unreadable: Normalize records it as corrupt_video
        row |= {"video_path": str(path.resolve()), "title": path.stem, "channel": "", "duration_s": duration,
                "license": row.get("license", ""), "webpage_url": ""}  # fmt: skip
        return self._check_length(row)

    def _check_length(self, row: Row) -> Row:
        limit = self.cfg.download.max_duration_s
        if row.get("duration_s") and row["duration_s"] > limit:
            return drop(row, "too_long", self.name, f"{row['duration_s']:.0f} s > max_duration_s {limit:.0f}")
        return row

    def _url(self, row: Row, hint: dict | None = None) -> Row:
        """Download one URL into the work dir (or reuse the file an earlier run left there)."""
        import yt_dlp

        work = self.video_dir(row)
        info: dict = dict(hint or {})
        if (info.get("duration") or 0) > self.cfg.download.max_duration_s:  # known from the search: skip early
            row["duration_s"] = float(info["duration"])
            return self._check_length(row)
        path = _finished_file(work)
        if path is None:
            rejected: list[str] = []
            limit = self.cfg.download.max_duration_s

            def match_filter(entry: dict, *, incomplete: bool = False) -> str | None:
                if (entry.get("duration") or 0) > limit:
                    rejected.append(f"{entry['duration']:.0f} s > max_duration_s {limit:.0f}")
                    return rejected[-1]
                return None

            archive = self.cfg.work_dir / "download_archive.txt"
            for use_archive in (True, False):
                tmpl = str(work).replace("%", "%%") + "/source.%(ext)s"  # '%' in --out must not be a field
                # playlistend: a playlist URL yields its first video only (list videos as separate manifest rows)
                opts = self._opts(row["key"], outtmpl=tmpl, match_filter=match_filter, playlistend=1)
                if use_archive:
                    opts["download_archive"] = str(archive)
                try:
                    with yt_dlp.YoutubeDL(opts) as ydl:
                        info = ydl.extract_info(row["source"], download=True) or info
                except Exception as exc:  # DownloadError, network errors, extractor bugs: all one drop
                    return drop(row, "download_failed", self.name, f"{type(exc).__name__}: {exc}")
                if rejected:
                    row["duration_s"] = float(info.get("duration") or 0.0)
                    return drop(row, "too_long", self.name, rejected[-1])
                path = _finished_file(work)
                if path is not None:
                    break
                log.info("%s: in %s but no file in %s; fetching again", row["key"], archive, work)
            if path is None:
                return drop(row, "download_failed", self.name, "yt-dlp finished without a file")
        try:
            duration = media.probe(path)["duration_s"]
        except media.MediaError:
            duration = float(info.get("duration") or 0.0)
        row |= {
            "video_path": str(path),
            "title": str(row.get("title") or info.get("title") or ""),  # a search result's title wins
            "channel": str(info.get("channel") or info.get("uploader") or ""),
            "duration_s": duration,
            "license": str(info.get("license") or row.get("license") or ""),
            "webpage_url": str(info.get("webpage_url") or row["source"]),
        }
        return self._check_length(row)

    def search(self, query: str, key: str) -> list[dict]:
        """Flat search results (id, url, title, duration, ...) without downloading anything."""
        import yt_dlp

        with yt_dlp.YoutubeDL(self._opts(key, extract_flat="in_playlist")) as ydl:
            info = ydl.extract_info(query, download=False) or {}
        return [e for e in (info.get("entries") or []) if isinstance(e, dict)]

    def _search(self, row: Row) -> Row | list[Row]:
        m = _SEARCH.match(row["source"])
        assert m is not None
        cap = self.cfg.download.max_results_per_query
        n = cap if m.group(1) == "all" else min(int(m.group(1) or 1), cap)
        try:
            entries = self.search(f"ytsearch{n}:{m.group(2)}", row["key"])
        except Exception as exc:
            return drop(row, "download_failed", self.name, f"search failed: {type(exc).__name__}: {exc}")
        if not entries:
            return drop(row, "download_failed", self.name, "search returned no results")
        ledger = Path(self.cfg.out) / "ledger"
        out: list[Row] = []
        seen: set[str] = set()
        for entry in entries:
            entry_id, url = str(entry.get("id") or ""), str(entry.get("url") or entry.get("webpage_url") or "")
            if not entry_id or entry_id in seen:
                continue
            seen.add(entry_id)
            key = make_key(row["lang_expected"], entry_id)
            if (ledger / f"{key}.json").exists():
                log.info("%s: %s finished in an earlier run, skipping", row["key"], key)
                continue
            child = dict(row) | {"key": key, "video_key": key, "source_id": entry_id, "source": url,
                                 "search_query": row["source"], "title": str(entry.get("title") or "")}  # fmt: skip
            if source_kind(url) != "url":
                out.append(drop(child, "unsupported_source", self.name, f"search result url {url[:80]!r}"))
                continue
            out.append(self._url(child, hint=entry))
        return out
