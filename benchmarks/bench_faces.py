"""Face-stage speed per backend on real clips: detector-only frames/s and whole-stage clip frames/s.

    OMP_NUM_THREADS=1 python benchmarks/bench_faces.py [--seconds 4] [--backends mtcnn,dlib,yunet,insightface]
    OMP_NUM_THREADS=1 python benchmarks/bench_faces.py --sample manifests/sample   # face sizes of a sample build

"detect fps" = frames the detector alone handles per second (the stage runs it at cfg.faces.detect_fps only);
"stage fps" = clip frames per second through FaceTrack (decode x2, detect at 5 fps, track, 68 points on every
frame, pose, crop + H.264 encode at 512), i.e. how much faster than real time (25 fps) one CPU core curates.
Backends whose weights are missing are listed as skipped with the reason.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.kit.face_rows import shot_row  # noqa: E402
from pipeline.config import BuildConfig  # noqa: E402
from pipeline.media import ffmpeg, probe, read_frames  # noqa: E402
from pipeline.models.face_weights import MissingWeightsError  # noqa: E402
from pipeline.stages.faces import FaceTrack  # noqa: E402

MIN_FACE_PX = 160  # both clips' faces (372 and 222 px) pass, so pass 2 (landmarks, crop, encode) is timed
CLIPS = ("hdtf_WDA_AOC_en_8s.mp4", "latentsync_demo1_ru_10s.mp4")


def shared_media() -> Path:
    return Path(os.environ.get("TFW_SHARED_MEDIA", ROOT.parent / "shared" / "media"))


def normalise(src: Path, dst: Path, seconds: float) -> Path:
    if not dst.exists():
        ffmpeg("-t", f"{seconds}", "-i", str(src), "-vf", "fps=25", "-c:v", "libx264", "-preset", "veryfast",
               "-crf", "18", "-pix_fmt", "yuv420p", "-ac", "1", "-ar", "16000", "-c:a", "pcm_s16le", str(dst))
    return dst


def bench(backend: str, clips: list[Path], seconds: float, out: Path) -> list[tuple]:
    cfg = BuildConfig(out=str(out / backend))
    cfg.faces = dataclasses.replace(cfg.faces, backend=backend, min_face_px=MIN_FACE_PX)
    t = time.perf_counter()
    stage = FaceTrack(cfg)
    load_s = time.perf_counter() - t
    rows = []
    for clip in clips:
        info = probe(clip)
        frames = read_frames(clip, 0.0, 1.0, fps=5)
        t = time.perf_counter()
        for f in frames:
            stage.models.detector.detect(f, MIN_FACE_PX / 2)
        det_fps = len(frames) / (time.perf_counter() - t)
        row = shot_row(clip, f"bench_{backend}_{clip.stem.lower()}", 0.0, seconds)
        t = time.perf_counter()
        [res, *_] = stage(row)
        stage_s = time.perf_counter() - t
        status = res["status"] if res["status"] == "ok" else res["drop_reason"]
        rows.append((stage.models.name, clip.stem, f"{info['width']}x{info['height']}", load_s, det_fps,
                     seconds * 25 / stage_s, status))
    return rows


def sample_build(manifests: str, out: Path) -> None:
    """Download + Normalize + ShotSplit + FaceTrack over a manifest dir with the default config: face sizes."""
    from pipeline.build import run_local
    from pipeline.manifest import load_manifests
    from pipeline.stages.download import Download
    from pipeline.stages.normalize import Normalize
    from pipeline.stages.shots import ShotSplit

    cfg = BuildConfig(out=str(out / "sample"), manifests=manifests)
    stages = [Download(cfg), Normalize(cfg), ShotSplit(cfg), FaceTrack(cfg)]
    print("| clip | normalised size | face_px | n_faces | result | s / video (all 4 stages) |\n|---|---|---|---|---|---|")
    for seed in load_manifests(cfg.manifests, cfg.langs):
        t = time.perf_counter()
        rows = [r for group in run_local(stages, [[seed]]) for r in group]
        dt = time.perf_counter() - t
        for r in rows:
            result = "ok" if r["status"] == "ok" else r["drop_reason"]
            print(f"| {r['key']} | {r.get('width')}x{r.get('height')} | {r.get('face_px') or 0:.0f} | "
                  f"{r.get('n_faces')} | {result} | {dt:.1f} |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--backends", default="mtcnn,dlib,yunet,insightface")
    p.add_argument("--sample", default="", help="instead: run a manifest dir (e.g. manifests/sample) to face_px")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_faces_"))
    if args.sample:
        sample_build(args.sample, tmp)
        return 0
    clips = [normalise(shared_media() / "video_av" / c, tmp / f"{Path(c).stem}.mkv", args.seconds) for c in CLIPS]
    print("| backend | clip | size | load s | detect fps | stage fps | result |\n|---|---|---|---|---|---|---|")
    for backend in args.backends.split(","):
        try:
            rows = bench(backend, clips, args.seconds, tmp)
        except MissingWeightsError as exc:
            print(f"| {backend} | skipped: {exc} | | | | | |")
            continue
        for name, clip, size, load_s, det_fps, stage_fps, status in rows:
            print(f"| {name} | {clip} | {size} | {load_s:.1f} | {det_fps:.1f} | {stage_fps:.1f} | {status} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
