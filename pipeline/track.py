"""Face tracks over sampled frames: IoU linking with an identity check, interpolation, smoothing, head pose.

Detection runs on every k-th frame only; a track is a list of (frame, detection) links. Lip-sync downstream
needs a box on every frame, so boxes are linearly interpolated between detections and median-smoothed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes a (A,4) and b (B,4) -> (A,B)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda z: (z[:, 2] - z[:, 0]) * (z[:, 3] - z[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def box_area(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0))


@dataclass
class Track:
    """One face over time: parallel lists of sampled frame index, detection index in that frame, box."""

    frames: list[int] = field(default_factory=list)
    det_idx: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    embeddings: list[np.ndarray] = field(default_factory=list)
    last_checked: int = -(10**9)
    # identity of each link made since the last check, computed only if a check fails (IouTracker._split)
    unchecked: list[Callable[[], np.ndarray | None]] = field(default_factory=list, repr=False)

    def add(self, frame: int, idx: int, box: np.ndarray, score: float = 1.0) -> None:
        self.frames.append(frame)
        self.det_idx.append(idx)
        self.boxes.append(np.asarray(box, np.float32))
        self.scores.append(float(score))

    def cut(self, k: int) -> list[tuple[int, int, np.ndarray, float]]:
        """Remove and return the links from position k on (frame, detection, box, score)."""
        out = list(zip(self.frames[k:], self.det_idx[k:], self.boxes[k:], self.scores[k:], strict=True))
        del self.frames[k:], self.det_idx[k:], self.boxes[k:], self.scores[k:]
        return out

    def absorb(self, links: list[tuple[int, int, np.ndarray, float]]) -> None:
        """Add links from another track, keeping the lists in frame order."""
        merged = sorted([*zip(self.frames, self.det_idx, self.boxes, self.scores, strict=True), *links], key=lambda x: x[0])
        self.frames, self.det_idx = [m[0] for m in merged], [m[1] for m in merged]
        self.boxes, self.scores = [m[2] for m in merged], [m[3] for m in merged]

    @property
    def identity(self) -> np.ndarray | None:
        if not self.embeddings:
            return None
        v = np.mean(self.embeddings, axis=0)
        return v / max(float(np.linalg.norm(v)), 1e-8)

    def median_area(self) -> float:
        return float(np.median([box_area(b) for b in self.boxes]))


class IouTracker:
    """Greedy IoU linking (>= iou_link) over sampled frames; a track ends after max_missed frames unseen.

    Identity check: `embed(i)` gives detection i's identity (computed lazily: dlib takes 55-110 ms a face on one
    CPU core, by machine). A new track stores one; an IoU link is re-verified every `verify_every` frames (a
    different person in the same place, e.g. a missed cut or a crossfade, ends the track), and a detection that
    overlaps nothing may re-join a track lost for a few frames when the identity matches (fast head turns, a hand
    over the face). When a check fails, the links made since the last passing one are bisected by identity
    (embedded only then: log2 of them), so the other person's frames leave the track from the first sampled frame
    they appear, as a check on every sampled frame would find, for a fraction of the embeddings. Missed: someone
    who takes the place and leaves again between two checks.
    """

    def __init__(self, iou_link: float, max_missed: int, verify_every: int, same: Callable[[np.ndarray, np.ndarray], bool],
                 max_embed_new: int = 3):
        self.iou_link, self.max_missed, self.verify_every = iou_link, max_missed, verify_every
        self.same, self.max_embed_new = same, max_embed_new
        self.active: list[Track] = []
        self.done: list[Track] = []

    def update(self, frame: int, boxes: np.ndarray, embed: Callable[[int], np.ndarray | None],
               scores: np.ndarray | None = None) -> None:
        scores = np.ones(len(boxes), np.float32) if scores is None else scores
        for t in [t for t in self.active if frame - t.frames[-1] > self.max_missed]:
            self.active.remove(t)
            self.done.append(t)
        unmatched = set(range(len(boxes)))
        orphans: dict[int, list] = {}  # detection -> links cut from a track whose check it failed
        free = list(self.active)
        if len(boxes) and free:
            m = iou(np.stack([t.boxes[-1] for t in free]), boxes)
            for ti, di in sorted(np.ndindex(*m.shape), key=lambda p: -m[p]):
                if m[ti, di] < self.iou_link or di not in unmatched or free[ti] is None:
                    continue
                t = free[ti]
                if t.identity is None:
                    t.add(frame, di, boxes[di], scores[di])
                elif frame - t.last_checked >= self.verify_every:
                    e = embed(di)
                    if e is not None and not self.same(t.identity, e):
                        orphans[di] = self._split(t)
                        continue  # same place, different person: leave both to the steps below
                    if e is not None:
                        t.embeddings.append(e)
                    t.last_checked, t.unchecked = frame, []
                    t.add(frame, di, boxes[di], scores[di])
                else:
                    t.add(frame, di, boxes[di], scores[di])
                    t.unchecked.append(lambda di=di, embed=embed: embed(di))
                unmatched.discard(di)
                free[ti] = None
        lost = [t for t in free if t is not None and t.identity is not None]
        by_size = sorted(unmatched, key=lambda i: -box_area(boxes[i]))
        for rank, di in enumerate(by_size):
            e = embed(di) if rank < self.max_embed_new or di in orphans else None
            match = next((t for t in lost if e is not None and self.same(t.identity, e)), None)
            if match is not None:
                lost.remove(match)
                match.add(frame, di, boxes[di], scores[di])
                match.embeddings.append(e)
                match.last_checked, match.unchecked = frame, []
            else:
                match = Track(last_checked=frame if e is not None else -(10**9))
                if e is not None:
                    match.embeddings.append(e)
                match.add(frame, di, boxes[di], scores[di])
                self.active.append(match)
            if orphans.get(di):
                match.absorb(orphans[di])

    def _split(self, t: Track) -> list[tuple[int, int, np.ndarray, float]]:
        """Cut from t the unchecked links from the first one that is not t's person on (bisection: the person
        changes once between two checks), and return them."""
        lo, hi = 0, len(t.unchecked)  # the link after the last unchecked one (this frame's) is the other person
        while lo < hi:
            mid = (lo + hi) // 2
            e = t.unchecked[mid]()
            if e is None or self.same(t.identity, e):
                lo = mid + 1
            else:
                hi = mid
        n_unchecked, t.unchecked = len(t.unchecked), []
        return t.cut(len(t.frames) - n_unchecked + lo)

    def tracks(self) -> list[Track]:
        return self.done + self.active


def interpolate(frames: list[int], boxes: list[np.ndarray], start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes for every frame in [start, end): linear between detections, held at the ends; and a detected mask."""
    idx = np.arange(start, end)
    f = np.asarray(frames, np.float64)
    b = np.asarray(boxes, np.float64)
    out = np.stack([np.interp(idx, f, b[:, k]) for k in range(4)], axis=1).astype(np.float32)
    return out, np.isin(idx, np.asarray(frames))


def smooth(boxes: np.ndarray, window: int) -> np.ndarray:
    """Median filter over time per coordinate: removes single-frame detector jitter without lagging the head."""
    if window <= 1 or len(boxes) < 2:
        return boxes.astype(np.float32)
    from scipy.ndimage import median_filter  # imported here: pipeline.common users need no scipy

    return median_filter(boxes, size=(window, 1), mode="nearest").astype(np.float32)


def crop_windows(boxes: np.ndarray, padding: float, frame_wh: tuple[int, int], side_window: int = 25) -> np.ndarray:
    """Square crop windows (x1,y1,x2,y2): side = (1 + padding) * longest box side (smoothed over ~1 s so the
    crop does not breathe), capped at the shorter frame side and shifted to stay inside the frame."""
    from scipy.ndimage import median_filter

    w, h = frame_wh
    side = (1.0 + padding) * np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    side = median_filter(side, size=min(side_window, len(side)) or 1, mode="nearest")
    side = np.minimum(side, min(w, h))
    cx = np.clip((boxes[:, 0] + boxes[:, 2]) / 2, side / 2, w - side / 2)
    cy = np.clip((boxes[:, 1] + boxes[:, 3]) / 2, side / 2, h - side / 2)
    return np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], axis=1).astype(np.float32)


def crop_frame(rgb: np.ndarray, window: np.ndarray, size: int) -> np.ndarray:
    """The window resized to size x size in one affine warp (black outside the frame)."""
    s = size / float(window[2] - window[0])
    m = np.array([[s, 0, -window[0] * s], [0, s, -window[1] * s]], np.float64)
    return cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)


# A generic 3-D face (mm-like units) in camera axes: x right, y down, z away from the camera; nose tip at 0.
_MODEL_3D = np.array(
    [[0, 0, 0], [0, 330, 65], [-225, -170, 135], [225, -170, 135], [-150, 150, 125], [150, 150, 125]], np.float64
)
_MODEL_IDX = [30, 8, 36, 45, 48, 54]  # nose tip, chin, outer eye corners, mouth corners (iBUG-68)


def head_pose(lm68: np.ndarray, frame_wh: tuple[int, int]) -> np.ndarray:
    """(yaw, pitch, roll) degrees from 68 landmarks by cv2.solvePnP; 0 = facing the camera.

    Measured on real frames: yaw < 0 when the nose turns toward image-right, roll > 0 for a clockwise tilt in
    the image; yaw and roll flip sign in a mirrored frame, pitch does not. Only |yaw|, |pitch| gate clips.
    """
    w, h = frame_wh
    cam = np.array([[w, 0, w / 2], [0, w, h / 2], [0, 0, 1]], np.float64)
    pts = lm68[_MODEL_IDX].astype(np.float64)
    ok, rvec, tvec = cv2.solvePnP(_MODEL_3D, pts, cam, None, flags=cv2.SOLVEPNP_ITERATIVE)
    if ok and tvec[2, 0] <= 0:  # the unguided solve can land on the mirror solution, a face behind the camera
        # (one frame of a frontal talker read pitch 51, roll -175): solve again from a frontal pose in front of it
        guess_t = np.array([[0.0], [0.0], [abs(float(tvec[2, 0])) or 10.0 * w]])
        ok, rvec, tvec = cv2.solvePnP(_MODEL_3D, pts, cam, None, np.zeros((3, 1)), guess_t, True,
                                      flags=cv2.SOLVEPNP_ITERATIVE)  # fmt: skip
    if not ok or tvec[2, 0] <= 0:
        return np.full(3, np.nan, np.float32)
    rot, _ = cv2.Rodrigues(rvec)
    pitch = np.degrees(np.arctan2(-rot[1, 2], rot[2, 2]))
    yaw = np.degrees(np.arcsin(np.clip(rot[0, 2], -1, 1)))
    roll = np.degrees(np.arctan2(rot[1, 0], rot[0, 0]))
    return np.array([yaw, pitch, roll], np.float32)


def mouth_open(lm68: np.ndarray) -> float:
    """Inner-lip gap (points 62-66) over face height (nose bridge 27 to chin 8)."""
    gap = float(np.linalg.norm(lm68[66] - lm68[62]))
    return gap / max(float(np.linalg.norm(lm68[8] - lm68[27])), 1e-6)
