"""insightface pack models on onnxruntime, without the insightface package: ArcFace identity and 68 3-D points.

Pre/post-processing follows insightface's model_zoo (arcface_onnx.py, landmark.py, face_align.py):
- ArcFace: 5-point similarity alignment to the 112x112 template, (x - 127.5) / 127.5, 512-D output.
- 1k3d68: box centre, scale 192 / (1.5 * box side), raw pixels (the graph normalises), last 68 of the
  (x, y, z) points, mapped back through the inverse crop transform. iBUG-68 order, like dlib's predictor.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

ARCFACE_DST = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 least-squares similarity transform src -> dst: the Umeyama solution insightface uses (skimage's
    SimilarityTransform), from OpenCV with every point an inlier and the least-squares refinement."""
    m, _ = cv2.estimateAffinePartial2D(np.asarray(src, np.float32), np.asarray(dst, np.float32), method=cv2.RANSAC,
                                       ransacReprojThreshold=1e6, maxIters=1, refineIters=100)  # fmt: skip
    return m


def five_points(lm68: np.ndarray) -> np.ndarray:
    """The detector's 5 points (eyes, nose tip, mouth corners; image-left first) from 68 iBUG points."""
    return np.stack([lm68[36:42].mean(0), lm68[42:48].mean(0), lm68[30], lm68[48], lm68[54]]).astype(np.float32)


def _session(path: str | Path, providers: list[str]):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=providers)


class ArcFaceEmbedder:
    """ArcFace (w600k_r50.onnx) 512-D identity, L2-normalised; same person ~ cosine > 0.28."""

    name = "arcface"
    max_same_dist = 1.2  # euclidean on unit vectors = sqrt(2 - 2 cos); 1.2 <=> cos 0.28

    def __init__(self, model_path: str | Path, providers: list[str]):
        self.session = _session(model_path, providers)
        self.input_name = self.session.get_inputs()[0].name

    def embed(self, rgb: np.ndarray, lm68: np.ndarray, kps5: np.ndarray | None = None) -> np.ndarray:
        pts = kps5 if kps5 is not None else five_points(lm68)
        m = similarity(pts, ARCFACE_DST)
        chip = cv2.warpAffine(rgb, m, (112, 112), borderValue=0.0).astype(np.float32)
        blob = ((chip - 127.5) / 127.5).transpose(2, 0, 1)[None]
        vec = self.session.run(None, {self.input_name: blob})[0][0].astype(np.float32)
        return vec / max(float(np.linalg.norm(vec)), 1e-8)


class Landmark3D68:
    """insightface 1k3d68.onnx: 68 iBUG points (x, y) in source px from a face box."""

    name = "1k3d68"
    size = 192

    def __init__(self, model_path: str | Path, providers: list[str]):
        self.session = _session(model_path, providers)
        self.input_name = self.session.get_inputs()[0].name

    def landmarks(self, rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
        x1, y1, x2, y2 = (float(v) for v in box)
        scale = self.size / (max(x2 - x1, y2 - y1) * 1.5)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        m = np.array([[scale, 0, self.size / 2 - cx * scale], [0, scale, self.size / 2 - cy * scale]])
        chip = cv2.warpAffine(rgb, m, (self.size, self.size), borderValue=0.0).astype(np.float32)
        pred = self.session.run(None, {self.input_name: chip.transpose(2, 0, 1)[None]})[0][0]
        pred = pred.reshape(-1, 3) if pred.size >= 3000 else pred.reshape(-1, 2)
        pts = (pred[-68:, :2] + 1) * (self.size // 2)
        inv = cv2.invertAffineTransform(m)
        return (pts @ inv[:, :2].T + inv[:, 2]).astype(np.float32)
