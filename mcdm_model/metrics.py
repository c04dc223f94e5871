"""Video metrics for talking-face generation: pixel (SSIM, PSNR), face (landmarks, identity), sync, FID/FVD.

Pixel metrics live here (numpy/torch, exact on identical inputs: SSIM = 1.0, PSNR capped at `PSNR_CAP`).
Face metrics use dlib's 68-point predictor and 128-D ResNet embedding (metrics_face.py), sync uses the pipeline's
own scorer (metrics_sync.py), FID/FVD run only when Inception / I3D weights sit in `<models_dir>/metrics/`
(metrics_fid.py), else "not_run"; drift over time is in metrics_drift.py and evaluate.py ties them together.
"""

from __future__ import annotations

from typing import Any

import numpy as np

PSNR_CAP = 100.0  # dB reported for identical inputs (MSE = 0), so JSON never holds inf


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if np.ndim(a) not in (3, 4) or np.shape(a)[-1] != 3:
        raise ValueError(f"expected RGB frames (N, H, W, 3), got {np.shape(a)}")
    if np.shape(a) != np.shape(b):
        raise ValueError(f"videos differ in shape: {np.shape(a)} vs {np.shape(b)}")


def psnr_frames(a: np.ndarray, b: np.ndarray, max_val: float = 255.0) -> np.ndarray:
    """Per-frame PSNR in dB, capped at PSNR_CAP (identical frames give exactly PSNR_CAP)."""
    _check_pair(a, b)
    x, y = np.asarray(a), np.asarray(b)
    x, y = (x[None], y[None]) if x.ndim == 3 else (x, y)
    d = x.astype(np.float32) - y.astype(np.float32)
    mse = np.einsum("nhwc,nhwc->n", d, d, dtype=np.float64) / d[0].size
    with np.errstate(divide="ignore"):
        val = 10.0 * np.log10(max_val**2 / mse)
    return np.minimum(val, PSNR_CAP)


def _ssim_frame(x: np.ndarray, y: np.ndarray, c1: float, c2: float) -> float:
    import cv2

    x, y = x.astype(np.float32), y.astype(np.float32)

    def blur(t: np.ndarray) -> np.ndarray:  # 11x11 Gaussian, sigma 1.5, valid region only
        return cv2.GaussianBlur(t, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)[5:-5, 5:-5]

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    num = (2 * mx * my + c1) * (2 * sxy + c2)
    den = (mx * mx + my * my + c1) * (sxx + syy + c2)
    return float((num / den).mean())


def ssim_frames(a: np.ndarray, b: np.ndarray, max_val: float = 255.0) -> np.ndarray:
    """Per-frame SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5), averaged over RGB channels."""
    _check_pair(a, b)
    c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
    a4, b4 = (np.asarray(a)[None], np.asarray(b)[None]) if np.ndim(a) == 3 else (np.asarray(a), np.asarray(b))
    return np.array([_ssim_frame(x, y, c1, c2) for x, y in zip(a4, b4, strict=True)])


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    return float(ssim_frames(a, b).mean())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(psnr_frames(a, b).mean())


def landmark_distance(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per-frame mean 68-point distance normalised by the reference inter-ocular distance (outer eye corners).

    pred, ref: (N, 68, 2); frames where either side has no face (NaN) give NaN.
    """
    pred, ref = np.asarray(pred, np.float64), np.asarray(ref, np.float64)
    iod = np.linalg.norm(ref[:, 36] - ref[:, 45], axis=-1)
    err = np.linalg.norm(pred - ref, axis=-1).mean(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return err / iod


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of (N, D) against (D,) or (N, D); NaN rows stay NaN."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    na = np.linalg.norm(a, axis=-1)
    nb = np.linalg.norm(b, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(-1) / (na * nb)


def nanmean(x: Any) -> float | None:
    """Mean ignoring NaN; None (JSON null) when nothing was measured."""
    arr = np.asarray(x, np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else None
