"""Image quality of the face at its native resolution (before the crop is resized to 512²).

Why not the variance of the Laplacian on the 512² crop: a 250-300 px face upscaled to 512 has lost exactly the
high frequencies that measure sums, so sharp studio footage read as blurry, and the value moves with the face's
size. Two measures on the source-resolution face region (the landmarks' box in the normalised frame, grey):

- detail_px: the face's *effective resolution* in pixels: the smallest size the region can be shrunk to (area
  resampling) and brought back (bicubic) while losing at most `DETAIL_TAU` of its detail energy (the energy left
  after removing structure coarser than 1/16 of the face). A sharp 280 px face keeps ~100+ px; the same face under
  a Gaussian blur of sigma 3 ~45 px; an upscaled or defocused source ~50 px, whatever its pixel count.
- blockiness: mean |step| across the 8-px block grid of the frame over the mean |step| elsewhere, both directions.
  Heavy compression (H.264/JPEG at high quantisers) leaves flat 8x8 blocks with steps at their edges: ~1.0-1.2 on
  clean footage, 1.3-2.1 at x264 CRF 45. The grid is the frame's, so the region's offset in the frame matters.
"""

from __future__ import annotations

import cv2
import numpy as np

DETAIL_TAU = 0.02
_FACTORS = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1)
BLOCK = 8


def face_region(lm68: np.ndarray, frame_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) integer box of the 68 landmarks, inside the frame."""
    h, w = frame_hw
    x0, y0 = np.floor(np.nanmin(lm68, axis=0)).astype(int)
    x1, y1 = np.ceil(np.nanmax(lm68, axis=0)).astype(int)
    return max(x0, 0), max(y0, 0), min(max(x1, x0 + 8), w), min(max(y1, y0 + 8), h)


def detail_px(gray: np.ndarray) -> float:
    """Effective resolution (px, longest side) of a grey face region; see the module docstring."""
    g = np.asarray(gray, np.float32)
    h, w = g.shape
    side = max(h, w)
    if min(h, w) < 16:
        return float(side)
    detail = g - cv2.GaussianBlur(g, (0, 0), side / 16)
    energy = float((detail**2).mean())
    if energy < 1e-6:
        return 0.0
    keep = 1.0
    for f in _FACTORS:
        small = cv2.resize(g, (max(2, round(w * f)), max(2, round(h * f))), interpolation=cv2.INTER_AREA)
        back = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        if float(((g - back) ** 2).mean()) / energy > DETAIL_TAU:
            break
        keep = f
    return float(keep * side)


def blockiness(gray: np.ndarray, x0: int, y0: int, block: int = BLOCK) -> float:
    """Steps across the frame's block grid relative to steps elsewhere (1.0 = no block structure)."""
    g = np.asarray(gray, np.float32)
    if min(g.shape) < 2 * block:
        return 1.0
    dx, dy = np.abs(np.diff(g, axis=1)), np.abs(np.diff(g, axis=0))
    on_x = (x0 + np.arange(dx.shape[1]) + 1) % block == 0  # dx[:, j] steps from frame column x0+j to x0+j+1
    on_y = (y0 + np.arange(dy.shape[0]) + 1) % block == 0
    off = dx[:, ~on_x].mean() + dy[~on_y].mean()
    return float((dx[:, on_x].mean() + dy[on_y].mean()) / max(off, 1e-6))


def measure(rgb: np.ndarray, lm68: np.ndarray) -> tuple[float, float, float]:
    """(detail_px, blockiness, region side px) of the face in one full-resolution RGB frame."""
    x0, y0, x1, y1 = face_region(lm68, rgb.shape[:2])
    gray = cv2.cvtColor(np.ascontiguousarray(rgb[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
    return detail_px(gray), blockiness(gray, x0, y0), float(max(x1 - x0, y1 - y0))
