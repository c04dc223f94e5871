"""Video I/O of the face stage: exact frame counts, sampled + downsized decoding, and a streaming crop encoder.

All ffmpeg calls take list arguments (never a shell); paths come from rows, never from titles.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .media import MediaError, iter_frames, probe, write_failed
from .norm_video import seek, then


def clip_frames(
    path: str | Path, start_s: float, end_s: float, n: int, timeline_vf: str | None = None,
    size: tuple[int, int] | None = None,
) -> Iterator[np.ndarray]:
    """Exactly n frames from start_s (the last decoded frame repeats if the container ends a frame early).

    `timeline_vf` is the row's norm_vf (the source decoded onto the timeline, `size` the frame size it makes)."""
    last = None
    i = 0
    t0, vf = seek(timeline_vf, start_s)
    for i, frame in enumerate(iter_frames(path, t0, t0 + end_s - start_s, vf=vf, size=size)):  # noqa: B007
        if i >= n:
            return
        last = frame
        yield frame
    if last is None:
        raise MediaError(f"{path}: no frames in [{start_s:.2f}, {end_s:.2f})")
    for _ in range(n - i - 1):
        yield last


def sampled_frames(
    path: str | Path, start_s: float, n: int, step: int, max_side: int, fps: float = 25.0,
    timeline_vf: str | None = None, size: tuple[int, int] | None = None,
) -> Iterator[tuple[int, np.ndarray, float]]:
    """(frame index, frame downsized to max_side, scale) for frames 0, step, 2*step, ... and n-1 of the clip.

    ffmpeg still decodes every frame but selects and scales before the pipe: pass 1 moves ~1/step of the pixels
    (a 1080x1920 clip at detect_fps 5 sends 1/5 of the frames at 1/9 of the size).
    """
    if size is None:
        info = probe(path)
        size = (info["width"], info["height"])
    w, h = size
    s = min(1.0, max_side / max(w, h)) if max_side > 0 else 1.0
    sw, sh = max(2, round(w * s / 2) * 2), max(2, round(h * s / 2) * 2)
    scale = sw / w
    idx = sorted(set(range(0, n, step)) | {n - 1})
    pick = f"select=not(mod(n\\,{step}))+eq(n\\,{n - 1}),scale={sw}:{sh}"
    t0, vf = seek(timeline_vf, start_s)
    frames = iter_frames(path, t0, t0 + n / fps, vf=then(vf, pick),
                         size=(sw, sh))  # fmt: skip
    got = 0
    try:
        for i, frame in zip(idx, frames, strict=False):  # ffmpeg may end a frame early
            got += 1
            yield i, frame, scale
    finally:
        frames.close()  # stops ffmpeg
    if got == 0:
        raise MediaError(f"{path}: no frames in [{start_s:.2f}, {start_s + n / fps:.2f})")


class CropWriter:
    """Streams RGB frames into an H.264 mp4 (silent, yuv420p) through ffmpeg's stdin; list args, no shell."""

    def __init__(self, path: Path, size: int, fps: float, crf: int = 18, timeout: float = 1800.0):
        path.parent.mkdir(parents=True, exist_ok=True)
        args = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt",
                "rgb24", "-s", f"{size}x{size}", "-r", f"{fps:g}", "-i", "-", "-an", "-c:v", "libx264", "-preset",
                "veryfast", "-crf", str(crf), "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(path)]
        self.path, self.n = path, 0
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # a stalled encoder would block write() forever: past `timeout` it is killed (write then raises EPIPE)
        self._watchdog = threading.Timer(timeout, self.proc.kill)
        self._watchdog.daemon = True
        self._watchdog.start()

    def write(self, frame: np.ndarray) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(np.ascontiguousarray(frame).tobytes())
        self.n += 1

    def close(self, timeout: float = 300.0) -> None:
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise MediaError(f"ffmpeg crop encode timed out after {timeout:.0f} s", timed_out=True) from None
        finally:
            self._watchdog.cancel()
        text = err.decode(errors="replace")[-300:]
        if self.proc.returncode != 0 or write_failed(text):
            raise MediaError(f"ffmpeg crop encode exit {self.proc.returncode}: {text}", self.proc.returncode, text)
