"""The blur gates (quality.min_face_detail_px, quality.max_blockiness) on copies of real studio clips made by
encoders other than the curation benchmark's x264 `veryfast` recipe. One table.

    OMP_NUM_THREADS=1 python benchmarks/bench_blur_encoders.py [--seconds 3] [--cache DIR]

Why: the blockiness gate was fitted on CRF-45 copies from x264 veryfast. A gate that measures the face, not the
encoder, should also drop a CRF-45 copy from x264's default preset and keep copies from codecs a careful person
keeps (ProRes proxy, MJPEG q 3: the same picture side by side). Nothing here is fitted; each row is one clip's
first seconds through the real faces (MTCNN) and quality stages (with the H.264 source QP normalize records),
with the sample build's min_face_px.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.kit.curation_build import degrade  # noqa: E402
from benchmarks.kit.face_rows import shot_row  # noqa: E402
from pipeline.config import BuildConfig  # noqa: E402
from pipeline.stages.faces import FaceTrack  # noqa: E402
from pipeline.stages.quality import QualityFilter  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "media"
CLIPS = {"face2": "retalking_face2_en.mp4", "aoc": "hdtf_WDA_AOC_en_8s.mp4", "katie": "hdtf_WDA_KatieHill_en_8s.mp4",
         "face4": "retalking_face4_en.mp4", "demo3": "latentsync_demo3_en_20s.mp4"}  # fmt: skip
# what a careful person does with each copy (by eye, side by side with the source)
WANT = {"clean": "keep", "crf45": "drop", "crf45_medium": "drop", "prores_proxy": "keep", "mjpeg_q3": "keep"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "bench-blur-encoders")
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    cfg = BuildConfig(out=str(args.cache / "out"), langs=["en"])
    cfg.faces = dataclasses.replace(cfg.faces, backend="mtcnn", min_face_px=160)
    faces, quality = FaceTrack(cfg), QualityFilter(cfg)
    q = cfg.quality
    print(f"| clip | copy | want | got | face_blockiness (max {q.max_blockiness}) | face_detail_px (min "
          f"{q.min_face_detail_px:g}) | source_qp (max {q.max_source_qp:g}) |")
    print("|---|---|---|---|---:|---:|---:|")
    right = total = 0
    for name, file in CLIPS.items():
        for kind in WANT:
            path = degrade(SHARED / "video_av" / file, args.cache / f"{name}_{kind}.mkv", kind, args.seconds)
            [row] = faces(shot_row(path, f"{name}_{kind}", 0.0, args.seconds))
            if row["status"] == "ok":
                [row] = quality(row)
            got = "keep" if row["status"] == "ok" else f"drop ({row['drop_reason']})"
            right += got.split()[0] == WANT[kind]
            total += 1
            print(f"| {name} | {kind} | {WANT[kind]} | {got} | {row.get('face_blockiness', float('nan')):.3f} | "
                  f"{row.get('face_detail_px', float('nan')):.0f} | {row.get('source_qp', '-')} |", flush=True)
    print(f"\n{right}/{total} copies decided as a careful person would")


if __name__ == "__main__":
    main()
