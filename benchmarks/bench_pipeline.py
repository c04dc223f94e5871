"""Whole-pipeline speed: wall and CPU seconds next to a bare ffmpeg decode of the same footage, per-stage CPU
seconds per minute of footage (in-process run), and Ray runs with 1 (or more) actors per model stage.

    OMP_NUM_THREADS=1 python benchmarks/bench_pipeline.py --lang en,pt,ru,zh --limit 1 --workers 1

Why: the decode row is the floor any pipeline pays; the in-process rows are the build's `--no-ray` (a thread per
stage, videos overlapped) and `--no-ray --sequential`; the per-stage table (from the sequential run) says where
the work goes; the Ray rows show what Ray costs and what a second worker buys. CPU seconds (this process and its
children; for Ray the whole process tree, daemons included) do not depend on what else runs on the machine, wall
seconds do.
Prints markdown tables (paste into RESULTS_pipeline.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.kit.cputime import process_cpu, run_measured  # noqa: E402
from pipeline import build, media  # noqa: E402
from pipeline.config import LANGS, load_config  # noqa: E402
from pipeline.finalize import finalize  # noqa: E402
from pipeline.manifest import load_manifests  # noqa: E402
from pipeline.overlap import run_overlapped  # noqa: E402


def footage(seeds: list[dict]) -> float:
    return sum(media.probe(s["source"])["duration_s"] for s in seeds)


class Clock:
    """Wall and CPU seconds of a block."""

    def __enter__(self) -> Clock:
        self.w0, self.c0 = time.perf_counter(), process_cpu(children=True)
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.w0, process_cpu(children=True) - self.c0


def bare_decode(seeds: list[dict]) -> tuple[float, float]:
    """(wall s, CPU s) for ffmpeg to decode every source's video and audio and throw the frames away."""
    with Clock() as c:
        for s in seeds:
            media.run(["ffmpeg", "-nostdin", "-v", "error", "-i", s["source"], "-f", "null", "-"], timeout=1800)
    return c.wall, c.cpu


Times = dict[str, list[float]]  # stage -> [init wall, init CPU, process wall, process CPU]


def in_process(cfg, seeds: list[dict]) -> tuple[float, float, Times, int]:
    """Run the graph in this process, timing each stage's construction (model load) and its processing."""
    times: Times = {}
    stages = []
    with Clock() as total:
        for cls in build.STAGES:
            with Clock() as c:
                stages.append(cls(cfg))
            times[cls.__name__] = [c.wall, c.cpu, 0.0, 0.0]
        for seed in seeds:  # the last stage (Commit) writes each video's ledger entry
            batch = [[seed]]
            for stage in stages:
                with Clock() as c:
                    batch = [g for rows in batch for g in build.group_by_video(stage.run_video(rows))]
                t = times[type(stage).__name__]
                t[2] += c.wall
                t[3] += c.cpu
        with Clock() as c:
            summary = finalize(cfg)  # gates, duplicates, identities, splits, shards, index
        times["finalize"] = [0.0, 0.0, c.wall, c.cpu]
    return total.wall, total.cpu, times, summary["kept"]


def overlapped(cfg, seeds: list[dict]) -> tuple[float, float, int]:
    """(wall s, CPU s, kept) of the graph as `pipeline.build --no-ray` runs it: a thread per stage, the videos
    overlapped (pipeline/overlap.py); model loads and finalize included."""
    with Clock() as total:
        stages = [cls(cfg) for cls in build.STAGES]
        for _ in run_overlapped(stages, [[s] for s in seeds], build.group_by_video):
            pass
        summary = finalize(cfg)
    return total.wall, total.cpu, summary["kept"]


def ray_run(args: argparse.Namespace, out: Path, actors: int) -> tuple[float, float, int]:
    """(wall s, CPU s of the whole process tree) of `python -m pipeline.build` on a fresh local Ray cluster
    (startup included)."""
    cmd = [sys.executable, "-m", "pipeline.build", "--lang", args.lang, "--manifests", args.manifests,
           "--out", str(out), "--actors", str(actors)] + (["--limit", str(args.limit)] if args.limit else [])  # fmt: skip
    proc, wall, cpu = run_measured(cmd, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"build failed:\n{proc.stderr[-3000:]}")
    return wall, cpu, len(list((out / "ledger").glob("*.json")))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--manifests", default=str(ROOT / "manifests" / "sample"))
    p.add_argument("--lang", default="en", help="comma list of languages, or 'all' (as pipeline.build)")
    p.add_argument("--limit", type=int, default=3, help="source videos per language (0 = all)")
    p.add_argument("--workers", default="1", help="actors per model stage for the Ray runs, comma list")
    p.add_argument("--skip-ray", action="store_true")
    args = p.parse_args()
    langs = list(LANGS) if args.lang == "all" else [x for x in args.lang.split(",") if x]
    seeds = [s for s in load_manifests(args.manifests, langs, limit=args.limit) if Path(s["source"]).is_file()]
    if not seeds:
        raise SystemExit("no local sources in the manifests")
    secs = footage(seeds)
    tmp = Path(tempfile.mkdtemp(prefix="bench_pipeline_"))
    print(f"# pipeline benchmark: {len(seeds)} videos, {secs:.1f} s of footage ({args.lang}, limit {args.limit})")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load avg {os.getloadavg()[0]:.1f}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")  # fmt: skip

    dec_wall, dec_cpu = bare_decode(seeds)
    rows = [("bare ffmpeg decode", dec_wall, dec_cpu)]
    local_yaml = Path(args.manifests) / "config.yaml"  # the thresholds `pipeline.build` takes from the folder
    def config(out: str):
        return load_config(str(local_yaml) if local_yaml.is_file() else None, trusted=False, out=str(tmp / out),
                           manifests=args.manifests, langs=langs, limit=args.limit)  # fmt: skip

    # warm-up, not counted: the first video through the graph pays imports, model files and first-call costs
    # (~5 CPU-s here) that the run after it does not, whichever of the two goes first
    in_process(config("warm-up"), seeds[:1])
    seq_wall, seq_cpu, times, kept = in_process(config("local"), seeds)
    wall, cpu, kept_overlapped = overlapped(config("overlapped"), seeds)
    rows += [("pipeline in-process, stages overlapped (--no-ray)", wall, cpu),
             ("pipeline in-process, one video at a time (--no-ray --sequential)", seq_wall, seq_cpu)]
    if not args.skip_ray:
        for w in (int(x) for x in args.workers.split(",")):
            t, c, _ = ray_run(args, tmp / f"ray{w}", w)
            rows.append((f"pipeline on local Ray, {w} actor(s)/model stage", t, c))

    per_min = 60.0 / secs
    print("| run | wall s | realtime factor | wall / bare decode | CPU s | CPU s per min of footage | "
          "CPU / bare decode |\n|---|---:|---:|---:|---:|---:|---:|")
    for name, t, c in rows:
        print(f"| {name} | {t:.1f} | {secs / t:.2f} | {t / dec_wall:.1f} | {c:.1f} | {c * per_min:.1f} | "
              f"{c / dec_cpu:.1f} |")
    extra = ", ".join(f"{100 * (c / cpu - 1):+.0f} % ({n.split(', ')[-1]})" for n, _, c in rows[3:])
    print(f"\nkept clips: {kept_overlapped} overlapped, {kept} one at a time; Ray's extra CPU over in-process "
          f"(overlapped): {extra or 'not run (--skip-ray)'}\n")
    print("Per stage, from the one-video-at-a-time run (a stage's CPU cannot be told apart when they overlap):\n")
    print("| stage | init wall s | init CPU s | process wall s | process CPU s | CPU s per min of footage | "
          "share of process CPU |\n|---|---:|---:|---:|---:|---:|---:|")
    total = sum(t[3] for t in times.values()) or 1.0
    for name, (iw, ic, pw, pc) in times.items():
        print(f"| {name} | {iw:.1f} | {ic:.1f} | {pw:.1f} | {pc:.1f} | {pc * per_min:.1f} | {100 * pc / total:.0f}% |")


if __name__ == "__main__":
    main()
