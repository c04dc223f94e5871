"""Put every source on one timeline: 25 fps CFR video, 16 kHz mono PCM, so every later stage agrees on frames.

Sources arrive in any container, codec, frame rate (often VFR) and orientation. Normalize writes `audio.wav`
and records `norm_vf`, the filter chain that decodes the source as frame k at k/25 s (pipeline/norm_video.py),
so frame indices and audio sample indices agree everywhere downstream (640 samples per frame); the video is not
re-encoded (`normalize.reencode: true` writes the old norm.mkv instead). The duration comes from the demuxed
video packets and stops at `download.max_duration_s` + 1 s, so a container that states no (or a wrong) duration
cannot turn a 2-h recording into hundreds of clips: a stream longer than the cap is dropped "too_long", and
one much shorter than the container says (truncated data) "corrupt_video". ffmpeg failures
that are the machine's (disk full, timeout, killed) are not `corrupt_video`: faults.py makes them retries.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .. import faults, media, source_qp
from ..norm_video import first_frame_size, hdr_input, timeline_filter
from ..record import FPS, SAMPLE_RATE, Row, drop
from .base import Stage

log = logging.getLogger(__name__)

# Output shorter than this fraction of the probed input means ffmpeg gave up part way (truncated/corrupt data).
MIN_DECODED_FRACTION = 0.9
# ffprobe's field_order for interleaved fields (top/bottom first, coded and displayed in either order)
INTERLACED_FIELD_ORDERS = frozenset({"tt", "bb", "tb", "bt"})
# a container's language tags (ISO 639-2, both its forms, and the 639-1 some muxers write) per manifest language
LANGUAGE_TAGS = {
    "en": {"eng", "en"}, "zh": {"zho", "chi", "zh", "cmn", "yue"}, "es": {"spa", "es"}, "fr": {"fra", "fre", "fr"},
    "de": {"deu", "ger", "de"}, "ja": {"jpn", "ja"}, "ko": {"kor", "ko"}, "ru": {"rus", "ru"},
    "pt": {"por", "pt"}, "ar": {"ara", "ar"},
}  # fmt: skip
# audio tracks that are not the speaker's voice: a dub, commentary, audio description, a karaoke / music-only mix
SIDE_TRACKS = ("dub", "comment", "visual_impaired", "karaoke")


def audio_track(audio: list[dict], lang: str) -> int:
    """Which of a file's audio streams is the speaker's (its index among them, for `-map 0:a:N`): the first
    tagged with the manifest's language, else the default one, else the first; never a dub, commentary or
    audio-description track while another is left. A file with one audio stream gets 0."""
    def side(s: dict) -> bool:
        return any(s.get("disposition", {}).get(d) for d in SIDE_TRACKS)

    order = [i for i, s in enumerate(audio) if not side(s)] or list(range(len(audio)))
    tags = LANGUAGE_TAGS.get(lang, set())
    tagged = [i for i in order if str(audio[i].get("tags", {}).get("language", "")).lower() in tags]
    default = [i for i in order if audio[i].get("disposition", {}).get("default")]
    return (tagged or default or order or [0])[0]


def stream_info(path: str | Path, lang: str = "", timeout: float = 60.0) -> dict:
    """Which real streams a file has (cover art / thumbnails are not video), whether the video's pixels are square,
    whether its fields are interlaced, its HDR (PQ / HLG) description for the tone map, and which audio stream is
    the speaker's (`audio_track`, for the manifest's `lang`). Raises MediaError if unreadable."""
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
        "square_pixels": not video or abs(media.sample_aspect(video[0].get("sample_aspect_ratio")) - 1.0) < 1e-3,
        "interlaced": bool(video) and video[0].get("field_order") in INTERLACED_FIELD_ORDERS,
        "hdr": hdr_input(video[0]) if video else "",
        "audio_map": f"0:a:{audio_track(audio, lang)}",
        "audio_tracks": len(audio),
    }


class Normalize(Stage):
    name = "normalize"
    uses_model = False

    def process(self, row: Row) -> Row | list[Row]:
        c = self.cfg.normalize
        src = row["video_path"]
        try:
            info = stream_info(src, row.get("lang_expected") or "")
        except media.MediaError as exc:
            faults.raise_if_transient(exc)
            return drop(row, "corrupt_video", self.name, f"unreadable: {exc}")
        if not info["has_video"]:
            return drop(row, "no_video", self.name, "no video stream (audio only or cover art)")
        if not info["has_audio"]:
            return drop(row, "no_audio", self.name, "no audio stream")
        if info["audio_tracks"] > 1:
            log.info("%s: %d audio tracks, the speaker's taken as %s", row["key"], info["audio_tracks"], info["audio_map"])

        work = self.video_dir(row)
        wav, tmp_wav = work / "audio.wav", work / f".audio.{os.getpid()}.wav"
        cap = self.cfg.download.max_duration_s
        # Both streams start at the file's t=0 (first frame repeated, silence padded), so sample i of audio.wav
        # and frame k of the timeline line up even when the source's streams start at different times.
        vf = timeline_filter(c.max_short_side, square_pixels=info["square_pixels"], interlaced=info["interlaced"],
                             hdr=info["hdr"])  # fmt: skip
        af = f"aresample={SAMPLE_RATE}:async=1:first_pts=0"
        audio_out = ["-af", af, "-ac", "1", "-ar", str(SAMPLE_RATE), "-c:a", "pcm_s16le"]
        try:
            if c.reencode:
                norm = work / "norm.mkv"
                out = self._reencode(src, norm, vf, info["audio_map"], audio_out, tmp_wav, cap)
                video = {"norm_path": str(norm)}
            else:  # the source itself, decoded through `vf` by every later stage (pipeline/norm_video.py)
                out = self._measure(src, vf, cap)
                media.ffmpeg("-t", f"{cap + 1:.3f}", "-i", str(src), "-map", info["audio_map"], "-vn",
                             *audio_out, str(tmp_wav), timeout=c.timeout_s)  # fmt: skip
                video = {"norm_path": str(src), "norm_vf": vf}
        except media.MediaError as exc:
            tmp_wav.unlink(missing_ok=True)
            faults.raise_if_transient(exc)  # ENOSPC, a timeout under load, ffmpeg killed: retried, never ledgered
            return drop(row, "corrupt_video", self.name, f"decode failed: {exc}")
        reason = self._check(out, info, cap)
        if reason:
            tmp_wav.unlink(missing_ok=True)
            if c.reencode:
                Path(video["norm_path"]).unlink(missing_ok=True)
            return drop(row, *reason)
        tmp_wav.replace(wav)
        row |= source_qp.of_source(src, out["duration_s"])
        row |= video | {
            "audio_path": str(wav),
            "width": int(out["width"]),
            "height": int(out["height"]),
            "fps": float(FPS),
            "duration_s": round(float(out["duration_s"]), 3),
        }
        return row

    def _check(self, out: dict, info: dict, cap: float) -> tuple[str, str, str] | None:
        """(reason, stage, detail) when the decoded or demuxed stream is too long or truncated, else None."""
        if out["duration_s"] > cap:
            return ("too_long", self.name, f"decoded stream runs past max_duration_s {cap:.0f} "
                    f"(the container states {info['duration_s']:.0f} s)")  # fmt: skip
        if not out["has_video"] or out["duration_s"] <= 0 or (
            info["duration_s"] > 0 and out["duration_s"] < MIN_DECODED_FRACTION * info["duration_s"] - 0.5
        ):
            detail = f"decoded {out['duration_s']:.2f} s of {info['duration_s']:.2f} s (truncated or corrupt data)"
            return ("corrupt_video", self.name, detail)
        return None

    def _measure(self, src: str, vf: str, cap: float) -> dict:
        """Duration from the video packets (demuxed, not decoded; exact up to the cap) and the timeline's frame
        size from one decoded frame: what the re-encode learnt by decoding everything, for ~1 % of its CPU."""
        span = media.stream_duration(src, cap, timeout=self.cfg.normalize.timeout_s)
        w, h = first_frame_size(src, vf)
        return {"duration_s": span, "has_video": True, "width": w, "height": h}

    def _reencode(self, src: str, norm: Path, vf: str, audio_map: str, audio_out: list[str], tmp_wav: Path,
                  cap: float) -> dict:  # fmt: skip
        """One ffmpeg pass: norm.mkv (video + audio) and audio.wav; decoding stops past the cap."""
        c = self.cfg.normalize
        tmp_norm = norm.with_name(f".norm.{os.getpid()}.mkv")
        try:
            media.ffmpeg(
                "-t", f"{cap + 1:.3f}", "-i", str(src),
                "-map", "0:V:0", "-map", audio_map, "-vf", vf, "-fps_mode", "cfr",
                "-c:v", "libx264", "-preset", c.preset, "-crf", str(c.crf), "-g", str(2 * FPS),
                *audio_out, str(tmp_norm),
                "-map", audio_map, "-vn", *audio_out, str(tmp_wav),
                timeout=c.timeout_s,
            )  # fmt: skip
            out = media.probe(tmp_norm)
        except BaseException:
            tmp_norm.unlink(missing_ok=True)
            raise
        tmp_norm.replace(norm)
        return out
