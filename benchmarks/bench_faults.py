"""50 transient faults across download, normalize and the model stages: does a build plus at most two reruns
end with exactly the kept keys of a fault-free build?

The real `python -m pipeline.build` with every stage, on real English talking clips served by a real HTTP server
on 127.0.0.1. Faults: the server answers the first requests of some URLs with 503 / 429 / a reset connection;
TFW_FAULTS (pipeline/inject.py) makes ffmpeg calls in normalize report ENOSPC, a timeout or SIGKILL, and raises
MemoryError / ConnectionResetError / ENOSPC at the start of tries in faces, language and sync. The budget is shared
across processes and reruns (TFW_FAULTS_DIR), so every fault fires once. Prints a table per run.

    python benchmarks/bench_faults.py [--work /tmp/bench_faults] [--ray] [--max-reruns 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.kit.faultkit import FaultServer, build, index_rows, manifest, pending, shard_keys  # noqa: E402
from pipeline import inject  # noqa: E402

CLIPS = ("vexpress_AOC_en_4s.mp4", "retalking_face2_en.mp4", "retalking_face3_en.mp4", "retalking_face4_en.mp4",
         "retalking_face5_en.mp4", "hdtf_WDA_AOC_en_8s.mp4", "liveportrait_d11_child_en.mp4")  # fmt: skip
# HTTP faults per URL (served in order to the first requests); three in a row outlast one run's 3 tries
HTTP_FAULTS: dict[str, list[str]] = {
    "vexpress_aoc_en_4s": ["503", "429"], "retalking_face2_en": ["reset", "503"],
    "retalking_face3_en": ["429", "reset", "503"], "retalking_face4_en": ["503"],
    "retalking_face5_en": ["reset", "429", "503"], "hdtf_wda_aoc_en_8s": ["503", "reset"],
    "liveportrait_d11_child_en": ["429"],
}  # fmt: skip
PLAN = ("normalize:enospc:6,normalize:timeout:5,normalize:killed:5,"
        "faces:oom:8,language:reset:6,sync:diskfull:6")  # fmt: skip
# Open score gates: which clips pass sync / quality must not decide whether there is anything to compare.
CONFIG = ("retry: {attempts: 3, backoff_s: 0.2}\nfaces: {min_face_px: 200}\n"
          "sync: {min_conf: 0.0, max_offset_frames: 15}\nquality: {min_sharpness: 0.0, min_brightness: 0.0}\n"
          "download: {socket_timeout_s: 10, retries: 1}\n")  # fmt: skip


def planned() -> int:
    return sum(len(v) for v in HTTP_FAULTS.values()) + sum(n for _, _, n in inject.parse(PLAN))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="/tmp/bench_faults")
    p.add_argument("--media", default=str(Path(__file__).resolve().parents[2] / "shared" / "media"))
    p.add_argument("--ray", action="store_true", help="run the builds on a local Ray cluster (default in-process)")
    p.add_argument("--max-reruns", type=int, default=2)
    args = p.parse_args(argv)
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    server = FaultServer()
    bodies = {Path(c).stem.lower(): (Path(args.media) / "video_av" / c).read_bytes() for c in CLIPS}
    for name, body in bodies.items():
        server.file(f"/{name}.mp4", body)
    man = manifest(work / "manifests", {name: f"{server.base}/{name}.mp4" for name in bodies})
    config = work / "build.yaml"
    config.write_text(CONFIG)
    print(f"{len(bodies)} videos served from {server.base}; {planned()} transient faults planned "
          f"({sum(len(v) for v in HTTP_FAULTS.values())} HTTP, {PLAN})", flush=True)

    t0 = time.monotonic()
    ref = build(work / "reference", man, config=config, ray=args.ray, timeout=3600)
    t_ref = time.monotonic() - t0
    if ref.returncode != 0:
        print(ref.stderr[-4000:])
        return 1
    want = sorted(shard_keys(work / "reference"))
    print(f"fault-free build: exit 0, {len(want)} clips kept, {t_ref:.0f} s", flush=True)

    for name, body in bodies.items():  # the same URLs, now failing first
        server.flaky(f"/{name}.mp4", body, HTTP_FAULTS.get(name, []))
    state = work / "faults"
    env = {"TFW_FAULTS": PLAN, "TFW_FAULTS_DIR": str(state)}
    out = work / "faulty"
    rows, fired_before = [], 0
    for run in range(1 + args.max_reruns):
        http_before = sum(len(v) for v in HTTP_FAULTS.values()) - sum(len(v) for v in server.planned.values())
        t0 = time.monotonic()
        proc = build(out, man, config=config, ray=args.ray, extra_env=env, timeout=3600)
        wall = time.monotonic() - t0
        http_now = sum(len(v) for v in HTTP_FAULTS.values()) - sum(len(v) for v in server.planned.values())
        injected = sum(inject.fired(state).values()) if state.exists() else 0
        fired = injected + http_now
        keys = shard_keys(out)
        rows.append((run, proc.returncode, fired - fired_before, http_now - http_before, len(pending(out)),
                     len(keys), wall))  # fmt: skip
        fired_before = fired
        if proc.returncode not in (0, 3):
            print(proc.stderr[-4000:])
            return 1
        if proc.returncode == 0:
            break
    got = shard_keys(out)
    dup = [k for k, n in Counter(got).items() if n > 1]
    reasons_ok = all(r["drop_reason"] for r in index_rows(out) if r["status"] != "ok")
    print("\n| run | exit | faults fired | of them HTTP | videos pending | clips kept | wall s |")
    print("|---|---|---|---|---|---|---|")
    for run, rc, f, h, pend, kept, wall in rows:
        print(f"| {'first' if run == 0 else f'rerun {run}'} | {rc} | {f} | {h} | {pend} | {kept} | {wall:.0f} |")
    by_site = inject.fired(state) if state.exists() else {}
    print(f"\ninjected by site: {json.dumps(by_site, sort_keys=True)}; HTTP faults served: {http_now}")
    same = sorted(got) == want
    print(f"faults fired {fired} of {planned()}; reruns {len(rows) - 1}; kept keys equal the fault-free build: "
          f"{same} ({len(got)} vs {len(want)}); duplicates: {len(dup)}; every drop has a reason: {reasons_ok}")
    server.close()
    ok = same and not dup and reasons_ok and fired == planned() and rows[-1][1] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
