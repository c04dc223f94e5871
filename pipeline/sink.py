"""The output dir's persistent parts: the lock, recovery, shard packing, and the list of pending videos.

Crash safety (a run killed anywhere resumes without losing or duplicating samples):
- one writer per output dir: `take_lock` (flock, dropped by the OS when the process dies) before any write;
- a video is done when its ledger entry `<out>/ledger/<video_key>.json` exists (pipeline/index.py): written by
  the Commit stage via a `.tmp` sibling + fsync + rename, after the video's members are final in the work dir;
  a rerun skips it;
- shards are a pure function of the ledger and the config (pipeline/finalize.py): `pack_shard` writes
  `<name>.tar.tmp` and renames it, and records what it packed in `<out>/shard_state/` *after* the rename (the old
  record is removed *before*), so a shard whose record matches its plan is never rewritten and a half-made one is
  redone; `recover` deletes every leftover `.tmp` at start.

Transient faults (pipeline/faults.py): a video with a `retry_later` row is never ledgered, only listed in
`<out>/pending.json`, so the next run redoes it. A transient failure while packing a shard (disk full) gives the
shard up whole (no half shard, no stale copy of its samples elsewhere): its videos are listed as pending and left
out of the index until a rerun packs them. Sample `.json` files carry no host paths (index.sample_json).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from . import faults, ledger_parts
from .index import (  # noqa: F401 - the sink's API: callers use sink.<name>
    INDEX_FIRST,
    done_videos,
    ledger_path,
    read_ledger,
    sample_json,
    scalar_fields,
    write_atomic,
    write_index,
    write_ledger,
)

log = logging.getLogger(__name__)

# Members of one sample and the row field holding each one's bytes (see the data contract).
MEMBERS: tuple[tuple[str, str], ...] = (("mp4", "crop_path"), ("wav", "clip_wav_path"), ("npz", "track_path"))
PACK_VERSION = "1"  # part of every shard digest: bump when the packed bytes change for the same inputs
TAR_MTIME = 0.0  # fixed member times: the same samples always give the same shard bytes


# ---- lock + recovery --------------------------------------------------------------------------------------------
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
        raise RuntimeError(f"another build is writing to {out} (another build or select holds {path}): wait for it, "
                           "or use another --out") from None  # fmt: skip
    return fh


def recover(out: str | Path) -> None:
    """Undo what a killed run left half done: leftover .tmp files and unreadable ledger entries (redone)."""
    out = Path(out)
    leftovers = list(out.glob("*.tmp"))
    for d in ("ledger", "shards", "shard_state"):
        leftovers += list((out / d).rglob("*.tmp")) if (out / d).is_dir() else []
    for tmp in leftovers:
        log.info("sink: removing leftover %s", tmp)
        tmp.unlink(missing_ok=True)
    ledger_parts.clear_unfinished(out)
    for path in sorted((out / "ledger").glob("*.json")) if (out / "ledger").is_dir() else ():
        try:
            entry = json.loads(path.read_text())
            if not isinstance(entry.get("rows"), list) or "video_key" not in entry:
                raise ValueError("no rows")
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.warning("sink: unreadable ledger %s (%s): the video will be redone", path, exc)
            path.unlink(missing_ok=True)


def write_pending(out: str | Path, pending: dict[str, dict[str, str]]) -> None:
    """<out>/pending.json: the videos left for the next run and why ({video_key: {stage, detail}}); removed when
    there are none."""
    path = Path(out) / "pending.json"
    if not pending:
        path.unlink(missing_ok=True)
        return
    entries = [{"video_key": k, **v} for k, v in sorted(pending.items())]
    write_atomic(path, json.dumps({"videos": len(entries), "pending": entries}, indent=1).encode("utf-8"))


def read_pending(out: str | Path) -> dict[str, dict[str, str]]:
    path = Path(out) / "pending.json"
    if not path.is_file():
        return {}
    return {e["video_key"]: {k: v for k, v in e.items() if k != "video_key"} for e in json.loads(path.read_text())["pending"]}


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
    already holds exactly them. Returns {rel, keys, failed: {key: why}, bytes, skipped}, plus `error` when a
    transient failure (disk full) gave the shard up: then neither the shard nor its record is left on disk."""
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
    try:
        keys, failed, n_bytes = _write_tar(final, samples)
        rec = {"rel": rel, "digest": digest, "keys": keys, "failed": failed, "bytes": n_bytes}
        write_atomic(state, json.dumps(rec).encode("utf-8"))
    except OSError as exc:
        if not faults.is_transient(exc):
            raise
        log.warning("sink: giving up %s after a transient failure: %s", rel, faults.describe(exc))
        state.unlink(missing_ok=True)
        final.unlink(missing_ok=True)  # an older copy would hold samples the plan now puts elsewhere
        return {"rel": rel, "digest": digest, "keys": [], "failed": {}, "bytes": 0, "skipped": False,
                "error": faults.describe(exc)}  # fmt: skip
    return rec | {"skipped": False}


def _write_tar(final: Path, samples: list[dict[str, Any]]) -> tuple[list[str], dict[str, str], int]:
    """(keys written, {key: why unreadable}, bytes) of `final`, written as a .tmp and renamed (no empty shard)."""
    import webdataset as wds

    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(final.name + ".tmp")
    keys, failed, n_bytes = [], {}, 0
    try:
        with open(tmp, "wb") as fh:
            writer = wds.TarWriter(fh, encoder=False, mtime=TAR_MTIME)
            for s in samples:
                try:  # a sample is read whole before any byte of it is written
                    data = {ext: Path(p).read_bytes() for ext, p in s["members"]}
                    if any(not v for v in data.values()):
                        raise OSError("empty member file")
                except OSError as exc:
                    if faults.is_transient(exc):  # e.g. EIO on network storage: the shard is redone next run
                        raise
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
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    return keys, failed, n_bytes


def existing_shards(out: str | Path) -> set[str]:
    """Relative paths of every committed shard under <out>/shards."""
    root = Path(out) / "shards"
    return {str(p.relative_to(root)) for p in root.rglob("*.tar")} if root.is_dir() else set()


def remove_shard(out: str | Path, rel: str) -> None:
    (Path(out) / "shard_state" / (rel + ".json")).unlink(missing_ok=True)
    (Path(out) / "shards" / rel).unlink(missing_ok=True)
