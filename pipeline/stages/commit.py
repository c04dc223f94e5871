"""The last stage of the graph: check each clip's members, fingerprint it, and commit the video's ledger entry.

Runs where the video was processed (a Ray task on any node; `--out` is on storage every node reaches), so no
media passes through the driver: after this stage a kept clip's members (`<key>_crop.mp4`, `<key>.wav`,
`<key>_track.npz`) are final in the work dir and its row, identity embedding and video fingerprint are in
`<out>/ledger/<video_key>.json`, written atomically (a long video fanned out by shot is committed part by part
and the last part writes that entry: pipeline/ledger_parts.py). The finalize step (pipeline/finalize.py) packs the shards.
Rows the soft gates dropped are committed with their members too, so `pipeline.select` can keep them later.
A video with a `retry_later` row (a transient failure upstream) is never ledgered: the build lists it as pending
and the next run redoes it; so does a transient failure here (a full disk while writing the entry, EIO reading a
member), after `retry.attempts` tries.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .. import faults, sink
from ..fingerprint import crop_hashes, encode
from ..gates import origin
from ..ledger_parts import commit_part, part_of
from ..record import STATUS_RETRY, Row, drop, retry_later
from ..track_io import read_track
from .base import Stage

log = logging.getLogger(__name__)


def member_problem(row: Row) -> str:
    """Why the row's shard members cannot be packed ("" when all three are non-empty files)."""
    for _, fld in sink.MEMBERS:
        path = row.get(fld)
        if not path:
            return f"row has no {fld}"
        try:
            if not Path(path).is_file() or Path(path).stat().st_size == 0:
                return f"{fld} {path} is missing or empty"
        except OSError as exc:
            faults.raise_if_transient(exc)
            return f"{fld}: {type(exc).__name__}: {exc}"
    return ""


def prints(row: Row) -> dict[str, str]:
    """The clip's identity embedding (float16) and video fingerprint (uint64 pHash per sample), base64.

    The hashes are the faces stage's (taken from the crop frames it encoded); a crop without them is decoded."""
    emb = np.asarray(read_track(row["track_path"])["id_embedding"], np.float32).reshape(-1)
    out = {"video": encode(crop_hashes(row["crop_path"]))}
    if np.isfinite(emb).all() and np.linalg.norm(emb) > 0:
        out["identity"] = encode(emb.astype(np.float16))
    return out


class Commit(Stage):
    name = "sink"
    uses_model = False
    scores_soft_drops = True

    def run_video(self, rows: list[Row]) -> list[Row]:
        """All rows of one source video (or several): per video, members checked, prints taken, one ledger entry."""
        for vk, part in sorted({(r["video_key"], part_of(r)[0]) for r in rows}):
            mine = [r for r in rows if r["video_key"] == vk and part_of(r)[0] == part]
            if any(r.get("status") == STATUS_RETRY for r in mine):
                continue  # redone whole by the next run: nothing of it is committed now
            try:
                self.attempt(lambda mine=mine, vk=vk: self.commit_video(vk, mine), vk)
            except Exception as exc:
                if not faults.is_transient(exc):
                    raise
                log.warning("sink: %s left for the next run: %s", vk, faults.describe(exc))
                for r in mine:
                    retry_later(r, self.name, faults.describe(exc))
        return rows

    def commit_video(self, video_key: str, rows: list[Row]) -> None:
        found: dict[str, dict[str, str]] = {}
        for row in rows:
            if origin(row)[0] not in ("ok", "soft"):
                continue
            problem = member_problem(row)
            if not problem:
                try:
                    found[row["key"]] = prints(row)
                except Exception as exc:  # an unreadable crop or track: that clip is lost, the video goes on
                    faults.raise_if_transient(exc)
                    problem = f"{type(exc).__name__}: {exc}"
            if problem:
                log.warning("sink: %s: %s", row.get("key"), problem)
                drop(row, "write_failed", self.name, problem)
        commit_part(self.cfg.out, video_key, rows, found)  # the video's ledger entry once all its parts are in
