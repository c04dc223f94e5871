"""The output dir's persistent parts: the lock, the per-video ledger, shard packing, and index.parquet.

Crash safety (a run killed anywhere resumes without losing or duplicating samples):
- one writer per output dir: `take_lock` (flock, dropped by the OS when the process dies) before any write;
- a video is done when its ledger entry `<out>/ledger/<video_key>.json` exists: written by the Commit stage via a
  `.tmp` sibling + fsync + rename, after the video's members are final in the work dir; a rerun skips it;
- shards are a pure function of the ledger and the config (pipeline/finalize.py): `pack_shard` writes
  `<name>.tar.tmp` and renames it, and records what it packed in `<out>/shard_state/` *after* the rename (the old
  record is removed *before*), so a shard whose record matches its plan is never rewritten and a half-made one is
  redone; `recover` deletes every leftover `.tmp` at start.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from .record import Row, safe_id

log = logging.getLogger(__name__)

# Members of one sample and the row field holding each one's bytes (see the data contract).
MEMBERS: tuple[tuple[str, str], ...] = (("mp4", "crop_path"), ("wav", "clip_wav_path"), ("npz", "track_path"))
# First columns of the index; the rest follow in first-seen order.
INDEX_FIRST = ("key", "video_key", "lang_expected", "status", "drop_stage", "drop_reason", "split", "identity_id",
               "take_id", "take_index", "shard")  # fmt: skip
PACK_VERSION = "1"  # part of every shard digest: bump when the packed bytes change for the same inputs
TAR_MTIME = 0.0  # fixed member times: the same samples always give the same shard bytes


def scalar_fields(row: Row) -> dict[str, Any]:
    """The JSON-safe scalar fields of a row (str/int/float/bool/None); numpy scalars unwrapped, NaN -> None."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        if v is None or isinstance(v, (str, int, float, bool)):
            out[k] = v
    return out


def sample_json(row: Row) -> bytes:
    """The sample's .json: its scalar metadata, without paths on this host (media travel in the sample)."""
    meta = {k: v for k, v in scalar_fields(row).items() if not k.endswith("_path")}
    return json.dumps(meta, ensure_ascii=False, sort_keys=True).encode("utf-8")


def write_atomic(path: Path, data: bytes) -> None:
    """Write via a .tmp sibling + fsync + rename so a crash never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ---- lock + ledger ----------------------------------------------------------------------------------------------
def take_lock(out: str | Path) -> Any:
    """One writer per output dir (a build or a select): a second one would redo or delete the first one's files."""
    import fcntl

    Path(out).mkdir(parents=True, exist_ok=True)
    path = Path(out) / ".sink.lock"
    fh = open(path, "a+")  # noqa: SIM115 - held until released; the OS drops it if the process dies
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise RuntimeError(f"another build or select is writing to {out} (holds {path}): wait for it, or use another --out") from None
    return fh


def ledger_path(out: str | Path, video_key: str) -> Path:
    return Path(out) / "ledger" / f"{safe_id(video_key)}.json"


def write_ledger(out: str | Path, video_key: str, rows: list[Row], prints: dict[str, dict[str, str]]) -> None:
    """Commit one video: its index rows (scalars) and, per clip with members, its fingerprints."""
    entry = {"video_key": video_key, "committed_at": time.time(), "rows": [scalar_fields(r) for r in rows],
             "prints": prints}  # fmt: skip
    write_atomic(ledger_path(out, video_key), json.dumps(entry, ensure_ascii=False).encode("utf-8"))


def recover(out: str | Path) -> None:
    """Undo what a killed run left half done: leftover .tmp files and unreadable ledger entries (redone)."""
    out = Path(out)
    for d in ("ledger", "shards", "shard_state"):
        for tmp in (out / d).rglob("*.tmp") if (out / d).is_dir() else ():
            log.info("sink: removing leftover %s", tmp)
            tmp.unlink(missing_ok=True)
    for path in sorted((out / "ledger").glob("*.json")) if (out / "ledger").is_dir() else ():
        try:
            entry = json.loads(path.read_text())
            if not isinstance(entry.get("rows"), list) or "video_key" not in entry:
                raise ValueError("no rows")
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.warning("sink: unreadable ledger %s (%s): the video will be redone", path, exc)
            path.unlink(missing_ok=True)


def read_ledger(out: str | Path) -> list[dict[str, Any]]:
    """Every committed ledger entry, in file-name order."""
    d = Path(out) / "ledger"
    return [json.loads(p.read_text()) for p in sorted(d.glob("*.json"))] if d.is_dir() else []


def done_videos(out: str | Path) -> set[str]:
    return {e["video_key"] for e in read_ledger(out)}


# ---- shards -----------------------------------------------------------------------------------------------------
def shard_digest(samples: list[dict[str, Any]]) -> str:
    """What a shard will hold: keys, .json bytes, and each member's path, size and mtime."""
    h = hashlib.sha256(PACK_VERSION.encode())
    for s in samples:
        h.update(s["key"].encode() + b"\0" + s["json"].encode() + b"\0")
        for ext, path in s["members"]:
            try:
                st = os.stat(path)
                h.update(f"{ext}:{path}:{st.st_size}:{st.st_mtime_ns}\0".encode())
            except OSError:
                h.update(f"{ext}:{path}:missing\0".encode())
    return h.hexdigest()


def pack_shard(out: str, rel: str, samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Write `<out>/shards/<rel>` from `samples` ({key, json, members: [(ext, path)]}) unless its record says it
    already holds exactly them. Returns {rel, keys, failed: {key: why}, bytes, skipped}."""
    import webdataset as wds

    final, state = Path(out) / "shards" / rel, Path(out) / "shard_state" / (rel + ".json")
    digest = shard_digest(samples)
    if final.is_file() and state.is_file():
        try:
            rec = json.loads(state.read_text())
            if rec.get("digest") == digest:
                return rec | {"skipped": True}
        except (OSError, ValueError):
            pass
    state.unlink(missing_ok=True)  # from here on the shard on disk may not match any record
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(final.name + ".tmp")
    keys, failed, n_bytes = [], {}, 0
    with open(tmp, "wb") as fh:
        writer = wds.TarWriter(fh, encoder=False, mtime=TAR_MTIME)
        for s in samples:
            try:  # a sample is read whole before any byte of it is written
                data = {ext: Path(p).read_bytes() for ext, p in s["members"]}
                if any(not v for v in data.values()):
                    raise OSError("empty member file")
            except OSError as exc:
                failed[s["key"]] = f"{type(exc).__name__}: {exc}"
                continue
            n_bytes += writer.write({"__key__": s["key"], **data, "json": s["json"].encode("utf-8")})
            keys.append(s["key"])
        writer.close()
        fh.flush()
        os.fsync(fh.fileno())
    if keys:
        os.replace(tmp, final)
    else:  # nothing readable: no empty shard
        tmp.unlink(missing_ok=True)
        final.unlink(missing_ok=True)
    rec = {"rel": rel, "digest": digest, "keys": keys, "failed": failed, "bytes": n_bytes}
    write_atomic(state, json.dumps(rec).encode("utf-8"))
    return rec | {"skipped": False}


def existing_shards(out: str | Path) -> set[str]:
    """Relative paths of every committed shard under <out>/shards."""
    root = Path(out) / "shards"
    return {str(p.relative_to(root)) for p in root.rglob("*.tar")} if root.is_dir() else set()


def remove_shard(out: str | Path, rel: str) -> None:
    (Path(out) / "shard_state" / (rel + ".json")).unlink(missing_ok=True)
    (Path(out) / "shards" / rel).unlink(missing_ok=True)


# ---- index ------------------------------------------------------------------------------------------------------
def write_index(rows: list[Row], path: str | Path) -> Path:
    """index.parquet: one row per clip; columns are the union over rows (nulls where a row lacks one)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [scalar_fields(r) for r in rows]
    names: dict[str, None] = {k: None for k in INDEX_FIRST}
    for row in rows:
        names.update(dict.fromkeys(row))
    columns: dict[str, Any] = {}
    for name in names:
        values = [row.get(name) for row in rows]
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):  # mixed types across stages: keep as text
            columns[name] = pa.array([None if v is None else str(v) for v in values], type=pa.string())
    table = pa.table(columns) if rows else pa.table({k: pa.array([], type=pa.string()) for k in names})
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path
