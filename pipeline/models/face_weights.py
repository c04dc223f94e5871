"""Where face weights live: the models dir in upstream layouts, packaged fallbacks, and onnxruntime providers.

Layout under `models_dir` (cfg.models_dir, env TFW_MODELS_DIR):
  insightface/<pack>/   det_10g.onnx (SCRFD), w600k_r50.onnx (ArcFace), 1k3d68.onnx (68 points), as in buffalo_l.zip
  yunet/                face_detection_yunet_<date>.onnx (opencv_zoo)
  dlib/                 shape_predictor_68_face_landmarks.dat, dlib_face_recognition_resnet_model_v1.dat (optional;
                        else the copies inside the face-recognition-models package are used)
Nothing is downloaded: a missing file raises MissingWeightsError naming the file and the folder it belongs in.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

INSIGHTFACE_URL = "https://github.com/deepinsight/insightface/releases (e.g. buffalo_l.zip, unzipped)"
YUNET_URL = "https://github.com/opencv/opencv_zoo/tree/main/models/face_detection_yunet"
# Upstream file names per role, first match wins (buffalo_l, antelopev2 and the standalone SCRFD release).
PACK_ROLES: dict[str, tuple[str, ...]] = {
    "detector": ("det_10g.onnx", "det_*.onnx", "scrfd*.onnx"),
    "recognition": ("w600k_r50.onnx", "w600k*.onnx", "glintr100.onnx"),
    "landmarks68": ("1k3d68.onnx",),
}
REQUIRED_ROLES = ("detector", "recognition")


class MissingWeightsError(FileNotFoundError):
    """Raised when a stage is built (never per item): a configuration problem, not a bad sample."""


def _first(folder: Path, patterns: tuple[str, ...]) -> Path | None:
    for pattern in patterns:
        hits = sorted(folder.glob(pattern))
        if hits:
            return hits[0]
    return None


def insightface_pack_dir(models_dir: str | Path, pack: str) -> Path:
    return Path(models_dir).expanduser() / "insightface" / pack


def find_insightface_model(models_dir: str | Path, role: str, pack: str = "buffalo_l") -> Path | None:
    """One role's upstream file of an insightface pack (e.g. "recognition": w600k_r50.onnx), None if absent."""
    folder = insightface_pack_dir(models_dir, pack)
    return _first(folder, PACK_ROLES[role]) if folder.is_dir() else None


def find_insightface_pack(models_dir: str | Path, pack: str = "buffalo_l") -> dict[str, Path]:
    """Role -> file of an insightface model pack; raises naming the first missing file and its folder."""
    folder = insightface_pack_dir(models_dir, pack)
    found = {role: _first(folder, pats) for role, pats in PACK_ROLES.items()} if folder.is_dir() else {}
    for role in REQUIRED_ROLES:
        if found.get(role) is None:
            raise MissingWeightsError(
                f"insightface pack {pack!r}: missing {PACK_ROLES[role][0]} ({role}); put the upstream pack files "
                f"({', '.join(p[0] for p in PACK_ROLES.values())}) in {folder}/ (from {INSIGHTFACE_URL})"
            )
    return {role: path for role, path in found.items() if path is not None}


def has_insightface_pack(models_dir: str | Path, pack: str = "buffalo_l") -> bool:
    try:
        find_insightface_pack(models_dir, pack)
    except MissingWeightsError:
        return False
    return True


def find_yunet(models_dir: str | Path) -> Path:
    folder = Path(models_dir).expanduser() / "yunet"
    hit = _first(folder, ("face_detection_yunet_*.onnx",)) if folder.is_dir() else None
    if hit is None:
        raise MissingWeightsError(
            f"YuNet: missing face_detection_yunet_2023mar.onnx (any face_detection_yunet_*.onnx); put it in "
            f"{folder}/ (from {YUNET_URL})"
        )
    return hit


def has_yunet(models_dir: str | Path) -> bool:
    try:
        find_yunet(models_dir)
    except MissingWeightsError:
        return False
    return True


def dlib_model_path(filename: str, models_dir: str | Path | None = None) -> Path:
    """`<models_dir>/dlib/<filename>` if present, else the copy inside face_recognition_models (found by path:
    importing that package needs pkg_resources)."""
    if models_dir:
        local = Path(models_dir).expanduser() / "dlib" / filename
        if local.is_file():
            return local
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is not None and spec.origin:
        shipped = Path(spec.origin).parent / "models" / filename
        if shipped.is_file():
            return shipped
    where = Path(models_dir).expanduser() / "dlib" if models_dir else Path("<models_dir>/dlib")
    raise MissingWeightsError(
        f"dlib model {filename} not found: `pip install face-recognition-models==0.3.0` (it ships the file) "
        f"or put {filename} in {where}/"
    )


def onnx_providers(use_gpu: bool = True) -> list[str]:
    """CUDA first when onnxruntime reports it (onnxruntime-gpu installed, a device visible), CPU always last."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    providers = ["CUDAExecutionProvider"] if use_gpu and "CUDAExecutionProvider" in available else []
    return providers + ["CPUExecutionProvider"]
