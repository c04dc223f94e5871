"""Face detector backends behind one interface: `detect(rgb) -> Detections` in source pixels.

- MTCNN (facenet-pytorch, weights shipped in the package): the offline default, boxes + 5 points.
- SCRFD (insightface pack `det_*.onnx` on onnxruntime): the upstream decode (distance-to-box on anchor centres of
  strides 8/16/32, written here because the `insightface` package is not a dependency) and OpenCV's NMS.
- YuNet (OpenCV's cv2.FaceDetectorYN with `yunet/face_detection_yunet_*.onnx` from the models dir).
- dlib HOG (no weights at all): an independent second opinion, used by tests and as a last resort.
Every backend downsizes large frames to `max_side` before detecting (talking faces are big; speed is linear in
pixels) and maps boxes back, so callers only ever see source pixels. `detect(rgb, min_size)` may skip faces
smaller than min_size px (MTCNN starts its pyramid there, which is most of its speed-up); callers that need an
exact cut apply `Detections.at_least`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


@dataclass
class Detections:
    """K faces in one frame: boxes (K,4) x1,y1,x2,y2 and kps (K,5,2) in source px, scores (K,) in [0, 1]."""

    boxes: np.ndarray
    scores: np.ndarray
    kps: np.ndarray | None = None

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32))

    def __len__(self) -> int:
        return len(self.boxes)

    def at_least(self, min_size: float) -> Detections:
        """Only faces whose longer box side is >= min_size px."""
        side = np.maximum(self.boxes[:, 2] - self.boxes[:, 0], self.boxes[:, 3] - self.boxes[:, 1])
        return self.keep(side >= min_size) if min_size > 0 else self

    def keep(self, mask: np.ndarray) -> Detections:
        return Detections(self.boxes[mask], self.scores[mask], None if self.kps is None else self.kps[mask])


def _downscale(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    h, w = rgb.shape[:2]
    s = min(1.0, max_side / max(h, w)) if max_side > 0 else 1.0
    if s >= 1.0:
        return rgb, 1.0
    return cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA), s


def nms(boxes: np.ndarray, scores: np.ndarray, thresh: float) -> np.ndarray:
    """Greedy non-maximum suppression of boxes with score > 0 (OpenCV's NMSBoxes); kept indices, best first."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).astype(np.float32)
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), scores.astype(np.float32).tolist(), 0.0, thresh)
    return np.asarray(keep, np.int64).reshape(-1)


class MTCNNDetector:
    """facenet-pytorch MTCNN (P/R/O-net weights inside the package)."""

    name = "mtcnn"
    confident_score = 0.98  # real frontal faces score >= 0.998; clasped hands on real clips 0.70-0.96

    def __init__(self, max_side: int = 640, device: str = "cpu"):
        from facenet_pytorch import MTCNN

        self.max_side = max_side
        self.net = MTCNN(keep_all=True, min_face_size=20, device=device, post_process=False)

    def detect(self, rgb: np.ndarray, min_size: float = 0.0) -> Detections:
        small, s = _downscale(rgb, self.max_side)
        # the image pyramid starts at the smallest face wanted: far fewer levels for big talking faces
        self.net.min_face_size = max(20, int(min_size * s))
        boxes, probs, points = self.net.detect(small, landmarks=True)
        if boxes is None or len(boxes) == 0:
            return Detections.empty()
        boxes = np.asarray(boxes, np.float32) / s
        return Detections(boxes, np.asarray(probs, np.float32), np.asarray(points, np.float32) / s)


class DlibHogDetector:
    """dlib's HOG frontal-face detector; its SVM margin is mapped to (0, 1) with a logistic so 0.5 = margin 0."""

    name = "dlib_hog"
    confident_score = 0.62  # SVM margin 0.5

    def __init__(self, max_side: int = 640):
        import dlib

        self.max_side = max_side
        self.det = dlib.get_frontal_face_detector()

    def detect(self, rgb: np.ndarray, min_size: float = 0.0) -> Detections:
        small, s = _downscale(rgb, self.max_side)
        rects, margins, _ = self.det.run(np.ascontiguousarray(small), 0, -0.5)
        if not rects:
            return Detections.empty()
        boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], np.float32) / s
        scores = 1.0 / (1.0 + np.exp(-np.asarray(margins, np.float32)))
        return Detections(boxes, scores.astype(np.float32), None)


class YuNetDetector:
    """OpenCV YuNet (`cv2.FaceDetectorYN`) from a local onnx file (opencv_zoo layout)."""

    name = "yunet"
    confident_score = 0.85

    def __init__(self, model_path: str | Path, max_side: int = 640, score_threshold: float = 0.5):
        self.max_side = max_side
        self.net = cv2.FaceDetectorYN.create(str(model_path), "", (320, 320), score_threshold, 0.3, 5000)

    def detect(self, rgb: np.ndarray, min_size: float = 0.0) -> Detections:
        small, s = _downscale(rgb, self.max_side)
        h, w = small.shape[:2]
        self.net.setInputSize((w, h))
        _, faces = self.net.detect(cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
        if faces is None or len(faces) == 0:
            return Detections.empty()
        faces = np.asarray(faces, np.float32)
        boxes = np.stack([faces[:, 0], faces[:, 1], faces[:, 0] + faces[:, 2], faces[:, 1] + faces[:, 3]], 1)
        return Detections(boxes / s, faces[:, 14].copy(), faces[:, 4:14].reshape(-1, 5, 2) / s)


def scrfd_decode(
    outputs: list[np.ndarray], input_hw: tuple[int, int], score_thr: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Raw SCRFD outputs -> (boxes, scores, kps) in network-input pixels, before NMS (upstream layout).

    Outputs come grouped: scores for every stride, then box distances, then (optionally) keypoint offsets.
    6/9 outputs: strides 8/16/32 with 2 anchors per cell; 10/15 outputs: strides 8..128 with 1 anchor.
    """
    n = len(outputs)
    fmc, strides, anchors = (3, (8, 16, 32), 2) if n in (6, 9) else (5, (8, 16, 32, 64, 128), 1)
    has_kps = n in (9, 15)
    all_b, all_s, all_k = [], [], []
    for i, stride in enumerate(strides):
        scores = outputs[i].reshape(-1)
        dist = outputs[i + fmc].reshape(-1, 4) * stride
        h, w = input_hw[0] // stride, input_hw[1] // stride
        centers = np.stack(np.mgrid[:h, :w][::-1], axis=-1).astype(np.float32).reshape(-1, 2) * stride
        centers = np.repeat(centers, anchors, axis=0)
        pos = np.where(scores >= score_thr)[0]
        c = centers[pos]
        all_b.append(np.concatenate([c - dist[pos, :2], c + dist[pos, 2:]], axis=1))
        all_s.append(scores[pos])
        if has_kps:
            off = outputs[i + 2 * fmc].reshape(-1, 10)[pos] * stride
            all_k.append(np.tile(c, 5) + off)
    boxes = np.concatenate(all_b).astype(np.float32)
    kps = np.concatenate(all_k).reshape(-1, 5, 2).astype(np.float32) if has_kps else None
    return boxes, np.concatenate(all_s).astype(np.float32), kps


class SCRFDDetector:
    """insightface SCRFD (`det_10g.onnx` in buffalo_l) on onnxruntime, letterboxed into a 640x640 input."""

    name = "scrfd"
    confident_score = 0.6  # SCRFD scores run lower than MTCNN's: clear faces 0.7-0.9

    def __init__(self, model_path: str | Path, providers: list[str], input_size: int = 640, nms_thr: float = 0.4,
                 score_thr: float = 0.3):
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(model_path), providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.size, self.nms_thr, self.score_thr = input_size, nms_thr, score_thr

    def detect(self, rgb: np.ndarray, min_size: float = 0.0) -> Detections:
        h, w = rgb.shape[:2]
        scale = self.size / max(h, w)
        nh, nw = int(h * scale), int(w * scale)
        canvas = np.zeros((self.size, self.size, 3), np.float32)
        canvas[:nh, :nw] = cv2.resize(rgb, (nw, nh)).astype(np.float32)
        blob = ((canvas - 127.5) / 128.0).transpose(2, 0, 1)[None]
        outputs = self.session.run(None, {self.input_name: blob})
        boxes, scores, kps = scrfd_decode(outputs, (self.size, self.size), self.score_thr)
        if len(boxes) == 0:
            return Detections.empty()
        keep = nms(boxes, scores, self.nms_thr)
        return Detections(
            boxes[keep] / scale, scores[keep], None if kps is None else kps[keep] / scale
        )
