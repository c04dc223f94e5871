"""Ingest speed: Normalize and ShotSplit seconds per minute of footage on the sample clips, as a table.

    OMP_NUM_THREADS=1 python benchmarks/bench_ingest.py [--manifests manifests/sample] [--repeat 1]

Download of local sources is only a probe, so it is not reported. Wall seconds swing with other load on a
shared box; CPU seconds (this process + ffmpeg children) are the steadier number to compare settings by. Each clip runs in this process,
one after another (as one Ray task would), so numbers are per core-ish; ffmpeg itself may use more threads.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import LANGS, BuildConfig, NormalizeConfig  # noqa: E402
from pipeline.manifest import load_manifests  # noqa: E402
from pipeline.stages.download import Download  # noqa: E402
from pipeline.stages.normalize import Normalize  # noqa: E402
from pipeline.stages.shots import ShotSplit  # noqa: E402


def _cpu() -> float:
    """CPU seconds of this process and its finished children (ffmpeg): steadier than wall time on a busy box."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def bench(manifests: str, repeat: int, langs: list[str], preset: str) -> list[dict]:
    seeds = load_manifests(manifests, langs)
    results = []
    with tempfile.TemporaryDirectory() as out:
        cfg = BuildConfig(out=out, manifests=manifests, langs=langs)
        cfg.normalize.preset = preset
        stages = {"download": Download(cfg), "normalize": Normalize(cfg), "shots": ShotSplit(cfg)}
        for seed in seeds:
            best: dict[str, float] = {}
            for _ in range(repeat):
                rows, times = [dict(seed)], {}
                for name, stage in stages.items():
                    t0, c0 = time.perf_counter(), _cpu()
                    rows = [r2 for r in rows for r2 in stage(r)]
                    times[name], times[name + "_cpu"] = time.perf_counter() - t0, _cpu() - c0
                best = {k: min(v, best.get(k, v)) for k, v in times.items()}
            first = rows[0]
            results.append(
                {
                    "key": seed["key"],
                    "dur": float(first.get("duration_s") or 0.0),
                    "size": f"{first.get('width', 0)}x{first.get('height', 0)}",
                    "clips": sum(r["status"] == "ok" for r in rows),
                    "mb": Path(first["norm_path"]).stat().st_size / 1e6 if first.get("norm_path") else 0.0,
                    "status": first["status"] if first["status"] != "ok" else "ok",
                    **best,
                }
            )
    return results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manifests", default=str(Path(__file__).resolve().parents[1] / "manifests" / "sample"))
    p.add_argument("--repeat", type=int, default=1, help="runs per clip; the best time is kept")
    p.add_argument("--lang", default="all")
    p.add_argument("--preset", default=NormalizeConfig.preset, help="x264 preset of norm.mkv")
    args = p.parse_args()
    langs = list(LANGS) if args.lang == "all" else args.lang.split(",")
    res = bench(args.manifests, args.repeat, langs, args.preset)
    print(f"machine: {platform.machine()} {os.cpu_count()} CPUs, {platform.python_version()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}, x264 preset {args.preset}")  # fmt: skip
    head = f"{'clip':24} {'size':>9} {'dur s':>6} {'clips':>5} {'normalize s':>11} {'shots s':>8}"
    head += f" {'norm s/min':>10} {'shots s/min':>11} {'norm cpu/min':>12} {'shots cpu/min':>13} {'norm MB/min':>11}"
    print(head)
    print("-" * len(head))
    for r in res:
        per = 60.0 / r["dur"] if r["dur"] else 0.0
        print(f"{r['key']:24} {r['size']:>9} {r['dur']:6.1f} {r['clips']:5d} "
              f"{r['normalize']:11.2f} {r['shots']:8.2f} {r['normalize'] * per:10.1f} {r['shots'] * per:11.1f} "
              f"{r['normalize_cpu'] * per:12.1f} {r['shots_cpu'] * per:13.1f} {r['mb'] * per:11.1f}")  # fmt: skip
    total = sum(r["dur"] for r in res)
    if total:
        def tot(k: str) -> float:
            return sum(r[k] for r in res)

        norm, shots, per = tot("normalize"), tot("shots"), 60.0 / total
        print("-" * len(head))
        print(f"{'total':24} {'':>9} {total:6.1f} {sum(r['clips'] for r in res):5d} {norm:11.2f} {shots:8.2f} "
              f"{norm * per:10.1f} {shots * per:11.1f} {tot('normalize_cpu') * per:12.1f} "
              f"{tot('shots_cpu') * per:13.1f} {tot('mb') * per:11.1f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
