"""Streaming media I/O for long generations: audio read clip by clip, frames piped to ffmpeg as they come.

Neither side ever holds the whole video or the whole audio track, so `generate`'s memory does not grow with the
length of the speech. Paths go to ffmpeg as separate argv items (no shell), made absolute so none reads as an option.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np


def _ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise RuntimeError("ffmpeg not found: install it (scripts/setup.sh)")
    return exe


def audio_chunks(path: str | Path, chunk: int, sr: int = 16000, max_seconds: float = 0.0) -> Iterator[np.ndarray]:
    """Mono float32 chunks of `chunk` samples at `sr` (the last one shorter), decoded by ffmpeg as a stream."""
    args = [_ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(Path(path).resolve())]
    if max_seconds > 0:
        args += ["-t", f"{max_seconds:.3f}"]
    args += ["-vn", "-ac", "1", "-ar", str(sr), "-f", "s16le", "-"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        while True:
            data = proc.stdout.read(chunk * 2)
            if not data:
                break
            yield np.frombuffer(data[: len(data) // 2 * 2], "<i2").astype(np.float32) / 32768.0
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace")
        if proc.wait() != 0:
            raise RuntimeError(f"ffmpeg could not decode audio {path}: {err.strip()[-300:]}")


class VideoSink:
    """ffmpeg process encoding RGB frames written clip by clip (H.264 yuv420p), muxed with an audio file."""

    def __init__(self, path: str | Path, size: int, fps: int, audio: str | Path | None = None,
                 max_seconds: float = 0.0, crf: int = 18) -> None:
        self.path = Path(path).resolve()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        args = [_ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt",
                "rgb24", "-s", f"{size}x{size}", "-r", str(fps), "-i", "-"]
        if audio is not None:
            if max_seconds > 0:
                args += ["-t", f"{max_seconds:.3f}"]
            args += ["-i", str(Path(audio).resolve()), "-map", "0:v", "-map", "1:a", "-c:a", "aac", "-b:a", "128k",
                     "-ac", "1", "-ar", "16000", "-shortest"]
        args += ["-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf), "-pix_fmt", "yuv420p", str(self.path)]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        self.frames = 0

    def write(self, frames: np.ndarray) -> None:
        """(N, S, S, 3) uint8 frames, in order."""
        self.proc.stdin.write(np.ascontiguousarray(frames, np.uint8).tobytes())
        self.frames += len(frames)

    def close(self) -> Path:
        self.proc.stdin.close()
        err = self.proc.stderr.read().decode(errors="replace")
        if self.proc.wait() != 0:
            raise RuntimeError(f"ffmpeg failed writing {self.path}: {err.strip()[-300:]}")
        return self.path

    def __enter__(self) -> VideoSink:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:
            self.proc.kill()
            self.proc.wait()
