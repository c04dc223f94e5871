"""Finalize an output dir: ledger rows -> gates -> duplicates -> identities -> splits -> shards, index, report.

Run at the end of every build and by `pipeline.select`. It reads only the ledger and the clips' member files (no
model runs), and it is a pure function of them and the config: rows in (video, take, window) order, shards
numbered per split and language in that order, packed with fixed tar times, so a rerun after a kill anywhere
gives the same shards and rewrites only those whose content changed (sink.pack_shard); shards the plan no longer
has are removed. On Ray the shards are packed by tasks on any node, otherwise here.
A shard given up after a transient failure (disk full; sink.pack_shard) leaves no copy of its samples anywhere:
its videos are returned as `pending` and left out of the index, and the build exits 3 so a rerun packs them.
`<out>/shard_state/finalize.json` records the inputs of the last finalize that completed (ledger, config,
pending videos): a rerun with nothing to do finalizes again only when they differ (the last one was killed).

  shards/<split>/<lang>/<lang>-NNNNNN.tar   a video's clips never straddle two shards (limits apply between videos)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from . import faults, sink
from .config import BuildConfig
from .dedup import Clip, find_duplicates, wav_bits
from .fingerprint import decode
from .gates import decide
from .identity import assign_identities, identity_name, normalise
from .record import STATUS_DROPPED, STATUS_OK, Row, drop, is_ok
from .splits import assign_splits

log = logging.getLogger(__name__)


def _order(r: Row) -> tuple:
    return (str(r.get("video_key", "")), str(r.get("take_id") or r["key"]), int(r.get("take_index") or 0), r["key"])


def take_of(r: Row) -> str:
    return str(r.get("take_id") or r["key"])


def load_rows(cfg: BuildConfig) -> tuple[list[Row], dict[str, dict[str, str]]]:
    """All ledger rows (ordered) and every clip's fingerprints."""
    rows: list[Row] = []
    prints: dict[str, dict[str, str]] = {}
    for entry in sink.read_ledger(cfg.out):
        rows.extend(entry["rows"])
        prints.update(entry.get("prints") or {})
    return sorted(rows, key=_order), prints


def apply_gates(rows: list[Row], cfg: BuildConfig) -> Counter:
    """Re-decide every row from its scores (gates.decide); returns {gate: rows a rebuild might keep}."""
    rebuild: Counter = Counter()
    for r in rows:
        d = decide(r, cfg)
        r.pop("rebuild_gate", None)
        if d.status == STATUS_OK:
            r.update(status=STATUS_OK, drop_reason="", drop_stage="")
            r.pop("drop_detail", None)
        else:
            r.update(status=STATUS_DROPPED, drop_reason=d.reason, drop_stage=d.stage)
            if d.detail:
                r["drop_detail"] = d.detail
        if d.rebuild:
            r["rebuild_gate"] = d.rebuild
            rebuild[d.rebuild] += 1
    return rebuild


def _emb(prints: dict, key: str) -> np.ndarray | None:
    text = (prints.get(key) or {}).get("identity")
    return None if not text else decode(text, np.float16).astype(np.float32)


def _audio_bits(path: str) -> np.ndarray:
    """The clip's audio fingerprint; empty when its .wav cannot be read (it then matches nothing, and packing
    drops the clip as write_failed)."""
    try:
        return wav_bits(path)
    except Exception as exc:
        faults.raise_if_transient(exc)
        log.warning("dedup: %s: %s", path, exc)
        return np.zeros(0, np.uint16)


def mark_duplicates(rows: list[Row], prints: dict, cfg: BuildConfig) -> int:
    clips = []
    by_key = {r["key"]: r for r in rows if is_ok(r)}
    for key, r in by_key.items():
        video = (prints.get(key) or {}).get("video")
        if not video:
            continue
        pixels = int(r.get("width") or 0) * int(r.get("height") or 0)
        length = float(r.get("end_s") or 0) - float(r.get("start_s") or 0)
        clips.append(Clip(key, str(r["video_key"]), (-pixels, -length, str(r["video_key"]), key),
                          decode(video, np.uint64), _emb(prints, key), lambda p=r["clip_wav_path"]: _audio_bits(p)))  # fmt: skip
    dups = find_duplicates(clips, cfg.dedup)
    for key, (of, detail) in dups.items():
        drop(by_key[key], "duplicate", "dedup", detail)
        by_key[key]["duplicate_of"] = of
    return len(dups)


def assign_identity_and_split(rows: list[Row], prints: dict, cfg: BuildConfig) -> None:
    """identity_id per take (clustered over the build) and split per identity, on every kept row."""
    kept = [r for r in rows if is_ok(r)]
    embs: dict[str, list[np.ndarray]] = {}
    for r in kept:
        e = _emb(prints, r["key"])
        if e is not None:
            embs.setdefault(take_of(r), []).append(e)
    units = {t: normalise(np.mean(v, axis=0)) for t, v in embs.items()}
    ids = assign_identities(units, cfg.identity)
    for r in rows:
        r.pop("identity_id", None), r.pop("split", None)
    for r in kept:
        r["identity_id"] = ids.get(take_of(r)) or identity_name([take_of(r)])  # no embedding: its own identity
    split = assign_splits({r["identity_id"] for r in kept}, cfg.splits)
    for r in kept:
        r["split"] = split[r["identity_id"]]


def _size(r: Row) -> int:
    total = 0
    for _, fld in sink.MEMBERS:
        try:
            total += Path(r[fld]).stat().st_size
        except (OSError, KeyError, TypeError):
            pass
    return total + 4 * 512


def plan_shards(rows: list[Row], cfg: BuildConfig) -> list[tuple[str, list[Row]]]:
    """[(relative shard path, its rows)] per split and language, videos kept whole, in row order."""
    groups: dict[tuple[str, str], list[list[Row]]] = {}
    for r in (r for r in rows if is_ok(r)):
        lang = r.get("lang_expected") or r.get("lang") or str(r["video_key"]).split("-", 1)[0]
        videos = groups.setdefault((r["split"], lang), [])
        if not videos or videos[-1][0]["video_key"] != r["video_key"]:
            videos.append([])
        videos[-1].append(r)
    plan: list[tuple[str, list[Row]]] = []
    for (split, lang), videos in sorted(groups.items()):
        shards: list[list[Row]] = [[]]
        n_bytes = 0
        for video in videos:
            size = sum(_size(r) for r in video)
            if shards[-1] and (len(shards[-1]) + len(video) > cfg.sink.shard_max_count
                               or n_bytes + size > cfg.sink.shard_max_bytes):  # fmt: skip
                shards.append([])
                n_bytes = 0
            shards[-1].extend(video)
            n_bytes += size
        plan.extend((f"{split}/{lang}/{lang}-{i:06d}.tar", s) for i, s in enumerate(shards) if s)
    return plan


def pack(rows: list[Row], cfg: BuildConfig, use_ray: bool) -> dict[str, Any]:
    """Write every planned shard (or leave it when unchanged), remove stale ones; marks rows' `shard`.
    `pending`: {video_key: {stage, detail}} of the videos whose shard was given up (see the module docstring)."""
    plan = plan_shards(rows, cfg)
    for r in rows:
        r["shard"] = ""
    jobs = []
    for rel, members in plan:
        for r in members:
            r["shard"] = rel
        samples = [{"key": r["key"], "json": sink.sample_json(r, cfg.manifests).decode("utf-8"),
                    "members": [(ext, r[fld]) for ext, fld in sink.MEMBERS]} for r in members]  # fmt: skip
        jobs.append((rel, samples))
    if use_ray and _ray_ready():
        import ray

        task = ray.remote(num_cpus=1)(sink.pack_shard)
        results = ray.get([task.remote(str(cfg.out), rel, s) for rel, s in jobs])
    else:
        results = [sink.pack_shard(str(cfg.out), rel, s) for rel, s in jobs]
    by_key = {r["key"]: r for r in rows}
    pending: dict[str, dict[str, str]] = {}
    for res, (rel, members) in zip(results, plan, strict=True):
        if res.get("error"):
            for r in members:
                r["shard"] = ""
                pending[str(r["video_key"])] = {"stage": "sink", "detail": f"packing {rel}: {res['error']}"}
        for key, why in res["failed"].items():
            log.warning("sink: %s: %s", key, why)
            drop(by_key[key], "write_failed", "sink", why)
            by_key[key]["shard"] = ""
    stale = sink.existing_shards(cfg.out) - {rel for rel, _ in plan}
    for rel in sorted(stale):
        log.info("sink: removing %s (no longer in the selection)", rel)
        sink.remove_shard(cfg.out, rel)
    return {"shards": len(plan), "rewritten": sum(not r["skipped"] and not r.get("error") for r in results),
            "removed": len(stale), "pending": pending}


def _ray_ready() -> bool:
    try:
        import ray

        return ray.is_initialized()
    except ImportError:
        return False


def finalize(cfg: BuildConfig, use_ray: bool = False, write: bool = True) -> dict[str, Any]:
    """The whole step; returns a summary (kept, dropped, duplicates, rebuild counts, shards written)."""
    if write:
        clear_complete(cfg)  # shards and index change from here on: only a completed build marks them again
    rows, prints = load_rows(cfg)
    rebuild = apply_gates(rows, cfg)
    n_dup = mark_duplicates(rows, prints, cfg) if cfg.dedup.enabled else 0
    assign_identity_and_split(rows, prints, cfg)
    summary: dict[str, Any] = {"rows": len(rows), "duplicates": n_dup, "rebuild_needed": dict(rebuild)}
    summary["pending"] = {}
    if write:
        summary |= pack(rows, cfg, use_ray)
        rows = [r for r in rows if str(r["video_key"]) not in summary["pending"]]  # pending: not indexed yet
        sink.write_index(rows, Path(cfg.out) / "index.parquet")
    kept = [r for r in rows if is_ok(r)]
    summary |= {"kept": len(kept), "dropped": len(rows) - len(kept), "kept_keys": sorted(r["key"] for r in kept)}
    return summary


# ---- completion state -------------------------------------------------------------------------------------------
STATE = Path("shard_state") / "finalize.json"
OUTPUTS = ("index.parquet", "stats.json", "report.html")


def inputs_digest(cfg: BuildConfig, pending: dict[str, Any]) -> str:
    """What a finalize (and the report after it) is a function of: the ledger files, the config, pending videos."""
    h = hashlib.sha256(sink.PACK_VERSION.encode())
    h.update(yaml.safe_dump(asdict(cfg), sort_keys=True).encode("utf-8"))
    h.update(json.dumps(sorted(pending)).encode("utf-8"))
    ledger = Path(cfg.out) / "ledger"
    entries = sorted(os.scandir(ledger), key=lambda e: e.name) if ledger.is_dir() else []
    for e in entries:
        if e.name.endswith(".json"):
            st = e.stat()
            h.update(f"{e.name}:{st.st_size}:{st.st_mtime_ns}\0".encode())
    return h.hexdigest()


def is_complete(cfg: BuildConfig, pending: dict[str, Any]) -> bool:
    """Whether the last finalize + report of `cfg.out` completed on exactly these inputs."""
    out = Path(cfg.out)
    try:
        rec = json.loads((out / STATE).read_text())
    except (OSError, ValueError):
        return False
    return all((out / n).is_file() for n in OUTPUTS) and rec.get("digest") == inputs_digest(cfg, pending)


def mark_complete(cfg: BuildConfig, pending: dict[str, Any]) -> None:
    """Record a completed finalize + report (written last: a kill before it means a rerun finalizes again)."""
    sink.write_atomic(Path(cfg.out) / STATE, json.dumps({"digest": inputs_digest(cfg, pending)}).encode("utf-8"))


def clear_complete(cfg: BuildConfig) -> None:
    (Path(cfg.out) / STATE).unlink(missing_ok=True)
