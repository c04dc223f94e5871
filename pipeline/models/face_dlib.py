"""dlib's 68-point shape predictor and 128-D ResNet identity, from the face-recognition-models package by path.

The package itself is never imported (its __init__ needs pkg_resources); we only locate its `models/` folder.
A `<models_dir>/dlib/` folder holding the same .dat files wins, so a deployment can pin its own copies.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .face_weights import dlib_model_path

SHAPE_68 = "shape_predictor_68_face_landmarks.dat"
RESNET = "dlib_face_recognition_resnet_model_v1.dat"


def _rect(box: np.ndarray):
    """A detector box as the rectangle the 68-point predictor was trained on (dlib HOG boxes sit lower and
    are squarer than MTCNN/SCRFD boxes: measured on real clips, centre +6 % of height, height x0.78)."""
    import dlib

    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2 + 0.06 * h
    hw, hh = 0.525 * w, 0.39 * h
    return dlib.rectangle(round(cx - hw), round(cy - hh), round(cx + hw), round(cy + hh))


class Dlib68Landmarker:
    """68 iBUG points inside a face box (about 1 ms per face on one CPU core)."""

    name = "dlib68"

    def __init__(self, models_dir: str | Path | None = None):
        import dlib

        self.predictor = dlib.shape_predictor(str(dlib_model_path(SHAPE_68, models_dir)))

    def landmarks(self, rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
        shape = self.predictor(rgb, _rect(box))
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)


class DlibEmbedder:
    """dlib ResNet 128-D face descriptor, aligned by the 68 landmarks; returned L2-normalised.

    Raw descriptors have norm ~1.6 and dlib's same-person threshold is 0.6, i.e. ~0.38 once normalised.
    """

    name = "dlib_resnet"
    max_same_dist = 0.38

    def __init__(self, models_dir: str | Path | None = None):
        import dlib

        self._dlib = dlib
        self.net = dlib.face_recognition_model_v1(str(dlib_model_path(RESNET, models_dir)))

    def embed(self, rgb: np.ndarray, lm68: np.ndarray, kps5: np.ndarray | None = None) -> np.ndarray:
        dlib = self._dlib
        x1, y1 = lm68.min(0)
        x2, y2 = lm68.max(0)
        rect = dlib.rectangle(int(x1), int(y1), int(x2), int(y2))
        shape = dlib.full_object_detection(rect, [dlib.point(int(round(x)), int(round(y))) for x, y in lm68])
        vec = np.asarray(self.net.compute_face_descriptor(np.ascontiguousarray(rgb), shape), dtype=np.float32)
        return vec / max(float(np.linalg.norm(vec)), 1e-8)
