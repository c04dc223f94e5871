"""A long video fanned out by shot is committed part by part; the part that completes the set writes the video's
one ledger entry.

Why: a source of an hour would otherwise be one unit of work that one faces actor chews alone while the rest of
the cluster idles. ShotSplit numbers consecutive clips into parts of about `shots.part_s` seconds (`part_index`,
`part_count` on every row) and each part flows through the clip stages on its own; the Commit stage, wherever
it runs, writes `<out>/ledger_parts/<video>/<i>-of-<n>.json` and then looks for the other parts. Each part
writes before it looks, so the last one to land sees them all (and two that land together both merge the same
entry: the rename is atomic and the content equal). A video is still done only when `<out>/ledger/<video>.json`
exists, so a run killed between parts leaves parts that the next run's `recover` deletes, and the video is redone
whole: nothing lost, nothing twice.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from .index import ledger_path, scalar_fields, write_atomic, write_ledger
from .record import Row, safe_id

log = logging.getLogger(__name__)
PARTS_DIR = "ledger_parts"


def part_of(row: Row) -> tuple[int, int]:
    """(part index, part count) of a row; (0, 1) for rows of a video that was not fanned out."""
    return int(row.get("part_index") or 0), max(1, int(row.get("part_count") or 1))


def commit_part(out: str | Path, video_key: str, rows: list[Row], prints: dict[str, dict[str, str]]) -> bool:
    """Commit one part of a video; True when this made the video's ledger entry (all parts are in)."""
    index, count = part_of(rows[0])
    if count == 1:
        write_ledger(out, video_key, rows, prints)
        return True
    d = Path(out) / PARTS_DIR / safe_id(video_key)
    entry = {"video_key": video_key, "part": index, "parts": count, "rows": [scalar_fields(r) for r in rows],
             "prints": prints}  # fmt: skip
    write_atomic(d / f"{index:05d}-of-{count:05d}.json", json.dumps(entry, ensure_ascii=False).encode("utf-8"))
    return merge_if_complete(out, video_key, count)


def merge_if_complete(out: str | Path, video_key: str, count: int) -> bool:
    d = Path(out) / PARTS_DIR / safe_id(video_key)
    paths = [d / f"{i:05d}-of-{count:05d}.json" for i in range(count)]
    if not all(p.is_file() for p in paths):
        return False
    rows: list[Row] = []
    prints: dict[str, dict[str, str]] = {}
    for p in paths:
        try:
            e = json.loads(p.read_text())
        except (OSError, ValueError):  # another part's merge removed the set meanwhile: that merge did the job
            return ledger_path(out, video_key).is_file()
        rows += e["rows"]
        prints |= e["prints"]
    write_ledger(out, video_key, rows, prints)
    shutil.rmtree(d, ignore_errors=True)
    log.debug("sink: %s committed from %d parts", video_key, count)
    return True


def clear_unfinished(out: str | Path) -> None:
    """At the start of a run every part left is a killed run's: of a video not ledgered (it is redone whole) or
    of one whose merge was cut short after its ledger entry was written."""
    root = Path(out) / PARTS_DIR
    if not root.is_dir():
        return
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        log.info("sink: removing the parts a killed run left of %s (the video is redone)", d.name)
        shutil.rmtree(d, ignore_errors=True)
