"""Fetch a source (URL, ytsearch query or local path) with yt-dlp into the work dir.

Local files are used in place. URLs go through the yt-dlp Python API (never a shell), in a child process that
pipeline/fetch.py kills at `download.deadline_s` or `download.max_bytes`, into
`<out>/work/<lang>/<video_key>/source.<ext>`; a file already there from an earlier run is reused. A
`ytsearchN:` row fans out into one row per result (key from the result's id, never its title), skipping results
the ledger marks finished. A bad source is a recorded drop (404, too long, too large); a transient failure
(HTTP 429/5xx, reset, timeout, the deadline) is retried and then left for the next run (pipeline/faults.py). A
site that refuses the session itself (YouTube's bot check or rate limit) leaves the video for the next run at once,
and is not asked again in this run for `download.refused_pause_s`; `download.cookies` signs the session in.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .. import faults, fetch, media
from ..config import BuildConfig, format_sort_fields
from ..manifest import source_kind
from ..record import Row, drop, make_key
from .base import Stage

log = logging.getLogger(__name__)

_SEARCH = re.compile(r"^ytsearch(\d*|all):(.+)$", re.DOTALL)
_DONE_FILE = re.compile(r"^source\.[A-Za-z0-9]{1,8}$")  # not .part/.ytdl/.f137.mp4 intermediates


def _finished_file(work: Path) -> Path | None:
    files = sorted(p for p in work.glob("source.*") if _DONE_FILE.match(p.name) and p.stat().st_size > 0)
    return files[0] if files else None


def _remove_partials(work: Path) -> None:
    """Delete everything a stopped or failed download left (source.*.part, .ytdl, format fragments, the file)."""
    for p in work.glob("source.*"):
        p.unlink(missing_ok=True)


def _site(url: str) -> str:
    """The site a source is fetched from, for telling which one refused the session (ytsearch: YouTube)."""
    if _SEARCH.match(url):
        return "youtube.com"
    host = (urlparse(url).hostname or "").lower()
    host = re.sub(r"^(?:www|m|music)\.", "", host)
    return "youtube.com" if host in ("youtu.be", "youtube-nocookie.com") else host


class Download(Stage):
    name = "download"
    uses_model = False

    def __init__(self, cfg: BuildConfig):
        super().__init__(cfg)
        self._refused: dict[str, float] = {}  # site -> monotonic time until which it is not asked again

    def _opts(self, **extra: Any) -> dict[str, Any]:
        """yt-dlp options (JSON-able: they travel to the child process in pipeline/fetch.py)."""
        c = self.cfg.download
        opts: dict[str, Any] = {
            "quiet": True,
            "no_warnings": False,
            "noprogress": True,
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
        if c.cookies:
            opts["cookiefile"] = c.cookies  # pipeline/fetch.py hands yt-dlp a private copy (yt-dlp writes it back)
        if c.sleep_s > 0:
            opts |= {"sleep_interval": c.sleep_s, "max_sleep_interval": 2 * c.sleep_s, "sleep_interval_requests": 0.75}
        if sort := format_sort_fields(c.format_sort):
            opts["format_sort"] = sort
        if c.rate_limit:
            from yt_dlp.utils import parse_bytes

            opts["ratelimit"] = parse_bytes(c.rate_limit)
        return opts | extra

    def _fetch(self, op: str, url: str, opts: dict[str, Any], work: Path | None) -> dict[str, Any]:
        """One yt-dlp job in a killable child under the download limits; a passed deadline raises Transient
        (left for the next run at once: its partial file is removed), too many bytes returns too_large. A site
        that refuses this session (faults.SESSION_REFUSED) raises Transient for the next run at once, and is not
        asked again for `download.refused_pause_s`: every request would be refused too, and more requests only
        extend a rate limit."""
        c = self.cfg.download
        site = _site(url)
        until = self._refused.get(site, 0.0)
        if time.monotonic() < until:
            raise faults.Transient(f"{site} refused this session; not asked again in this run for "
                                   f"{until - time.monotonic():.0f} s (download.refused_pause_s; download.cookies "
                                   "signs the session in)", retry_now=False)  # fmt: skip
        job = {"op": op, "url": url, "opts": opts, "max_duration_s": c.max_duration_s, "max_bytes": c.max_bytes,
               "deadline_s": c.deadline_s}
        try:
            result = fetch.run_job(job, c.deadline_s, c.max_bytes, work)
        except fetch.LimitExceeded as exc:
            if work is not None:
                _remove_partials(work)
            if exc.kind == "too_large":
                return {"ok": False, "info": None, "error": str(exc), "transient": False, "too_large": True,
                        "too_long": ""}  # fmt: skip
            raise faults.Transient(str(exc), retry_now=False) from None
        if not result["ok"] and faults.SESSION_REFUSED.search(result["error"] or ""):
            log.warning("%s refused this session: %s; its other sources wait for the next run", site, result["error"])
            self._refused[site] = time.monotonic() + c.refused_pause_s
            raise faults.Transient(f"{result['error']} (left for the next run; download.cookies signs the session "
                                   "in)", retry_now=False)  # fmt: skip
        return result

    def process(self, row: Row) -> Row | list[Row]:
        kind = source_kind(row["source"])
        if kind == "local":
            return self._local(row)
        if kind == "url":
            return self._url(row)
        if kind == "ytsearch":
            return self._search(row)
        return drop(row, "unsupported_source", self.name, f"unsupported source {row['source'][:80]!r}")

    def _duration(self, path: Path) -> float:
        """The container's duration, else (pipe-written files, live recordings) the one its packets span, read up
        to max_duration_s + 1 s only. 0.0 when unreadable (Normalize then records corrupt_video)."""
        try:
            duration = media.probe(path)["duration_s"]
            return duration or media.stream_duration(path, self.cfg.download.max_duration_s)
        except media.MediaError as exc:
            faults.raise_if_transient(exc)  # a probe that timed out under load says nothing about the file
            return 0.0

    def _local(self, row: Row) -> Row:
        path = Path(row["source"])
        if not path.is_file():
            return drop(row, "download_failed", self.name, f"local file not found: {path}")
        row |= {"video_path": str(path.resolve()), "title": path.stem, "channel": "",
                "duration_s": self._duration(path), "license": row.get("license", ""), "webpage_url": ""}  # fmt: skip
        return self._check_length(row)

    def _check_length(self, row: Row) -> Row:
        limit = self.cfg.download.max_duration_s
        if row.get("duration_s") and row["duration_s"] > limit:
            return drop(row, "too_long", self.name, f"{row['duration_s']:.0f} s > max_duration_s {limit:.0f}")
        return row

    def _url(self, row: Row, hint: dict | None = None) -> Row:
        """Download one URL into the work dir (or reuse the file an earlier run left there)."""
        work = self.video_dir(row)
        info: dict = dict(hint or {})
        if (info.get("duration") or 0) > self.cfg.download.max_duration_s:  # known from the search: skip early
            row["duration_s"] = float(info["duration"])
            return self._check_length(row)
        path = _finished_file(work)
        if path is None:
            archive = self.cfg.work_dir / "download_archive.txt"
            for use_archive in (True, False):
                tmpl = str(work).replace("%", "%%") + "/source.%(ext)s"  # '%' in --out must not be a field
                # playlistend: a playlist URL yields its first video only (list videos as separate manifest rows)
                opts = self._opts(outtmpl=tmpl, playlistend=1)
                if use_archive:
                    opts["download_archive"] = str(archive)
                result = self._fetch("download", row["source"], opts, work)
                if result["too_large"]:
                    _remove_partials(work)
                    return drop(row, "too_large", self.name, result["error"])
                if not result["ok"]:
                    if result["transient"]:  # HTTP 429/5xx, reset, timeout: retried (a .part file resumes)
                        raise faults.Transient(result["error"])
                    _remove_partials(work)
                    return drop(row, "download_failed", self.name, result["error"])
                if result["too_long"]:
                    _remove_partials(work)
                    row["duration_s"] = float((result["info"] or {}).get("duration") or 0.0)
                    return drop(row, "too_long", self.name, result["too_long"])
                info = result["info"] or info
                path = _finished_file(work)
                if path is not None:
                    break
                log.info("%s: in %s but no file in %s; fetching again", row["key"], archive, work)
            if path is None:
                return drop(row, "download_failed", self.name, "yt-dlp finished without a file")
        size = path.stat().st_size
        if size > self.cfg.download.max_bytes:  # a file left by an earlier run with a larger limit
            _remove_partials(work)
            return drop(row, "too_large", self.name, f"{size} bytes > download.max_bytes {self.cfg.download.max_bytes}")
        duration = self._duration(path) or float(info.get("duration") or 0.0)
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
        result = self._fetch("search", query, self._opts(extract_flat="in_playlist"), None)
        if not result["ok"]:
            raise (faults.Transient if result["transient"] else RuntimeError)(result["error"])
        return [e for e in ((result["info"] or {}).get("entries") or []) if isinstance(e, dict)]

    def _search(self, row: Row) -> Row | list[Row]:
        m = _SEARCH.match(row["source"])
        assert m is not None
        cap = self.cfg.download.max_results_per_query
        n = cap if m.group(1) == "all" else min(int(m.group(1) or 1), cap)
        try:
            entries = self.search(f"ytsearch{n}:{m.group(2)}", row["key"])
        except Exception as exc:
            faults.raise_if_transient(exc)  # retried by Stage.__call__, then retry_later
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
                                 "source_public": url, "search_query": row["source"],
                                 "title": str(entry.get("title") or "")}  # fmt: skip
            if source_kind(url) != "url":
                out.append(drop(child, "unsupported_source", self.name, f"search result url {url[:80]!r}"))
                continue
            try:  # one result's transient failure is retried (then retry_later) on its own, not the whole search
                out.append(self.attempt(lambda child=child, entry=entry: self._url(dict(child), hint=entry), key))
            except Exception as exc:
                out.append(self.failed(child, exc))
        return out
