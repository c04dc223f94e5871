"""Sharpness, brightness and head-pose gates.

Blur is judged on the face at its native resolution, measured by the faces stage before any resize
(`face_detail_px`: effective resolution, `face_blockiness`: compression blocks; pipeline/face_quality.py), because
the 512² crop of a 250-300 px face is upscaled and has lost the detail a focus measure sums. Rows without those
measures fall back to the variance of the Laplacian on the crop (`sharpness`, always recorded). Mean luma catches
under-exposed footage. Crop measures are the median over up to `SAMPLES` evenly spaced frames (one motion-blurred
frame drops nothing), taken by the faces stage on the crop frames it writes (`crop_measures`); rows without them
(made elsewhere) have the crop decoded here.
The lips must move: a still photo (or a frozen frame) over speech can read as in sync by chance, and its
`mouth_range` (p95 - p5 of the track's inner-lip gap over the clip) is landmark jitter, a fifth or less of any
talking clip's (benchmarks/bench_lip_motion.py). This is the pipeline's one pose gate: the largest |yaw| / |pitch| over every frame of the track, because a
profile view in part of a clip is what the mean hides. A soft gate after the expensive stages, so a changed
limit can be re-decided from the stored scores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import media
from ..gates import first_failing
from ..record import FPS, Row, drop, is_ok
from ..track_io import read_track
from .base import Stage

SAMPLES = 12


def face_box(size: int, landmarks_crop: np.ndarray | None) -> tuple[int, int, int, int]:
    """Face region in crop px: the landmarks' bounding box when given, else the central 60 %."""
    if landmarks_crop is not None and len(landmarks_crop) and np.isfinite(landmarks_crop).all():
        lo, hi = np.median(landmarks_crop.min(axis=1), axis=0), np.median(landmarks_crop.max(axis=1), axis=0)
    else:
        lo, hi = np.array([0.2, 0.2]) * size, np.array([0.8, 0.8]) * size
    x0, y0 = (int(v) for v in np.clip(lo, 0, size - 2))
    x1, y1 = (int(v) for v in np.clip(hi, lo + 2, size))
    return x0, y0, x1, y1


def frame_quality(gray: np.ndarray) -> tuple[float, float]:
    """(variance of the Laplacian, mean luma) of one grey uint8/float image."""
    import cv2

    g = gray.astype(np.float32)
    return float(cv2.Laplacian(g, cv2.CV_32F, ksize=1).var()), float(g.mean())


def crop_measures(grey_crops: list[np.ndarray], landmarks_crop: np.ndarray | None) -> dict[str, float]:
    """sharpness, brightness: medians over grey crop frames, in the face box (the faces stage calls this on the
    crops it writes, so this stage need not decode them again)."""
    if not grey_crops:
        return {}
    x0, y0, x1, y1 = face_box(grey_crops[0].shape[1], landmarks_crop)
    vals = np.array([frame_quality(g[y0:y1, x0:x1]) for g in grey_crops])
    return {"sharpness": float(np.median(vals[:, 0])), "brightness": float(np.median(vals[:, 1]))}


def measure(crop_path: str, track_path: str | None = None, known: dict | None = None) -> dict[str, float]:
    """sharpness, brightness, yaw_abs_max, pitch_abs_max, mouth_range for one crop (+ track); sharpness and
    brightness are decoded from the crop only when `known` (the row) lacks them."""
    import cv2

    lms, pose, mouth = None, None, None
    if track_path and Path(track_path).is_file():
        track = read_track(track_path)
        lms, pose, mouth = track["landmarks_crop"], track["pose"], track["mouth_open"]
    known = known or {}
    if known.get("sharpness") is not None and known.get("brightness") is not None:
        out = {"sharpness": float(known["sharpness"]), "brightness": float(known["brightness"])}
    else:
        info = media.probe(crop_path)
        n_est = max(int(round(info["duration_s"] * FPS)), 1)
        frames = media.read_frames(crop_path, fps=min(float(FPS), FPS * SAMPLES / n_est) if n_est > SAMPLES else None)
        if len(frames) == 0:
            raise media.MediaError(f"{crop_path}: no frames")
        frames = frames[np.linspace(0, len(frames) - 1, min(SAMPLES, len(frames))).astype(int)]
        out = crop_measures([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames], lms)
    if pose is not None and len(pose):
        p = np.abs(np.asarray(pose, np.float32))
        out |= {"yaw_abs_max": float(np.nanmax(p[:, 0])), "pitch_abs_max": float(np.nanmax(p[:, 1]))}
    else:
        out |= {"yaw_abs_max": float("nan"), "pitch_abs_max": float("nan")}
    ok = None if mouth is None else np.asarray(mouth, np.float32)[np.isfinite(mouth)]
    out["mouth_range"] = float(np.percentile(ok, 95) - np.percentile(ok, 5)) if ok is not None and len(ok) else float("nan")
    return out


class QualityFilter(Stage):
    """Measures every row that reaches it, also those the sync gate dropped (a soft gate: select may re-keep them);
    drops by the quality gates of pipeline/gates.py (no_lip_motion, too_dark, blurry, extreme_pose, in that order)."""

    name = "quality"
    uses_model = False
    scores_soft_drops = True

    def process(self, row: Row) -> Row | list[Row]:
        row |= measure(row["crop_path"], row.get("track_path"), row)
        gate = first_failing(row, self.cfg, self.name) if is_ok(row) else None
        return drop(row, gate.reason, self.name, gate.detail(row, self.cfg)) if gate else row
