"""Motion tokens from the pipeline's per-frame track arrays (.npz): head pose, lip and expression landmarks.

Layout of one frame's motion vector (MOTION_DIM = 105 floats), documented here once:
  [0:3]     head   = (yaw, pitch, roll) degrees / 90
  [3:43]    lip    = iBUG-68 mouth points 48..67, (x, y) interleaved, relative to the face centre / face scale
  [43:105]  expr   = iBUG-68 points 17..47 (brows, nose, eyes), same normalisation
Face centre = mean of all 68 landmarks; face scale = RMS distance of the 68 landmarks from that centre. Relative
coordinates make the tokens independent of crop size and of where the face sits in the crop; the jaw line (0..16)
is left out (it follows from head pose and mouth).
"""

from __future__ import annotations

import numpy as np

HEAD = slice(0, 3)
LIP = slice(3, 43)
EXPR = slice(43, 105)
MOTION_DIM = 105
GROUPS = (("head", HEAD), ("lip", LIP), ("expr", EXPR))
LIP_POINTS = list(range(48, 68))
EXPR_POINTS = list(range(17, 48))


def motion_tokens(landmarks: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """(N, 68, 2) landmarks (any pixel frame) + (N, 3) pose degrees -> (N, 105) float32 motion vectors."""
    lm = np.asarray(landmarks, dtype=np.float32)
    pose = np.asarray(pose, dtype=np.float32)
    if lm.ndim != 3 or lm.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must be (N, 68, 2), got {lm.shape}")
    if pose.shape != (lm.shape[0], 3):
        raise ValueError(f"pose must be ({lm.shape[0]}, 3), got {pose.shape}")
    centre = lm.mean(axis=1, keepdims=True)
    rel = lm - centre
    scale = np.sqrt((rel**2).sum(-1).mean(-1))[:, None, None]
    rel = rel / np.maximum(scale, 1e-6)
    out = np.empty((lm.shape[0], MOTION_DIM), dtype=np.float32)
    out[:, HEAD] = pose / 90.0
    out[:, LIP] = rel[:, LIP_POINTS].reshape(-1, 40)
    out[:, EXPR] = rel[:, EXPR_POINTS].reshape(-1, 62)
    return np.nan_to_num(out)


def split_groups(m):  # noqa: ANN001, ANN201 - works on numpy arrays and tensors alike
    """(..., 105) -> (head (..., 3), lip (..., 40), expr (..., 62))."""
    return m[..., HEAD], m[..., LIP], m[..., EXPR]
