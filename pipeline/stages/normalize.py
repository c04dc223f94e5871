"""Re-encode to 25 fps CFR H.264 + 16 kHz mono PCM so every later stage sees the same timeline.

Sources arrive in any container, codec, frame rate (often VFR) and orientation. One ffmpeg pass writes
`norm.mkv` (video + audio, frame k at k/25 s) and `audio.wav` (the same audio, for the audio models), so frame
indices and audio sample indices agree everywhere downstream (640 samples per frame).
Decoding stops at `download.max_duration_s` + 1 s, so a container that states no (or a wrong) duration cannot
turn a 2-h recording into hundreds of clips: output longer than the cap is dropped "too_long". ffmpeg failures
that are the machine's (disk full, timeout, killed) are not `corrupt_video`: faults.py makes them retries.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .. import faults, media
from ..record import FPS, SAMPLE_RATE, Row, drop
from .base import Stage

log = logging.getLogger(__name__)

# Output shorter than this fraction of the probed input means ffmpeg gave up part way (truncated/corrupt data).
MIN_DECODED_FRACTION = 0.9


def stream_info(path: str | Path, timeout: float = 60.0) -> dict:
    """Which real streams a file has: cover art / thumbnails are not video. Raises MediaError if unreadable."""
    info = media.ffprobe_json(path, timeout)
    streams = info.get("streams", [])
    video = [
        s for s in streams
        if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")
    ]  # fmt: skip
    audio = [s for s in streams if s.get("codec_type") == "audio"]
    return {
        "has_video": bool(video),
        "has_audio": bool(audio),
        "duration_s": float(info.get("format", {}).get("duration") or 0.0),
    }


class Normalize(Stage):
    name = "normalize"
    uses_model = False

    def process(self, row: Row) -> Row | list[Row]:
        c = self.cfg.normalize
        src = row["video_path"]
        try:
            info = stream_info(src)
        except media.MediaError as exc:
            faults.raise_if_transient(exc)
            return drop(row, "corrupt_video", self.name, f"unreadable: {exc}")
        if not info["has_video"]:
            return drop(row, "no_video", self.name, "no video stream (audio only or cover art)")
        if not info["has_audio"]:
            return drop(row, "no_audio", self.name, "no audio stream")

        work = self.video_dir(row)
        norm, wav = work / "norm.mkv", work / "audio.wav"
        tmp_norm, tmp_wav = work / f".norm.{os.getpid()}.mkv", work / f".audio.{os.getpid()}.wav"
        # Both streams start at the file's t=0 (first frame repeated, silence padded), so sample i of audio.wav
        # and frame k of norm.mkv line up even when the source's streams start at different times.
        # Autorotation happens before the filters, so iw/ih are the displayed size. The shorter side is capped
        # (portrait footage keeps its face resolution); -2 keeps the aspect with an even other side.
        m = c.max_short_side
        scale = (f"scale='if(lt(iw,ih),trunc(min(iw,{m})/2)*2,-2)':'if(lt(iw,ih),-2,trunc(min(ih,{m})/2)*2)'")
        vf = f"fps={FPS}:start_time=0,{scale}:flags=bicubic,setsar=1,format=yuv420p"
        af = f"aresample={SAMPLE_RATE}:async=1:first_pts=0"
        audio_out = ["-af", af, "-ac", "1", "-ar", str(SAMPLE_RATE), "-c:a", "pcm_s16le"]
        cap = self.cfg.download.max_duration_s
        try:
            media.ffmpeg(
                "-t", f"{cap + 1:.3f}", "-i", str(src),
                "-map", "0:V:0", "-map", "0:a:0", "-vf", vf, "-fps_mode", "cfr",
                "-c:v", "libx264", "-preset", c.preset, "-crf", str(c.crf), "-g", str(2 * FPS),
                *audio_out, str(tmp_norm),
                "-map", "0:a:0", "-vn", *audio_out, str(tmp_wav),
                timeout=c.timeout_s,
            )  # fmt: skip
            out = media.probe(tmp_norm)
        except media.MediaError as exc:
            tmp_norm.unlink(missing_ok=True)
            tmp_wav.unlink(missing_ok=True)
            faults.raise_if_transient(exc)  # ENOSPC, a timeout under load, ffmpeg killed: retried, never ledgered
            return drop(row, "corrupt_video", self.name, f"decode failed: {exc}")
        if out["duration_s"] > cap:
            tmp_norm.unlink(missing_ok=True)
            tmp_wav.unlink(missing_ok=True)
            return drop(row, "too_long", self.name, f"decoded stream runs past max_duration_s {cap:.0f} "
                        f"(the container states {info['duration_s']:.0f} s)")  # fmt: skip
        if not out["has_video"] or out["duration_s"] <= 0 or (
            info["duration_s"] > 0 and out["duration_s"] < MIN_DECODED_FRACTION * info["duration_s"] - 0.5
        ):
            tmp_norm.unlink(missing_ok=True)
            tmp_wav.unlink(missing_ok=True)
            return drop(
                row, "corrupt_video", self.name,
                f"decoded {out['duration_s']:.2f} s of {info['duration_s']:.2f} s (truncated or corrupt data)",
            )  # fmt: skip
        tmp_norm.replace(norm)
        tmp_wav.replace(wav)
        row |= {
            "norm_path": str(norm),
            "audio_path": str(wav),
            "width": int(out["width"]),
            "height": int(out["height"]),
            "fps": float(FPS),
            "duration_s": round(float(out["duration_s"]), 3),
        }
        return row
