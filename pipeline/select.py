"""python -m pipeline.select: re-select an output dir under other thresholds, without running any model.

    python -m pipeline.select --out out --set sync.min_conf=2.5 --set quality.min_sharpness=30 [--dry-run]

Reads <out>/config.yaml (the build's settings), applies each --set, then runs the build's own finalize step on
the ledger (pipeline/finalize.py): the score gates re-decided from the stored scores (pipeline/gates.py says which
can go both ways), duplicates, identities, splits; shards whose content changes are rewritten, the others left,
index.parquet, stats.json and report.html rewritten, and config.yaml updated so it describes the output again.
A loosened gate that stops work in the stages (faces, language) cannot keep rows it dropped: their later scores
were never measured, so select prints how many rows would need a rebuild instead of guessing.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import yaml

from .config import check_choices, load_config, merge_dataclass, save_config
from .gates import GATES

log = logging.getLogger("pipeline.select")
# Settings select can apply from stored scores: every gate's threshold, and everything finalize decides.
FINALIZE_SECTIONS = ("identity", "splits", "dedup", "sink")


def parse_set(items: list[str]) -> dict:
    """["sync.min_conf=2.5", ...] -> {"sync": {"min_conf": 2.5}}; values are read as YAML scalars."""
    allowed = {g.name for g in GATES}
    out: dict = {}
    for item in items:
        name, eq, raw = item.partition("=")
        section, dot, key = name.strip().partition(".")
        if not eq or not dot or not key:
            raise ValueError(f"--set {item!r}: expected section.name=value, e.g. sync.min_conf=2.5")
        if name.strip() not in allowed and section not in FINALIZE_SECTIONS:
            gates = ", ".join(sorted(allowed))
            raise ValueError(f"--set {name}: select applies gate thresholds ({gates}) and the identity, splits, "
                             f"dedup and sink settings; {name} changes what the stages compute: rebuild instead")
        out.setdefault(section, {})[key] = yaml.safe_load(raw)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.select", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="a build's output dir (holds ledger/ and config.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.NAME=VALUE", help="a threshold to change")
    p.add_argument("--dry-run", action="store_true", help="print what would change; write nothing")
    p.add_argument("--ray", action="store_true", help="pack shards as Ray tasks (a local cluster, or RAY_ADDRESS)")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = Path(a.out)
    try:
        if not (out / "ledger").is_dir() or not (out / "config.yaml").is_file():
            raise FileNotFoundError(f"{out} has no ledger/ or config.yaml: run python -m pipeline.build --out {out} first")
        cfg = load_config(out / "config.yaml", out=str(out))
        merge_dataclass(cfg, parse_set(a.set), "--set")
        check_choices(cfg, "--set")
        if a.ray and not a.dry_run:
            import os

            from .ray_connect import connect_ray

            connect_ray(os.environ.get("RAY_ADDRESS"), None)
        summary = run(cfg, dry_run=a.dry_run, use_ray=a.ray)
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        log.debug("select failed", exc_info=True)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in summary.items() if k != "kept_keys"}, indent=1))
    if summary["pending"]:
        print(f"{len(summary['pending'])} videos left out after a transient failure while packing (listed in "
              f"{out / 'pending.json'}): rerun the same command", file=sys.stderr)  # fmt: skip
        return 3
    return 0


def run(cfg, dry_run: bool = False, use_ray: bool = False) -> dict:
    """Finalize `cfg.out` under `cfg`; returns finalize's summary plus what changed against the old index."""
    import pandas as pd

    from . import sink
    from .finalize import finalize, mark_complete
    from .report import write_report

    out = Path(cfg.out)
    before: set[str] = set()
    if (out / "index.parquet").is_file():
        idx = pd.read_parquet(out / "index.parquet", columns=["key", "status"])
        before = set(idx.loc[idx["status"] == "ok", "key"])
    lock = sink.take_lock(out)
    try:
        if not dry_run:
            sink.recover(out)
        summary = finalize(cfg, use_ray=use_ray, write=not dry_run)
        if not dry_run:
            save_config(cfg, out / "config.yaml")
            # videos the build left for its next run stay listed; those finalize just gave up are added
            done = sink.done_videos(out)
            pending = {k: v for k, v in sink.read_pending(out).items() if k not in done} | summary["pending"]
            sink.write_pending(out, pending)
            write_report(cfg, pending=pending)
            mark_complete(cfg, pending)
    finally:
        lock.close()
    after = set(summary["kept_keys"])
    summary |= {"kept_before": len(before), "newly_kept": len(after - before), "newly_dropped": len(before - after)}
    for gate, n in sorted(summary["rebuild_needed"].items()):
        log.info("select: %d rows dropped by %s might pass it now; only a rebuild can tell (their later scores "
                 "were never measured)", n, gate)
    return summary


if __name__ == "__main__":
    sys.exit(main())
