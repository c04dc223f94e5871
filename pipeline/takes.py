"""Takes: a continuous stretch of one tracked speaker inside one shot, cut into consecutive windows (clips).

The shots stage hands the faces stage scenes of up to `shots.max_take_s`; the faces stage finds the speaker's
segments in them (one per tracked face, pipeline/stages/faces.py) and `take_windows` cuts each segment into
windows of at most `shots.max_clip_s`, split evenly on the frame grid, so window k ends on the frame where window
k+1 starts: no gap, no overlap. Every window is one row (one sample in the shards) and carries:

  take_id       the take: the segment's key (the shot key, or shot key + -tNN when a shot has several speakers)
  take_index    0, 1, ... within the take; the window key is take_id + -wNNN when the take has several windows
  take_windows  number of windows in the take
  prev_key      key of the window before in the same take ("" for the first)
  take_s        the take's total length in seconds
  take_coverage share of the detector's samples in the take where the speaker's track was found

Later stages may drop a window (out of sync for a few seconds, say); its neighbours keep their fields, so a
consumer follows prev_key only to a window that is present (mcdm_model.data does exactly that).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .record import Row

TAKE_KEYS = ("take_id", "take_index", "take_windows", "prev_key", "take_s")


def plan_windows(a: int, b: int, fps: float, max_clip_s: float) -> list[tuple[int, int]]:
    """Frame ranges [a, b) cut into the fewest even windows of at most max_clip_s (consecutive, gap-free)."""
    n = max(1, math.ceil((b - a) / (max_clip_s * fps) - 1e-9))
    edges = [a + round(k * (b - a) / n) for k in range(n + 1)]
    return list(zip(edges, edges[1:], strict=False))


def window_key(take_id: str, index: int, n_windows: int) -> str:
    return take_id if n_windows == 1 else f"{take_id}-w{index:03d}"


def take_windows(
    row: Row,
    segments: list[tuple[Any, int, int]],
    n_frames: int,
    fps: float,
    max_clip_s: float,
    segment_key: Callable[[int], str],
    samples: list[int] | None = None,
) -> list[tuple[Row, tuple[Any, int, int]]]:
    """(row, (track, first frame, end frame)) per window of every segment of one shot row.

    `segments` are (track, a, b) in frames of the shot row; `segment_key(j)` names segment j when the shot has
    several segments or one that does not span it (else the shot row's key is kept, as before takes existed).
    With the detector's sampled frames, `take_coverage` is the share of them inside the take where the track was
    found: the faces stage's presence rule, kept on the row so the presence gate can be re-applied later.
    """
    start = float(row["start_s"])
    out: list[tuple[Row, tuple[Any, int, int]]] = []
    for j, (track, a, b) in enumerate(segments):
        take_id = row["key"] if len(segments) == 1 and (a, b) == (0, n_frames) else segment_key(j)
        wins = plan_windows(a, b, fps, max_clip_s)
        cover = {}
        if samples is not None:
            span = sum(a <= x < b for x in samples)
            cover = {"take_coverage": sum(a <= f < b for f in track.frames) / max(span, 1)}
        prev = ""
        for k, (wa, wb) in enumerate(wins):
            r = dict(row)
            key = window_key(take_id, k, len(wins))
            r |= {"key": key, "start_s": start + wa / fps, "end_s": start + wb / fps, "take_id": take_id,
                  "take_index": k, "take_windows": len(wins), "prev_key": prev, "take_s": (b - a) / fps, **cover}  # fmt: skip
            if (wa, wb) == (0, n_frames):  # the whole shot row: its own bounds, untouched
                r["start_s"], r["end_s"] = row["start_s"], row["end_s"]
            out.append((r, (track, wa, wb)))
            prev = key
    return out
