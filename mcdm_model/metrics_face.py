"""Face analysis for metrics: 68-point landmarks (dlib) and identity embeddings (ArcFace, else dlib's ResNet).

A metric must be able to fail: landmarks are fitted only inside a box the detector found in *that* frame, never in
a box borrowed from the ground truth or from another frame, so a frame without a face gives NaN landmarks and NaN
identity, and `face_rate` reports how many frames had a face. Identity uses ArcFace (insightface's buffalo_l
`w600k_r50.onnx`: the faces stage's own embedder, onnxruntime on the 5-point 112² alignment) when the pack is at
`<models_dir>/insightface/buffalo_l/`, else dlib's 128-D ResNet (face_recognition_models, loaded by path).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pipeline.common import DLIB_LANDMARKS_68 as LANDMARKS_68
from pipeline.common import DLIB_RECOGNITION as RECOGNITION
from pipeline.common import INSIGHTFACE_PACK_ROLES, ArcFaceEmbedder, dlib_model_path, find_insightface_model

# where the faces stage looks for ArcFace: <models_dir>/insightface/buffalo_l/w600k_r50.onnx (first upstream name)
ARCFACE = Path("insightface") / "buffalo_l" / INSIGHTFACE_PACK_ROLES["recognition"][0]


def dlib_models_dir() -> Path:
    """The folder holding dlib's landmark and identity weights (the faces stage's lookup), or a clear error."""
    try:
        d = dlib_model_path(LANDMARKS_68).parent
    except FileNotFoundError as exc:
        raise RuntimeError(f"face metrics need dlib's landmark/identity weights: {exc}") from exc
    if not (d / RECOGNITION).is_file():
        raise RuntimeError(f"missing {d / RECOGNITION}: reinstall face-recognition-models==0.3.0")
    return d


class FaceAnalyzer:
    """Landmarks (N, 68, 2) and identity embeddings for RGB uint8 frames; NaN wherever no face was detected."""

    def __init__(self, detect_width: int = 320, id_stride: int = 1, models_dir: str | Path | None = None) -> None:
        import dlib

        d = dlib_models_dir()
        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(d / LANDMARKS_68))
        self.detect_width, self.id_stride = detect_width, id_stride
        arc = find_insightface_model(models_dir, "recognition", ARCFACE.parent.name) if models_dir else None
        if arc is not None:
            self.arcface = ArcFaceEmbedder(arc, ["CPUExecutionProvider"])
            self.identity_model = f"arcface ({arc.name})"
        else:
            self.arcface, self.identity_model = None, "dlib resnet (dlib_face_recognition_resnet_model_v1)"
            self.encoder = dlib.face_recognition_model_v1(str(d / RECOGNITION))

    def detect(self, frame: np.ndarray) -> tuple[int, int, int, int] | None:
        """Largest face box (l, t, r, b) in source px, detected on a frame scaled to `detect_width`."""
        h, w = frame.shape[:2]
        scale = min(1.0, self.detect_width / w)
        small = frame if scale >= 1.0 else cv2.resize(frame, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
        rects = self.detector(np.ascontiguousarray(small), 1)
        if not rects:
            return None
        r = max(rects, key=lambda r: r.width() * r.height())
        return tuple(int(round(v / scale)) for v in (r.left(), r.top(), r.right(), r.bottom()))  # type: ignore[return-value]

    def landmarks(self, frames: np.ndarray) -> np.ndarray:
        """(N, 68, 2) float32 source px, fitted in the box detected in each frame; NaN where none was found."""
        out = np.full((len(frames), 68, 2), np.nan, np.float32)
        for i, frame in enumerate(frames):
            box = self.detect(frame)
            if box is not None:
                shape = self.predictor(np.ascontiguousarray(frame), self._dlib.rectangle(*box))
                out[i] = [(p.x, p.y) for p in shape.parts()]
        return out

    def _embed(self, frame: np.ndarray, pts: np.ndarray) -> np.ndarray:
        if self.arcface is not None:
            return self.arcface.embed(frame, pts)
        x1, y1 = pts.min(0)
        x2, y2 = pts.max(0)
        rect = self._dlib.rectangle(int(x1), int(y1), int(x2), int(y2))
        parts = [self._dlib.point(int(round(x)), int(round(y))) for x, y in pts]
        shape = self._dlib.full_object_detection(rect, parts)
        return np.asarray(self.encoder.compute_face_descriptor(np.ascontiguousarray(frame), shape), np.float32)

    def embeddings(self, frames: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
        """(N, D) identity embeddings of every `id_stride`-th frame with a face; other rows NaN."""
        lms = self.landmarks(frames) if landmarks is None else landmarks
        rows: list[np.ndarray | None] = [None] * len(frames)
        for i in range(0, len(frames), self.id_stride):
            if np.isfinite(lms[i]).all():
                rows[i] = self._embed(frames[i], lms[i])
        dim = next((len(r) for r in rows if r is not None), 512 if self.arcface is not None else 128)
        return np.stack([np.full(dim, np.nan, np.float32) if r is None else r for r in rows]) if rows else np.zeros((0, dim))

    def embedding(self, frame: np.ndarray) -> np.ndarray | None:
        """Embedding of one reference frame, None when no face is found."""
        emb = self.embeddings(frame[None])[0]
        return emb if np.isfinite(emb).all() else None


def face_rate(landmarks: np.ndarray) -> float:
    """Share of frames whose landmarks were found (0 for noise, 1 for a real face video)."""
    lm = np.asarray(landmarks)
    return float(np.isfinite(lm.reshape(len(lm), -1)).all(1).mean()) if len(lm) else float("nan")
