"""What rows become on disk outside the shards' media: sample .json metadata, ledger entries, index.parquet.

Sample `.json` files carry no host paths (`public_fields`); the ledger and the index, for the build machine,
keep every scalar field including the work paths. Every file is written to a temp name and renamed.
A video is done when its ledger entry `<out>/ledger/<video_key>.json` exists (the Commit stage writes it).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from .manifest import source_kind
from .record import Row, safe_id

# First columns of the index; the rest follow in first-seen order.
INDEX_FIRST = ("key", "video_key", "lang_expected", "status", "drop_stage", "drop_reason", "split", "identity_id",
               "take_id", "take_index", "shard")  # fmt: skip


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


def public_fields(row: Row, manifests: str | Path) -> dict[str, Any]:
    """What a sample's .json holds: the scalar fields without host paths. `*_path` fields and any other absolute
    path are left out (the index keeps them); `source` is the seed's `source_public` (a local path relative to
    the manifest folder, see manifest.published_source), or for rows without one, relative to `manifests`."""
    out: dict[str, Any] = {}
    for k, v in scalar_fields(row).items():
        if k.endswith("_path") or k == "source_public" or (isinstance(v, str) and k != "source" and os.path.isabs(v)):
            continue
        out[k] = v
    src = row.get("source_public") or out.get("source")
    if isinstance(src, str) and source_kind(src) == "local" and os.path.isabs(src):
        src = Path(os.path.relpath(src, Path(manifests).absolute())).as_posix()
    if src is not None:
        out["source"] = src
    return out


def sample_json(row: Row, manifests: str | Path) -> bytes:
    """The bytes of a sample's .json member (`public_fields`, keys sorted: the same row gives the same bytes)."""
    return json.dumps(public_fields(row, manifests), ensure_ascii=False, sort_keys=True).encode("utf-8")


def write_atomic(path: Path, data: bytes) -> None:
    """Write via a .tmp sibling + fsync + rename so a crash or a full disk never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # two workers may write the same entry at once
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ---- ledger -----------------------------------------------------------------------------------------------------
def ledger_path(out: str | Path, video_key: str) -> Path:
    return Path(out) / "ledger" / f"{safe_id(video_key)}.json"


def write_ledger(out: str | Path, video_key: str, rows: list[Row], prints: dict[str, dict[str, str]]) -> None:
    """Commit one video: its index rows (scalars) and, per clip with members, its fingerprints."""
    entry = {"video_key": video_key, "committed_at": time.time(), "rows": [scalar_fields(r) for r in rows],
             "prints": prints}  # fmt: skip
    write_atomic(ledger_path(out, video_key), json.dumps(entry, ensure_ascii=False).encode("utf-8"))


def read_ledger(out: str | Path) -> list[dict[str, Any]]:
    """Every committed ledger entry, in file-name order."""
    d = Path(out) / "ledger"
    return [json.loads(p.read_text()) for p in sorted(d.glob("*.json"))] if d.is_dir() else []


def done_videos(out: str | Path) -> set[str]:
    return {e["video_key"] for e in read_ledger(out)}


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
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # two workers may write the same entry at once
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
