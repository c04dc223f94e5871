"""A models dir with YuNet in it: the upstream ONNX from ../shared/media/weights/ linked where users put it."""

from __future__ import annotations

from pathlib import Path


def link_yunet(models_dir: str | Path, weights_dir: str | Path) -> Path | None:
    """Link weights_dir's face_detection_yunet_*.onnx into <models_dir>/yunet/ (idempotent); None when absent."""
    src = next(iter(sorted(Path(weights_dir).glob("face_detection_yunet_*.onnx"))), None)
    if src is None:
        return None
    link = Path(models_dir) / "yunet" / src.name
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(src)
    return link
