"""Build the curation benchmark's items (curation_media.plan) as real media files with ffmpeg, cached.

Every item is a .mkv (H.264 + 16 kHz mono PCM, so audio offsets stay sample-exact) that the pipeline ingests like
any local source. Audio variants copy their base's video stream bit for bit (`-c:v copy`; `Item.video_of`), so a
runner may reuse the base's face track for them: the video stages never read audio. Nothing is written into the
repository; the shared media is read in place.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from pipeline import media

from .curation_media import BY_KEY, FPS, HOP, SR, XFADE_PART_S, XFADE_S, Item, Source, half_sources, plan

BUILD_VERSION = 1
DEFAULT_CACHE = Path(os.environ.get("TFW_BENCH_CACHE", "/tmp/curation-bench"))
_AUDIO_OUT = ("-c:a", "pcm_s16le", "-ar", str(SR), "-ac", "1")
_X264 = ("-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", str(2 * FPS))


def _take(audio: np.ndarray, start: int, n: int) -> np.ndarray:
    """audio[start : start + n], zero where it runs outside the array."""
    out = np.zeros(n, np.float32)
    a, b = max(start, 0), min(start + n, len(audio))
    if b > a:
        out[a - start : b - start] = audio[a:b]
    return out


def _loop(audio: np.ndarray, n: int, skip_s: float = 0.3) -> np.ndarray:
    a = audio[int(skip_s * SR) :] if len(audio) > 2 * int(skip_s * SR) else audio
    return np.resize(a, n).astype(np.float32)


def _mux(video_src: Path, audio: np.ndarray, dst: Path) -> None:
    wav = dst.with_suffix(".wav")
    media.write_wav(audio, wav)
    tmp = dst.with_name(dst.stem + ".tmp.mkv")
    media.ffmpeg("-i", str(video_src), "-i", str(wav), "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", *_AUDIO_OUT,
                 "-shortest", str(tmp))  # fmt: skip
    wav.unlink()
    tmp.replace(dst)


# Other encoders, for the gates' generalisation beyond the benchmark's own x264 recipe (tests/pipeline/
# test_face_quality.py): x264 at its default preset (medium: stronger deblocking), and two intra DCT codecs
# without in-loop deblocking, at qualities a careful person keeps (ProRes proxy, MJPEG q 3).
OTHER_ENCODERS: dict[str, tuple[str, ...]] = {
    "crf45_medium": ("-c:v", "libx264", "-crf", "45", "-pix_fmt", "yuv420p"),
    "prores_proxy": ("-c:v", "prores_ks", "-profile:v", "0"),
    "mjpeg_q3": ("-c:v", "mjpeg", "-q:v", "3", "-pix_fmt", "yuvj420p"),
}


def degrade(src: Path, dst: Path, kind: str, seconds: float) -> Path:
    """The first `seconds` of `src` blurred (Gaussian sigma 3) or re-encoded at x264 CRF 45, audio kept (PCM);
    or re-encoded by one of OTHER_ENCODERS."""
    if not dst.exists():
        tmp = dst.with_name(dst.stem + ".tmp.mkv")
        if kind in OTHER_ENCODERS:
            enc: tuple[str, ...] = ("-vf", "null", *OTHER_ENCODERS[kind])
        else:
            vf, crf = {"blur": ("gblur=sigma=3", "18"), "crf45": ("null", "45"), "clean": ("null", "18")}[kind]
            enc = ("-vf", vf, *_X264, "-crf", crf)
        media.ffmpeg("-i", str(src), "-t", f"{seconds:.3f}", *enc, *_AUDIO_OUT, str(tmp))
        tmp.replace(dst)
    return dst


class Builder:
    """Builds and caches the items of both halves under `cache/v<BUILD_VERSION>/`."""

    def __init__(self, shared: Path, cache: Path = DEFAULT_CACHE):
        self.shared, self.dir = Path(shared), Path(cache) / f"v{BUILD_VERSION}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._audio: dict[str, np.ndarray] = {}

    # ---- sources ------------------------------------------------------------------------------------------------
    def source_audio(self, src: Source) -> np.ndarray:
        """The source's whole audio, 16 kHz, aligned to its 25 fps video the way the normalize stage aligns it."""
        if src.key not in self._audio:
            wav = self.dir / f"src-{src.key}.wav"
            if not wav.exists():
                media.ffmpeg("-i", str(self.shared / "video_av" / src.name), "-map", "0:a:0", "-vn",
                             "-af", f"aresample={SR}:async=1:first_pts=0", *_AUDIO_OUT, str(wav))  # fmt: skip
            self._audio[src.key] = media.read_audio(wav)
        return self._audio[src.key]

    def base_video(self, src: Source, seconds: float) -> tuple[Path, int]:
        """Silent 25 fps H.264 of the source's first frames at native size, and its frame count."""
        dst = self.dir / f"vid-{src.key}.mkv"
        if not dst.exists():
            media.ffmpeg("-i", str(self.shared / "video_av" / src.name), "-t", f"{seconds:.3f}", "-map", "0:V:0", "-an",
                         "-vf", f"fps={FPS}:start_time=0,setsar=1,format=yuv420p", "-fps_mode", "cfr", *_X264,
                         "-crf", "16", str(dst))  # fmt: skip
        n = len(media.read_frames(dst, size=(16, 16)))
        return dst, n

    def base_audio(self, src: Source, n: int, k: int = 0) -> np.ndarray:
        """n frames of the source's audio made in sync (its own offset undone), then delayed by k frames."""
        return _take(self.source_audio(src), (src.offset - k) * HOP, n * HOP)

    # ---- items --------------------------------------------------------------------------------------------------
    def items(self, halves: tuple[str, ...] = ("A", "B")) -> list[Item]:
        """Every item of the given halves, built (cached) with its path set."""
        out: list[Item] = []
        for half in halves:
            frames: dict[str, int] = {}
            for s in half_sources(half):
                usable = len(self.source_audio(s)) // HOP - s.offset
                frames[s.key] = min(self.base_video(s, 8.0)[1], usable)
            items = plan(half, {k: n / FPS for k, n in frames.items()})
            for it in items:
                it.path = str(self.dir / f"{it.key}.mkv")
                if not Path(it.path).exists():
                    self.build(it, frames)
            out.extend(items)
        (self.dir / "items.json").write_text(json.dumps([asdict(i) for i in out], indent=1))
        return out

    def build(self, it: Item, frames: dict[str, int]) -> None:
        dst, m = Path(it.path), it.meta
        src = BY_KEY.get(m.get("source", ""))
        n = frames[src.key] if src else 0
        if it.kind in ("base", "shift", "dub", "otherlang", "silence"):
            video, _ = self.base_video(src, 8.0)
            if it.kind == "dub":
                partner = BY_KEY[m["audio_of"]]
                audio = _loop(self.base_audio(partner, frames[partner.key]), n * HOP, 0.0)
            elif it.kind == "otherlang":
                audio = _loop(media.read_audio(self.shared / "audio" / m["audio"]), n * HOP)
            elif it.kind == "silence":
                audio = np.random.default_rng(0).standard_normal(n * HOP).astype(np.float32) * 3e-4
            else:
                audio = self.base_audio(src, n, m.get("k", 0))
            vid = self.dir / f"vid-{src.key}-n{n}.mkv"  # exactly n frames, shared by all audio variants
            if not vid.exists():
                media.ffmpeg("-i", str(video), "-frames:v", str(n), "-c:v", "copy", str(vid))
            _mux(vid, audio, dst)
            return
        tmp = dst.with_name(dst.stem + ".tmp.mkv")
        enc = [*_X264, "-crf", "18", *_AUDIO_OUT]
        base = lambda key: str(self.dir / f"{key}-base.mkv")  # noqa: E731 (bases are built first, in plan order)
        if it.kind in ("blur", "crf45"):
            degrade(Path(base(src.key)), tmp, it.kind, it.duration)
        elif it.kind == "still":
            media.ffmpeg("-loop", "1", "-framerate", str(FPS), "-i", str(self.shared / "faces" / m["photo"]),
                         "-i", str(self.shared / "audio" / m["audio"]), "-t", f"{it.duration:.3f}",
                         "-vf", "scale='if(gt(iw,ih),-2,min(720,iw))':'if(gt(iw,ih),min(720,ih),-2)',format=yuv420p",
                         "-map", "0:v", "-map", "1:a", *enc, str(tmp))  # fmt: skip
        elif it.kind == "sbs":
            graph = "[0:v]scale=512:512,setsar=1[l];[1:v]scale=512:512,setsar=1[r];[l][r]hstack[v]"
            media.ffmpeg("-i", base(m["left"]), "-i", base(m["right"]), "-filter_complex", graph, "-map", "[v]",
                         "-map", "0:a", "-t", f"{it.duration:.3f}", *enc, str(tmp))  # fmt: skip
        elif it.kind == "small":
            vf = "scale=trunc(iw*0.45/2)*2:-2,pad=640:640:(ow-iw)/2:(oh-ih)/2:color=gray"
            media.ffmpeg("-i", base(src.key), "-t", f"{it.duration:.3f}", "-vf", vf, *enc, str(tmp))
        elif it.kind == "noface":  # the lower half of a portrait clip: hands and body, no face
            media.ffmpeg("-i", base(src.key), "-t", f"{it.duration:.3f}", "-vf", "crop=iw:ih/2:0:ih/2", *enc, str(tmp))
        elif it.kind == "cuts":
            args, chains = [], []
            for i, (key, t0) in enumerate(m["parts"]):
                args += ["-ss", f"{t0:.3f}", "-t", "4", "-i", base(key)]
                chains.append(f"[{i}:v]scale=640:640,setsar=1,fps={FPS}[v{i}];[{i}:a]anull[a{i}]")
            joined = "".join(f"[v{i}][a{i}]" for i in range(len(m["parts"])))
            graph = ";".join(chains) + f";{joined}concat=n={len(m['parts'])}:v=1:a=1[v][a]"
            media.ffmpeg(*args, "-filter_complex", graph, "-map", "[v]", "-map", "[a]", *enc, str(tmp))
        elif it.kind == "xfade":
            args, chains = [], []
            for i, key in enumerate(m["parts"]):
                args += ["-t", f"{XFADE_PART_S}", "-i", base(key)]
                chains.append(f"[{i}:v]scale=640:640,setsar=1,fps={FPS}[v{i}]")
            step = XFADE_PART_S - XFADE_S
            chains.append(f"[v0][v1]xfade=transition=fade:duration={XFADE_S}:offset={step}[x1]")
            chains.append(f"[x1][v2]xfade=transition=fade:duration={XFADE_S}:offset={2 * step}[v]")
            chains.append(f"[0:a][1:a]acrossfade=d={XFADE_S}[y1];[y1][2:a]acrossfade=d={XFADE_S}[a]")
            media.ffmpeg(*args, "-filter_complex", ";".join(chains), "-map", "[v]", "-map", "[a]", *enc, str(tmp))
        else:
            raise ValueError(f"unknown item kind {it.kind!r}")
        tmp.replace(dst)
