"""Split a video into single-shot scenes (PySceneDetect cuts + dissolves) of 2 s up to `max_take_s` each.

The faces stage then cuts each scene's speaker segments into windows of at most `max_clip_s` (pipeline/takes.py),
so a take (one speaker, one shot) can run for minutes while every sample stays a short clip.

Frames next to a cut are often blended or mid-transition, so `trim_s` is cut off at each cut (not at the start
or end of the video). Clip bounds are snapped to the 25 fps frame grid of the timeline so that [start_s, end_s)
holds a whole number of frames and later stages agree on frame counts. Scenes that end up shorter than
`min_clip_s` still become rows (dropped, "too_short") so the funnel counts the footage they lose.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
from scenedetect import VideoStream

from .. import faults, media
from ..norm_video import then
from ..record import FPS, Row, drop, make_key
from .base import Stage

log = logging.getLogger(__name__)


def detect_scenes(
    path: str, threshold: float, min_scene_len: int, same_picture_ncc: float = 0.8, dissolve_s: float = 1.0,
    timeline_vf: str | None = None, size: tuple[int, int] | None = None, max_s: float | None = None,
) -> list[tuple[float, float]]:
    """[(start_s, end_s), ...] of every scene: one scene when there is no cut, none when no frame decodes.

    Hard cuts come from AdaptiveDetector, kept only where the picture changes (not a compression pop); dissolves
    of about `dissolve_s` (0 = off) are added by a second test on the same decode (pipeline/transitions.py).
    ffmpeg decodes `path` through `timeline_vf` (the row's norm_vf; None: a 25 fps file as it is, `size` its
    frame size) and scales to the detectors' ~256 px before the pipe, so the full-size frames never reach Python."""
    from scenedetect import AdaptiveDetector, SceneManager

    from ..transitions import TransitionMeter, confirmed_cuts, dissolve_cuts

    if size is None:
        info = media.probe(path)
        size = (int(info["width"]), int(info["height"]))
    small = detection_size(*size)
    # point sampling, as OpenCV's INTER_LINEAR is at these ratios (what the thresholds were tuned on): an area
    # filter averages a CRF-45 keyframe "pop" away and AdaptiveDetector then sees a different signal
    vf = then(timeline_vf or f"fps={FPS}", f"scale={small[0]}:{small[1]}:flags=neighbor")
    frames = media.iter_frames(path, 0.0, max_s, vf=vf, size=small, pix_fmt="bgr24")
    video = PipeStream(path, frames, small)
    fps = float(FPS)
    manager = SceneManager()
    manager.auto_downscale = False  # already at the detectors' size
    manager.add_detector(AdaptiveDetector(adaptive_threshold=threshold, min_scene_len=min_scene_len))
    meter = TransitionMeter(round(dissolve_s * fps / 2), same_picture_ncc)
    manager.add_detector(meter)
    try:
        manager.detect_scenes(video=video)
    finally:
        frames.close()
    scenes = manager.get_scene_list(start_in_scene=True)
    if not scenes:
        return []
    first, end = scenes[0][0].frame_num, scenes[-1][1].frame_num
    cuts = confirmed_cuts([a.frame_num for a, _ in scenes[1:]], meter)
    cuts = sorted(cuts + dissolve_cuts(meter, cuts, end, min_scene_len))
    bounds = [first, *cuts, end]
    return [(a / fps, b / fps) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


def detection_size(width: int, height: int, target: int = 256) -> tuple[int, int]:
    """The size PySceneDetect's auto-downscale would give (longer side ~target px), even-sided for ffmpeg."""
    f = max(width, height) / target if max(width, height) > target else 1.0
    return max(2, 2 * round(width / f / 2)), max(2, 2 * round(height / f / 2))


class PipeStream(VideoStream):
    """A PySceneDetect VideoStream over frames ffmpeg has already put on the timeline and downscaled (BGR): shot
    detection decodes the source once, at the detectors' size, instead of OpenCV decoding full-size frames."""

    BACKEND_NAME = "ffmpeg_pipe"

    def __init__(self, path: str, frames: Iterator[np.ndarray], size: tuple[int, int]):
        self._path, self._frames, self._size, self._n = path, frames, size, 0

    path = property(lambda self: self._path)
    name = property(lambda self: Path(self._path).stem)
    is_seekable = property(lambda self: False)
    frame_rate = property(lambda self: Fraction(FPS))
    duration = property(lambda self: None)  # a pipe's length is known when it ends
    frame_size = property(lambda self: self._size)
    aspect_ratio = property(lambda self: 1.0)
    frame_number = property(lambda self: self._n)
    position_ms = property(lambda self: max(self._n - 1, 0) * 1000.0 / FPS)
    position = property(lambda self: self.base_timecode + max(self._n - 1, 0))

    def read(self, decode: bool = True) -> np.ndarray | bool:
        frame = next(self._frames, None)
        if frame is None:
            return False
        self._n += 1
        return frame if decode else True

    def reset(self) -> None:
        raise NotImplementedError("a pipe cannot be rewound")

    def seek(self, target) -> None:
        raise NotImplementedError("a pipe cannot seek")


def plan_clips(
    scenes: list[tuple[float, float]],
    fps: float,
    trim_s: float,
    min_clip_s: float,
    max_clip_s: float,
) -> list[tuple[float, float, bool]]:
    """(start_s, end_s, long_enough) per scene piece: trimmed at cuts, snapped to frames, scenes longer than
    `max_clip_s` (the stage passes max_take_s) split evenly."""
    out: list[tuple[float, float, bool]] = []
    for i, (a, b) in enumerate(scenes):  # the first start and the last end are the video's, not cuts
        start = a + (trim_s if i > 0 else 0.0)
        end = b - (trim_s if i < len(scenes) - 1 else 0.0)
        f0, f1 = math.ceil(start * fps - 1e-6), math.floor(end * fps + 1e-6)
        if f1 - f0 < min_clip_s * fps - 1e-6:
            out.append((round(f0 / fps, 4), round(max(f1, f0) / fps, 4), False))
            continue
        n = max(1, math.ceil((f1 - f0) / (max_clip_s * fps) - 1e-9))
        edges = [f0 + round(k * (f1 - f0) / n) for k in range(n + 1)]
        out.extend((round(p / fps, 4), round(q / fps, 4), True) for p, q in zip(edges, edges[1:], strict=False))
    return out


def fan_out(seconds: list[float], part_s: float) -> list[int]:
    """Part number per clip: consecutive clips together until the next would take the part past part_s seconds
    (a part holds at least one clip; pipeline/ledger_parts.py)."""
    out, part, total = [], 0, 0.0
    for s in seconds:
        if total > 0 and total + s > part_s:
            part, total = part + 1, 0.0
        out.append(part)
        total += s
    return out


class ShotSplit(Stage):
    name = "shots"
    uses_model = False

    def process(self, row: Row) -> Row | list[Row]:
        c = self.cfg.shots
        fps = float(row.get("fps") or FPS)
        size = (int(row["width"]), int(row["height"])) if row.get("width") and row.get("height") else None
        try:
            min_len = max(1, round(c.min_scene_s * fps))
            scenes = detect_scenes(row["norm_path"], c.threshold, min_len, c.same_picture_ncc, c.dissolve_s,
                                   row.get("norm_vf"), size, float(row["duration_s"]) + 1.0 if row.get("duration_s") else None)
        except (OSError, media.MediaError) as exc:  # nothing decodable (unless the storage failed: then a retry)
            faults.raise_if_transient(exc)
            return drop(row, "no_shots", self.name, f"cannot open video: {exc}")
        if not scenes:
            return drop(row, "no_shots", self.name, "no frames decoded")
        clips = plan_clips(scenes, fps, c.trim_s, c.min_clip_s, c.max_take_s)
        if not clips:
            return drop(row, "no_shots", self.name, "no scenes after trimming")
        lang, out = row["lang_expected"], []
        parts = fan_out([end - start for start, end, _ in clips], c.part_s)
        for i, (start, end, ok) in enumerate(clips):
            clip = dict(row)
            clip |= {
                "key": make_key(lang, row["source_id"], shot=i),
                "shot_index": i,
                "start_s": start,
                "end_s": end,
                "n_clips": len(clips),
                "part_index": parts[i],
                "part_count": parts[-1] + 1,
            }
            if not ok:
                drop(clip, "too_short", self.name, f"{end - start:.2f} s after trimming (< {c.min_clip_s} s)")
            out.append(clip)
        log.debug("%s: %d scenes -> %d clips", row["key"], len(scenes), len(clips))
        return out
