"""Load and validate the per-language manifests into seed rows.

A manifest dir holds one `<lang>.csv` per language (header: id,source,license,note; only `source` is required).
Manifests may come from anyone, so every value is checked before it reaches yt-dlp, ffmpeg or a path: a bad
line raises ManifestError naming `file:line` and why, instead of surfacing later as a confusing failure.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from pathlib import Path

from .config import LANGS
from .record import Row, seed_row

log = logging.getLogger(__name__)

COLUMNS: tuple[str, ...] = ("id", "source", "license", "note")
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")
_YTSEARCH = re.compile(r"^ytsearch(\d*|all):(.+)$", re.DOTALL)
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")
_URL = re.compile(r"^https?://[^/\s?#]+(?:[/?#]\S*)?$", re.IGNORECASE)
_MAX_FIELD = 2000


class ManifestError(ValueError):
    """A manifest line is invalid; the message starts with `file:line`."""


def source_kind(source: str) -> str:
    """'url', 'ytsearch' or 'local' (a string with any other `scheme:` prefix is 'unsupported')."""
    if _YTSEARCH.match(source):
        return "ytsearch"
    m = _SCHEME.match(source)
    if m and len(m.group(1)) > 1:  # one letter = a Windows drive, i.e. a path
        return "url" if m.group(1).lower() in ("http", "https") else "unsupported"
    return "local"


def _check_text(where: str, name: str, value: str) -> None:
    if _CONTROL.search(value):
        raise ManifestError(f"{where}: {name} contains a control character or line break: {value[:60]!r}")
    if len(value) > _MAX_FIELD:
        raise ManifestError(f"{where}: {name} longer than {_MAX_FIELD} characters")


def _check_id(where: str, raw_id: str) -> None:
    if "/" in raw_id or "\\" in raw_id or ".." in raw_id or raw_id.startswith((".", "-", "~")):
        raise ManifestError(f"{where}: id {raw_id!r} contains a path separator or traversal (use [A-Za-z0-9_-])")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", raw_id):
        raise ManifestError(f"{where}: id {raw_id!r} must be 1-128 characters of [A-Za-z0-9_.-]")


def _resolve_source(where: str, source: str, base: Path) -> tuple[str, str]:
    """(normalised source, default id) or ManifestError."""
    if source.startswith("-"):
        raise ManifestError(f"{where}: source {source[:60]!r} starts with '-' (would read as a command-line option)")
    kind = source_kind(source)
    if kind == "ytsearch":
        query = _YTSEARCH.match(source).group(2).strip()  # type: ignore[union-attr]
        if not query or query.startswith("-"):
            raise ManifestError(f"{where}: ytsearch query is empty or starts with '-': {source[:60]!r}")
        return source, source
    if kind == "url":
        if not _URL.match(source):
            raise ManifestError(f"{where}: malformed http(s) URL {source[:80]!r}")
        return source, source
    if kind == "unsupported":
        scheme = _SCHEME.match(source).group(1)  # type: ignore[union-attr]
        raise ManifestError(
            f"{where}: unsupported scheme {scheme!r} (allowed: http(s) URLs, ytsearchN:query, local file paths)"
        )
    path = Path(source).expanduser()
    path = (path if path.is_absolute() else base / path).resolve()
    if not path.is_file():
        raise ManifestError(f"{where}: local file {source!r} not found or not a regular file ({path})")
    return str(path), path.stem.lower()


def published_source(source: str, base: Path) -> str:
    """The source as a published sample names it: URLs and queries as given, a local path relative to the
    manifest folder (its own text when the manifest wrote it relative), never an absolute host path."""
    if source_kind(source) != "local":
        return source
    path = Path(source).expanduser()
    if not path.is_absolute():
        return path.as_posix()
    return Path(os.path.relpath(path, base.absolute())).as_posix()


def load_manifest_file(path: str | Path, lang: str, limit: int = 0) -> list[Row]:
    """Seed rows of one `<lang>.csv`; ManifestError on the first invalid line."""
    return [row for row, _ in _read_manifest(Path(path), lang, limit)]


def check_keys(rows: list[tuple[Row, str]]) -> None:
    """Two ids that sanitise to one key (`Clip.1` and `clip_1_<hash>`, ...) would make the second video vanish:
    refuse them before any work, naming both manifest lines."""
    first: dict[str, tuple[str, str]] = {}
    for row, where in rows:
        key = row["video_key"]
        if key in first:
            where1, id1 = first[key]
            raise ManifestError(f"{where}: id {row['source_id']!r} gives key {key!r}, the same as id {id1!r} on "
                                f"{where1}: make the ids differ in more than case or punctuation")  # fmt: skip
        first[key] = (where, row["source_id"])


def _read_manifest(path: Path, lang: str, limit: int = 0) -> list[tuple[Row, str]]:
    """(seed row, "file:line") per valid line; ManifestError on the first invalid one."""
    rows: list[tuple[Row, str]] = []
    seen_ids: dict[str, int] = {}
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, strict=True)
            header = next(reader, None)
            if header is None:
                return rows
            header = [h.strip().lower() for h in header]
            unknown = [h for h in header if h not in COLUMNS]
            if unknown or "source" not in header or len(set(header)) != len(header):
                raise ManifestError(
                    f"{path}:1: bad header {header} (unknown: {unknown}); expected columns from {list(COLUMNS)} "
                    "with 'source' required and no repeats"
                )
            for values in reader:
                where = f"{path}:{reader.line_num}"
                if not values or all(not v.strip() for v in values) or values[0].lstrip().startswith("#"):
                    continue  # blank line or comment
                if len(values) != len(header):
                    raise ManifestError(f"{where}: {len(values)} fields, header has {len(header)}")
                rec = {k: v.strip() for k, v in zip(header, values, strict=True)}
                for name, value in rec.items():
                    _check_text(where, name, value)
                if not rec.get("source"):
                    raise ManifestError(f"{where}: empty source")
                source, default_id = _resolve_source(where, rec["source"], path.parent)
                public = published_source(rec["source"], path.parent)
                raw_id = rec.get("id") or default_id
                if rec.get("id"):
                    _check_id(where, raw_id)
                if raw_id in seen_ids:
                    raise ManifestError(f"{where}: duplicate id {raw_id!r} (first on line {seen_ids[raw_id]})")
                seen_ids[raw_id] = reader.line_num
                rows.append(
                    (seed_row(lang, raw_id, source, license=rec.get("license", ""), note=rec.get("note", ""),
                              source_public=public), where)
                )
                if limit and len(rows) >= limit:
                    break
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc
    except csv.Error as exc:
        raise ManifestError(f"{path}:{reader.line_num}: CSV error: {exc}") from exc
    return rows


def load_manifests(manifest_dir: str | Path, langs: list[str] | tuple[str, ...], limit: int = 0) -> list[Row]:
    """Seed rows for `langs` from `<manifest_dir>/<lang>.csv`, at most `limit` per language (0 = all).

    A CSV whose name is not a known language is an error (a typo would otherwise be silently skipped);
    a requested language without a file is only a warning; two lines whose ids give one key are an error.
    """
    d = Path(manifest_dir)
    if not d.is_dir():
        raise ManifestError(f"{d}: manifest dir not found")
    for csv_path in sorted(d.glob("*.csv")):
        if csv_path.stem not in LANGS:
            raise ManifestError(f"{csv_path}: unknown language file (expected <lang>.csv with lang in {LANGS})")
    rows: list[tuple[Row, str]] = []
    for lang in langs:
        if lang not in LANGS:
            raise ManifestError(f"unknown language {lang!r} (known: {', '.join(LANGS)})")
        csv_path = d / f"{lang}.csv"
        if not csv_path.is_file():
            log.warning("no manifest for %s: %s missing, skipping the language", lang, csv_path)
            continue
        rows.extend(_read_manifest(csv_path, lang, limit))
    check_keys(rows)
    return [row for row, _ in rows]
