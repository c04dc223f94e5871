"""What PySceneDetect's AdaptiveDetector gets wrong on talking-face footage, measured on thumbnails in one pass.

- False cuts on heavy compression: at each keyframe of a CRF-45 encode the picture "pops" (hue and level jump on
  every block at once) and AdaptiveDetector's HSV change crosses its floor, although the picture is the same. A
  cut changes *what* is shown, so a cut is confirmed only when the grey 16x16 thumbnails either side of it are
  not the same picture: their Pearson correlation is below `same_picture_ncc`. Pops correlate >= 0.95, cuts
  between two speakers <= -0.1 (benchmarks/RESULTS.md, "Curation accuracy").
- Missed dissolves (crossfades): each frame of a 1-s crossfade changes only ~1/25 of the way, far below any
  frame-to-frame threshold. A frame m is the middle of a dissolve when, with the frames H before (a) and after
  (b) it on 32x32 RGB thumbnails: a and b are different pictures (correlation below `same_picture_ncc`) and
  differ by at least MIN_CHANGE per pixel (AdaptiveDetector's own floor, 15 on 0-255); m is their blend,
  m ~ a + alpha (b - a) with alpha in 0.5 +- 0.2 and a residual under a quarter of the change; and no single
  frame step carries more than a third of it (that would be a hard cut, AdaptiveDetector's job). Head motion,
  pans and lighting changes fail the blend or the same-picture test. The window 2H = 1 s catches fades of up
  to about a second whole; a longer fade passes when its middle second changes enough.
"""

from __future__ import annotations

from collections import deque

import cv2
import numpy as np
from scenedetect import SceneDetector

THUMB, GREY = 32, 16
MIN_CHANGE = 15.0  # mean |RGB change| per pixel (0-255) a dissolve must make, as AdaptiveDetector's min_content_val
BLEND_RESIDUAL = 0.25  # the middle frame's distance from the blend, over the change
ALPHA_BAND = 0.2  # |alpha - 0.5| at the middle of a dissolve
MAX_STEP_SHARE = 1 / 3  # largest one-frame step over the whole change (bigger: a hard cut)


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two images (flattened); 1.0 when either is flat (nothing to compare)."""
    x, y = a.ravel() - a.mean(), b.ravel() - b.mean()
    den = float(np.linalg.norm(x) * np.linalg.norm(y))
    return float(x @ y) / den if den > 1e-6 else 1.0


class TransitionMeter(SceneDetector):
    """Detects nothing itself: records, per frame, the step correlation and the dissolve test (see module doc)."""

    def __init__(self, half_window: int, same_picture_ncc: float):
        super().__init__()
        self.h, self.same = int(half_window), float(same_picture_ncc)
        self._buf: deque[tuple[int, np.ndarray, np.ndarray, float]] = deque(maxlen=2 * self.h + 1)
        self.step_ncc: dict[int, float] = {}  # frame -> correlation of its grey thumbnail with the previous one
        self.dissolve: dict[int, float] = {}  # middle frame of a dissolve -> |alpha - 0.5| (smaller = more central)

    def process_frame(self, timecode, frame_img: np.ndarray) -> list:
        f = int(timecode.frame_num)
        rgb = cv2.resize(frame_img, (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float32)
        grey = cv2.resize(rgb.mean(axis=2), (GREY, GREY), interpolation=cv2.INTER_AREA)
        step = float(np.abs(rgb - self._buf[-1][1]).mean()) if self._buf else 0.0
        if self._buf:
            self.step_ncc[f] = ncc(self._buf[-1][2], grey)
        self._buf.append((f, rgb, grey, step))
        if self.h > 0 and len(self._buf) == self._buf.maxlen:
            self._test_middle()
        return []

    def _test_middle(self) -> None:
        (_, a, ga, _), (m, mid, _, _), (_, b, gb, _) = self._buf[0], self._buf[self.h], self._buf[-1]
        d = b - a
        change = float(np.abs(d).mean())
        if change < MIN_CHANGE or ncc(ga, gb) >= self.same:
            return
        if max(s for *_, s in list(self._buf)[1:]) > MAX_STEP_SHARE * change:
            return
        alpha = float(np.clip(np.vdot(mid - a, d) / max(float(np.vdot(d, d)), 1e-6), 0.0, 1.0))
        resid = float(np.abs(mid - a - alpha * d).mean())
        if abs(alpha - 0.5) <= ALPHA_BAND and resid <= BLEND_RESIDUAL * change:
            self.dissolve[m] = abs(alpha - 0.5)


def confirmed_cuts(cuts: list[int], meter: TransitionMeter) -> list[int]:
    """The detector's cuts whose two sides are not the same picture (compression pops removed)."""
    return [c for c in cuts if meter.step_ncc.get(c, -1.0) < meter.same]


def dissolve_cuts(meter: TransitionMeter, cuts: list[int], n_frames: int, min_len: int) -> list[int]:
    """One cut per run of dissolve frames (its most central frame), min_len away from other cuts and the ends."""
    out: list[int] = []
    frames = sorted(meter.dissolve)
    runs: list[list[int]] = []
    for f in frames:
        if runs and f - runs[-1][-1] <= 2:
            runs[-1].append(f)
        else:
            runs.append([f])
    for run in runs:
        c = min(run, key=lambda f: (meter.dissolve[f], f))
        if min_len <= c <= n_frames - min_len and all(abs(c - x) >= min_len for x in (*cuts, *out)):
            out.append(c)
    return out
