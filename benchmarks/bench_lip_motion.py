"""The lip-motion gate (quality.min_mouth_range) on real media: face photos held still or slowly zoomed, and every
real talking clip of ../shared/media/video_av, each through the real faces and quality stages. One table.

    OMP_NUM_THREADS=1 python benchmarks/bench_lip_motion.py [--seconds 4]

Why: a face photo over speech (a slideshow, a podcast cover) has a face the faces stage keeps and can read as in
sync by chance (the curation benchmark kept one at conf >= 3). `mouth_range` is p95 - p5 of the track's inner-lip
gap over the clip; the gate drops a clip whose range is under `quality.min_mouth_range`. Nothing here is fitted:
the table shows where the photos and the talking clips fall on either side of the default.
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

from benchmarks.kit.face_rows import shot_row  # noqa: E402
from pipeline import media  # noqa: E402
from pipeline.config import BuildConfig  # noqa: E402
from pipeline.stages.faces import FaceTrack  # noqa: E402
from pipeline.stages.quality import QualityFilter  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "media"
PHOTOS = ("facenet_angelina_jolie.jpg", "facenet_paul_rudd.jpg", "facenet_kate_siegel.jpg", "facenet_shea_whigham.jpg")
ENC = ["-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", "-r", "25"]
ZOOM = "zoompan=z='1+0.002*on':d=1:s=864x1080:fps=25"  # a slow Ken Burns push-in, 0.2 % a frame


def inputs(shared: Path, seconds: float) -> list[tuple[str, str, list[str]]]:
    """(kind, name, ffmpeg input + filter args) per test video."""
    out = []
    for p in PHOTOS:
        still = ["-loop", "1", "-framerate", "25", "-i", str(shared / "faces" / p), "-t", f"{seconds:g}"]
        out += [("photo, still", p, [*still, "-vf", "scale=-2:1080"]), ("photo, zoom", p, [*still, "-vf", f"scale=-2:1080,{ZOOM}"])]
    for v in sorted((shared / "video_av").glob("*.mp4")):
        out.append(("talking clip", v.name, ["-t", f"{seconds:g}", "-i", str(v), "-vf", "fps=25,setsar=1"]))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--shared", type=Path, default=SHARED)
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench_lip_"))
    cfg = BuildConfig(out=str(tmp / "out"), langs=["en"])
    # MTCNN (package weights) and a 160-px floor, as tests/pipeline/test_faces.py: the gate, not face size, is measured
    cfg.faces = dataclasses.replace(cfg.faces, backend="mtcnn", min_face_px=160, crop_size=128)
    faces, quality = FaceTrack(cfg), QualityFilter(cfg)
    print(f"quality.min_mouth_range = {cfg.quality.min_mouth_range:g}\n")
    print("| kind | source | faces stage | mouth_range | quality decision |\n|---|---|---|---|---|")
    for i, (kind, name, ff) in enumerate(inputs(args.shared, args.seconds)):
        path = tmp / f"v{i}.mkv"
        media.ffmpeg(*ff, *ENC, str(path))
        for r in faces(shot_row(path, f"lip{i}")):
            if r["status"] != "ok":
                print(f"| {kind} | {name} | {r['drop_reason']} | | |")
                continue
            [q] = quality(r)
            verdict = "kept" if q["status"] == "ok" else q["drop_reason"]
            print(f"| {kind} | {name} | ok ({r['face_px']:.0f} px) | {q['mouth_range']:.4f} | {verdict} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
