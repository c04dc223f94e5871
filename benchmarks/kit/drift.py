"""Drift of a long generation without ground truth: metrics per time bin against the reference portrait.

Used by benchmarks/bench_mcdm_ablation.py (and importable by tests as benchmarks.kit.drift). Per bin of `bin_s`
seconds: identity similarity of the generated faces to the reference, the share of frames with a face, landmark
distance to the reference's landmarks (normalised by its inter-ocular distance: pose / geometry drift), SSIM to the
reference frame (appearance drift), and LSE-C / LSE-D of the bin with its audio (the pipeline's sync scorer).
Frames are upscaled to `metric_size` for dlib, as evaluate does.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from mcdm_model import metrics
from mcdm_model.metrics_face import FaceAnalyzer, face_rate
from mcdm_model.metrics_sync import SyncScorer


def _resize(frames: np.ndarray, size: int) -> np.ndarray:
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_CUBIC) for f in frames])


def score_bins(video: np.ndarray, audio: np.ndarray, ref: np.ndarray, fps: int = 25, bin_s: float = 10.0,
               face: FaceAnalyzer | None = None, metric_size: int = 256, id_stride: int = 5,
               models_dir: str | None = None) -> list[dict[str, Any]]:
    """video (N, S, S, 3) uint8, audio 16 kHz for the same span, ref (S, S, 3): one dict per bin."""
    face = face or FaceAnalyzer()
    face.id_stride = id_stride
    sync = SyncScorer(face, models_dir=models_dir)
    ref_big = _resize(ref[None], metric_size)
    ref_lm = face.landmarks(ref_big)
    ref_emb = face.embeddings(ref_big, ref_lm)[0]
    spf, step = 16000 // fps, int(round(bin_s * fps))
    out = []
    for s in range(0, len(video), step):
        clip = video[s : s + step]
        big = _resize(clip, metric_size)
        lm = face.landmarks(big)
        ids = metrics.cosine(face.embeddings(big, lm), ref_emb)
        lmd = metrics.landmark_distance(lm, np.repeat(ref_lm, len(lm), 0))
        ssim = metrics.ssim_frames(clip, np.repeat(ref[None], len(clip), 0))
        syn = sync.score(big, audio[s * spf : (s + len(clip)) * spf], fps=fps, landmarks=lm)
        out.append({"t_start_s": s / fps, "identity_sim": metrics.nanmean(ids), "face_rate": face_rate(lm),
                    "landmark_dist": metrics.nanmean(lmd), "ssim_ref": metrics.nanmean(ssim),
                    "lse_c": syn["lse_c"], "lse_d": syn["lse_d"]})
    return out
