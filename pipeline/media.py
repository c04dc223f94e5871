"""ffprobe / ffmpeg helpers. Arguments are lists (never a shell), every call has a timeout.

Frames are read through a rawvideo pipe so every stage sees exactly the frames ffmpeg decodes (25 fps CFR after
normalize), and audio is read as float32 mono at the requested rate.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from . import inject

_WRITE_FAILED = re.compile(r"Error writing trailer|Error closing file|No space left on device|Disk quota exceeded")


BT601 = np.array([0.299, 0.587, 0.114], np.float32)  # luma weights (what OpenCV's RGB2GRAY uses)


def luma(rgb: np.ndarray) -> np.ndarray:
    """float32 grey of RGB(A) pixels, any leading shape: one formula for the fingerprint and the sync scorer."""
    return np.asarray(rgb)[..., :3].astype(np.float32) @ BT601


def write_failed(stderr: str) -> bool:
    """ffmpeg 5 exits 0 when writing the trailer or closing its output fails (a full disk), leaving the file
    truncated: its stderr is the only sign."""
    return bool(_WRITE_FAILED.search(stderr))


class MediaError(RuntimeError):
    """ffmpeg/ffprobe failed on an input: the caller turns this into a drop (or, when `faults.is_transient` says
    the machine failed, not the media: disk full, a timeout, ffmpeg killed by a signal, into a retry)."""

    def __init__(self, message: str, returncode: int | None = None, stderr: str = "", timed_out: bool = False):
        super().__init__(message)
        self.returncode, self.stderr, self.timed_out = returncode, stderr, timed_out


def require_ffmpeg() -> None:
    for tool in ("ffmpeg", "ffprobe"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} not found on PATH: install it (Debian: apt-get install ffmpeg)")


def run(args: Sequence[str], timeout: float = 600.0, input: bytes | None = None) -> bytes:
    """Run ffmpeg/ffprobe with list arguments; raise MediaError with the tail of stderr on failure."""
    inject.at_run(list(args), timeout)
    try:
        proc = subprocess.run(list(args), input=input, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise MediaError(f"{args[0]} timed out after {timeout:.0f} s", timed_out=True) from exc
    err = proc.stderr.decode("utf-8", "replace").strip() if proc.stderr else ""
    if proc.returncode != 0 or write_failed(err):
        tail = err.splitlines()[-3:]
        raise MediaError(f"{args[0]} exit {proc.returncode}: {' | '.join(tail)}", proc.returncode, err[-2000:])
    return proc.stdout


def ffmpeg(*args: str, timeout: float = 600.0) -> None:
    run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], timeout=timeout)


def ffprobe_json(path: str | Path, timeout: float = 60.0) -> dict:
    """ffprobe's format + streams description. Raises MediaError for unreadable files."""
    out = run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", "--", str(path)],
        timeout=timeout,
    )
    return json.loads(out or b"{}")


def probe(path: str | Path, timeout: float = 60.0) -> dict:
    """Duration, size, fps and whether audio/video exist. Raises MediaError for unreadable files."""
    info = ffprobe_json(path, timeout)
    streams = info.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video"), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    duration = float(info.get("format", {}).get("duration") or 0.0)
    result = {"duration_s": duration, "has_video": video is not None, "has_audio": audio is not None}
    if video is not None:
        num, _, den = (video.get("avg_frame_rate") or "0/1").partition("/")
        fps = float(num) / float(den or 1) if float(den or 1) else 0.0
        result |= {"width": int(video.get("width", 0)), "height": int(video.get("height", 0)), "fps": fps}
    return result


def sample_aspect(text: str | None) -> float:
    """ffprobe's sample_aspect_ratio ("64:45") as a number; 1.0 when absent or unknown ("0:1", "N/A")."""
    num, _, den = (text or "").partition(":")
    try:
        value = float(num) / float(den)
    except (ValueError, ZeroDivisionError):
        return 1.0
    return value if value > 0 else 1.0


def stream_duration(path: str | Path, cap_s: float, timeout: float = 300.0) -> float:
    """Seconds the packets of the first video (else audio) stream span, for containers that state no duration
    (written to a pipe, a live recording). Demuxes, never decodes, and stops after cap_s + 1 s: the answer is
    exact up to the cap and "more than cap_s" beyond it, however long the file is."""
    for stream in ("V:0", "a:0"):  # V: not cover art
        out = run(["ffprobe", "-v", "error", "-read_intervals", f"%+{cap_s + 1:.3f}", "-select_streams", stream,
                   "-show_entries", "packet=pts_time,duration_time", "-of", "csv=p=0", "--", str(path)],
                  timeout=timeout)  # fmt: skip
        starts, ends = [], []
        for line in out.decode("ascii", "replace").splitlines():
            pts, _, dur = line.partition(",")
            try:
                starts.append(float(pts))
                ends.append(starts[-1] + (float(dur) if dur.strip() not in ("", "N/A") else 0.0))
            except ValueError:
                continue
        if ends:
            return max(ends) - min(starts)
    return 0.0


def read_frames(
    path: str | Path,
    start_s: float = 0.0,
    end_s: float | None = None,
    size: tuple[int, int] | None = None,
    fps: float | None = None,
    timeout: float = 600.0,
) -> np.ndarray:
    """Decode frames [start_s, end_s) as uint8 RGB (N, H, W, 3); `size` = (w, h) scales, `fps` resamples."""
    info = probe(path)
    if not info["has_video"]:
        raise MediaError(f"{path}: no video stream")
    w, h = size or (info["width"], info["height"])
    filters = []
    if fps:
        filters.append(f"fps={fps}")
    if size:
        filters.append(f"scale={w}:{h}")
    args = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-ss", f"{start_s:.3f}", "-i", str(path)]
    if end_s is not None:
        args += ["-t", f"{max(end_s - start_s, 0.0):.3f}"]
    if filters:
        args += ["-vf", ",".join(filters)]
    args += ["-an", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    raw = run(args, timeout=timeout)
    n = len(raw) // (w * h * 3)
    return np.frombuffer(raw[: n * w * h * 3], dtype=np.uint8).reshape(n, h, w, 3)


def iter_frames(
    path: str | Path,
    start_s: float = 0.0,
    end_s: float | None = None,
    timeout: float = 600.0,
    vf: str | None = None,
    size: tuple[int, int] | None = None,
    pix_fmt: str = "rgb24",
) -> Iterator[np.ndarray]:
    """Stream frames one by one (constant memory for long clips) of the file's first real video stream.

    `vf` is a filter chain that may drop frames (select), resample (fps) and scale; frames then pass through
    without duplication, and `size` = (w, h) must be the size the chain outputs. `pix_fmt`: rgb24 or bgr24.
    """
    if size is None:
        info = probe(path)
        size = (info["width"], info["height"])
    w, h = size
    args = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-ss", f"{start_s:.3f}", "-i", str(path)]
    if end_s is not None:
        args += ["-t", f"{max(end_s - start_s, 0.0):.3f}"]
    args += ["-map", "0:V:0", "-an"]  # V: not cover art, which a source (unlike norm.mkv) may carry
    if vf:
        args += ["-vf", vf, "-fps_mode", "passthrough"]
    args += ["-f", "rawvideo", "-pix_fmt", pix_fmt, "-"]
    inject.at_run(args, timeout)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    # `timeout` bounds the whole decode as in run(): a stalled ffmpeg (hung storage, a stuck decoder) is killed,
    # the pipe then ends, and the caller gets a MediaError marked timed_out instead of a reader blocked forever.
    expired = threading.Event()
    watchdog = threading.Timer(timeout, lambda: (expired.set(), proc.kill()))
    watchdog.daemon = True
    watchdog.start()
    try:
        assert proc.stdout is not None
        while True:
            buf = proc.stdout.read(w * h * 3)
            if len(buf) < w * h * 3:
                break
            yield np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3)
        if expired.is_set():
            raise MediaError(f"ffmpeg timed out after {timeout:.0f} s decoding {path}", timed_out=True)
    finally:
        watchdog.cancel()
        proc.kill()
        proc.wait(timeout=30)


def read_audio(
    path: str | Path, start_s: float = 0.0, end_s: float | None = None, sr: int = 16000, timeout: float = 600.0
) -> np.ndarray:
    """Decode mono float32 audio in [-1, 1] at `sr` Hz."""
    args = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-ss", f"{start_s:.3f}", "-i", str(path)]
    if end_s is not None:
        args += ["-t", f"{max(end_s - start_s, 0.0):.3f}"]
    args += ["-vn", "-ac", "1", "-ar", str(sr), "-f", "s16le", "-acodec", "pcm_s16le", "-"]
    raw = run(args, timeout=timeout)
    return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0


def write_video(
    frames: np.ndarray | Sequence[np.ndarray],
    path: str | Path,
    fps: float = 25.0,
    audio: np.ndarray | None = None,
    sr: int = 16000,
    crf: int = 18,
    timeout: float = 600.0,
) -> None:
    """Encode RGB uint8 frames (N, H, W, 3) as H.264 yuv420p mp4, with optional mono float32 audio (AAC)."""
    frames = np.asarray(frames, dtype=np.uint8)
    n, h, w, _ = frames.shape
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_wav = None
    args = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "-"]
    if audio is not None:
        tmp_wav = path.with_name(path.stem + ".tmp-audio.wav")
        write_wav(audio, tmp_wav, sr)
        args += ["-i", str(tmp_wav), "-c:a", "aac", "-b:a", "128k", "-shortest"]
    args += ["-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf), "-pix_fmt", "yuv420p"]
    args += ["-movflags", "+faststart", str(path)]
    try:
        run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], timeout, frames.tobytes())
    finally:
        if tmp_wav is not None:
            tmp_wav.unlink(missing_ok=True)


def write_wav(audio: np.ndarray, path: str | Path, sr: int = 16000) -> None:
    """Write mono float32 [-1, 1] audio as 16-bit PCM wav (stdlib only)."""
    import wave

    pcm = (np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0) * 32767.0).astype("<i2")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(sr)
        wf.writeframes(pcm.tobytes())


def cut(src: str | Path, dst: str | Path, start_s: float, end_s: float, timeout: float = 600.0) -> None:
    """Frame-accurate re-encoded cut of a normalized file (video + audio)."""
    ffmpeg(
        "-ss", f"{start_s:.3f}", "-i", str(src), "-t", f"{end_s - start_s:.3f}",
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p",
        "-c:a", "pcm_s16le", str(dst), timeout=timeout,
    )  # fmt: skip


def decode_video_bytes(data: bytes, size: int) -> np.ndarray:
    """Encoded video bytes (a shard's .mp4) -> (N, size, size, 3) uint8 RGB, decoded in memory.

    PyAV (it ships with faster-whisper) decodes without touching disk, which matters inside DataLoader workers;
    without it, ffmpeg decodes a temp file. Frames of another size are resized with INTER_AREA."""
    try:
        import av
    except ImportError:
        av = None
    if av is None:
        import tempfile

        with tempfile.NamedTemporaryFile(suffix=".mp4") as tmp:
            tmp.write(data)
            tmp.flush()
            frames = list(read_frames(tmp.name, size=(size, size)))
    else:
        import io

        import cv2
        from av.video.reformatter import VideoReformatter

        # a reformatter of this call, one thread: PyAV 18's to_ndarray() reuses a thread-local swscale context
        # whose worker threads a forked DataLoader worker does not have (it waited for them forever)
        rgb, opts = VideoReformatter(), {"format": "rgb24", "threads": 1}
        frames = []
        with av.open(io.BytesIO(data)) as box:
            for fr in box.decode(video=0):
                try:
                    img = rgb.reformat(fr, **opts).to_ndarray()
                except TypeError:  # an older PyAV: no `threads` (and no threaded swscale context to inherit)
                    opts.pop("threads")
                    img = rgb.reformat(fr, **opts).to_ndarray()
                if img.shape[0] != size or img.shape[1] != size:
                    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
                frames.append(img)
    if not frames:
        raise MediaError("video has no frames")
    return np.stack(frames)
