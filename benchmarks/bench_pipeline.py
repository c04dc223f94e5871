"""Whole-pipeline speed: realtime factor (footage seconds / wall seconds) next to a bare ffmpeg decode of the
same footage, per-stage times (in-process run), and Ray runs with 1 vs 2 actors per model stage.

    OMP_NUM_THREADS=1 python benchmarks/bench_pipeline.py --lang en --limit 3

Why: the decode row is the floor any pipeline pays; the per-stage table says where the rest goes; the Ray rows
show what a second worker buys on this machine. Prints markdown tables (paste into RESULTS_pipeline.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline import build, media  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.finalize import finalize  # noqa: E402
from pipeline.manifest import load_manifests  # noqa: E402


def footage(seeds: list[dict]) -> float:
    return sum(media.probe(s["source"])["duration_s"] for s in seeds)


def bare_decode(seeds: list[dict]) -> float:
    """Wall seconds for ffmpeg to decode every source's video and audio and throw the frames away."""
    t0 = time.perf_counter()
    for s in seeds:
        media.run(["ffmpeg", "-nostdin", "-v", "error", "-i", s["source"], "-f", "null", "-"], timeout=1800)
    return time.perf_counter() - t0


def in_process(cfg, seeds: list[dict]) -> tuple[float, dict[str, tuple[float, float]], int]:
    """Run the graph in this process, timing each stage's construction (model load) and its processing."""
    times: dict[str, tuple[float, float]] = {}
    t_all = time.perf_counter()
    stages = []
    for cls in build.STAGES:
        t0 = time.perf_counter()
        stages.append(cls(cfg))
        times[cls.__name__] = (time.perf_counter() - t0, 0.0)
    for seed in seeds:  # the last stage (Commit) writes each video's ledger entry
        batch = [[seed]]
        for stage in stages:
            t0 = time.perf_counter()
            batch = [g for rows in batch for g in build.group_by_video(stage.run_video(rows))]
            init, proc = times[type(stage).__name__]
            times[type(stage).__name__] = (init, proc + time.perf_counter() - t0)
    t0 = time.perf_counter()
    summary = finalize(cfg)  # gates, duplicates, identities, splits, shards, index
    times["finalize"] = (0.0, time.perf_counter() - t0)
    return time.perf_counter() - t_all, times, summary["kept"]


def ray_run(args: argparse.Namespace, out: Path, actors: int) -> tuple[float, int]:
    """Wall seconds of `python -m pipeline.build` on a fresh local Ray cluster (startup included)."""
    cmd = [sys.executable, "-m", "pipeline.build", "--lang", args.lang, "--manifests", args.manifests,
           "--out", str(out), "--actors", str(actors)] + (["--limit", str(args.limit)] if args.limit else [])  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"build failed:\n{proc.stderr[-3000:]}")
    return wall, len(list((out / "ledger").glob("*.json")))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--manifests", default=str(ROOT / "manifests" / "sample"))
    p.add_argument("--lang", default="en", help="comma list of languages")
    p.add_argument("--limit", type=int, default=3, help="source videos per language (0 = all)")
    p.add_argument("--workers", default="1,2", help="actors per model stage for the Ray runs, comma list")
    p.add_argument("--skip-ray", action="store_true")
    args = p.parse_args()
    langs = [x for x in args.lang.split(",") if x]
    seeds = [s for s in load_manifests(args.manifests, langs, limit=args.limit) if Path(s["source"]).is_file()]
    if not seeds:
        raise SystemExit("no local sources in the manifests")
    secs = footage(seeds)
    tmp = Path(tempfile.mkdtemp(prefix="bench_pipeline_"))
    print(f"# pipeline benchmark: {len(seeds)} videos, {secs:.1f} s of footage ({args.lang}, limit {args.limit})")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load avg {os.getloadavg()[0]:.1f}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")  # fmt: skip

    rows = [("bare ffmpeg decode", bare_decode(seeds), None)]
    cfg = load_config(None, out=str(tmp / "local"), manifests=args.manifests, langs=langs, limit=args.limit)
    wall, times, kept = in_process(cfg, seeds)
    rows.append(("pipeline in-process (--no-ray)", wall, kept))
    if not args.skip_ray:
        for w in (int(x) for x in args.workers.split(",")):
            t, _ = ray_run(args, tmp / f"ray{w}", w)
            rows.append((f"pipeline on local Ray, {w} actor(s)/model stage", t, None))

    print("| run | wall s | realtime factor (footage s / wall s) |\n|---|---:|---:|")
    for name, t, _ in rows:
        print(f"| {name} | {t:.1f} | {secs / t:.2f} |")
    print(f"\nkept clips: {kept}\n")
    print("| stage | init s (models) | process s | process s per footage s | share of process |\n|---|---:|---:|---:|---:|")
    total = sum(proc for _, proc in times.values()) or 1.0
    for name, (init, proc) in times.items():
        print(f"| {name} | {init:.1f} | {proc:.1f} | {proc / secs:.2f} | {100 * proc / total:.0f}% |")


if __name__ == "__main__":
    main()
