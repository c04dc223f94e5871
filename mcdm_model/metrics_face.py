"""dlib face analysis for metrics: 68-point landmarks and 128-D identity embeddings, weights loaded by path.

The .dat files ship inside the face_recognition_models package; it is located with importlib (never imported: it
needs pkg_resources). Detection (HOG) runs on a downscaled frame every `detect_every` frames and the box is reused
in between, because talking-face crops hold one face that barely moves and detection is the slow part on CPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.common import DLIB_LANDMARKS_68 as LANDMARKS_68
from pipeline.common import DLIB_RECOGNITION as RECOGNITION
from pipeline.common import dlib_model_path


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
    """Landmarks (N, 68, 2) and identity embeddings (N, 128) for RGB uint8 frames; NaN where no face."""

    def __init__(self, detect_every: int = 10, detect_width: int = 320, id_stride: int = 1) -> None:
        import dlib

        d = dlib_models_dir()
        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(d / LANDMARKS_68))
        self.encoder = dlib.face_recognition_model_v1(str(d / RECOGNITION))
        self.detect_every, self.detect_width, self.id_stride = detect_every, detect_width, id_stride

    def detect(self, frame: np.ndarray) -> tuple[int, int, int, int] | None:
        """Largest face box (l, t, r, b) in source px, detected on a frame scaled to `detect_width`."""
        h, w = frame.shape[:2]
        scale = min(1.0, self.detect_width / w)
        small = frame
        if scale < 1.0:
            import cv2

            small = cv2.resize(frame, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
        rects = self.detector(np.ascontiguousarray(small), 1)
        if not rects:
            return None
        r = max(rects, key=lambda r: r.width() * r.height())
        return tuple(int(round(v / scale)) for v in (r.left(), r.top(), r.right(), r.bottom()))  # type: ignore[return-value]

    def _shape(self, frame: np.ndarray, box: tuple[int, int, int, int]):
        return self.predictor(np.ascontiguousarray(frame), self._dlib.rectangle(*box))

    def landmarks(self, frames: np.ndarray, fallback_box: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """(N, 68, 2) float32 source px; a box is re-detected every `detect_every` frames and reused between.

        `fallback_box` (e.g. the ground truth's face box) is used until a face is detected, so generated frames
        the detector rejects still get landmarks to compare; without it such frames stay NaN."""
        out = np.full((len(frames), 68, 2), np.nan, np.float32)
        box = fallback_box
        for i, frame in enumerate(frames):
            if box is None or i % self.detect_every == 0:
                box = self.detect(frame) or box
            if box is None:
                continue
            shape = self._shape(frame, box)
            out[i] = [(p.x, p.y) for p in shape.parts()]
        return out

    def _embed(self, frame: np.ndarray, pts: np.ndarray) -> np.ndarray:
        if not np.isfinite(pts).all():
            return np.full(128, np.nan, np.float32)
        x1, y1 = pts.min(0)
        x2, y2 = pts.max(0)
        rect = self._dlib.rectangle(int(x1), int(y1), int(x2), int(y2))
        parts = [self._dlib.point(int(round(x)), int(round(y))) for x, y in pts]
        shape = self._dlib.full_object_detection(rect, parts)
        return np.asarray(self.encoder.compute_face_descriptor(np.ascontiguousarray(frame), shape), np.float32)

    def embeddings(self, frames: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
        """(N, 128) identity embeddings; only every `id_stride`-th frame is encoded (others NaN) to save time."""
        lms = self.landmarks(frames) if landmarks is None else landmarks
        out = np.full((len(frames), 128), np.nan, np.float32)
        for i in range(0, len(frames), self.id_stride):
            out[i] = self._embed(frames[i], lms[i])
        return out

    def embedding(self, frame: np.ndarray) -> np.ndarray | None:
        """Embedding of one reference frame, None when no face is found."""
        emb = self.embeddings(frame[None])[0]
        return emb if np.isfinite(emb).all() else None
