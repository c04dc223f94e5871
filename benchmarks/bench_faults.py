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
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.kit.faultkit import fault_campaign  # noqa: E402

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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="/tmp/bench_faults")
    p.add_argument("--media", default=str(Path(__file__).resolve().parents[2] / "shared" / "media"))
    p.add_argument("--ray", action="store_true", help="run the builds on a local Ray cluster (default in-process)")
    p.add_argument("--max-reruns", type=int, default=2)
    args = p.parse_args(argv)
    r = fault_campaign(Path(args.work), Path(args.media), CLIPS, HTTP_FAULTS, PLAN, CONFIG, ray=args.ray,
                       max_reruns=args.max_reruns, log=lambda m: print(m, flush=True))  # fmt: skip
    print("\n| run | exit | faults fired | of them HTTP | videos pending | clips kept | wall s |")
    print("|---|---|---|---|---|---|---|")
    for i, (rc, f, h, pend, kept, wall) in enumerate(r["runs"]):
        print(f"| {'first' if i == 0 else f'rerun {i}'} | {rc} | {f} | {h} | {pend} | {kept} | {wall:.0f} |")
    print(f"\ninjected by site: {json.dumps(r['by_site'], sort_keys=True)}; HTTP faults served: {r['http']}")
    same = r["got"] == r["want"]
    print(f"faults fired {r['fired']} of {r['planned']}; reruns {len(r['runs']) - 1}; kept keys equal the fault-free "
          f"build: {same} ({len(r['got'])} vs {len(r['want'])}); duplicates: {len(r['duplicates'])}; every drop has "
          f"a reason: {r['reasons_ok']}")  # fmt: skip
    ok = same and not r["duplicates"] and r["reasons_ok"] and r["fired"] == r["planned"] and r["runs"][-1][0] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
