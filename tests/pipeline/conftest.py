"""Derived test footage for the pipeline tests, built from the real clips in ../shared/media (once per session, or
once per recipe in the persistent media_store).

Fixtures (any pipeline test may use them):
  talking_clip    one real single-shot English talking face (HDTF crop, 512x512, 25 fps, 8 s), read in place
  concat_clip     4 real talking clips, 6 s each, re-encoded to 512x512 25 fps + 16 kHz mono: cuts at 6/12/18 s
  silent_clip     3 s of talking_clip without its audio stream
  ingested_talking  talking_clip after Download + Normalize + ShotSplit: (BuildConfig, list of clip rows)
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest

from pipeline.media import ffmpeg


class DerivedClip(NamedTuple):
    path: Path
    duration_s: float
    cuts: tuple[float, ...]  # hard cuts, seconds from the start
    langs: tuple[str, ...]  # spoken language of each shot


CONCAT_PARTS: tuple[tuple[str, str], ...] = (
    ("hdtf_WDA_AOC_en_8s.mp4", "en"),
    ("latentsync_demo1_ru_10s.mp4", "ru"),
    ("liveportrait_d20_zh.mp4", "zh"),
    ("latentsync_demo2_pt_20s.mp4", "pt"),
)
SHOT_S = 6.0
SIZE = 512


@pytest.fixture(scope="session")
def talking_clip(shared_media) -> DerivedClip:
    """A real single-shot talking face (read in place from the shared folder)."""
    return DerivedClip(shared_media / "video_av" / "hdtf_WDA_AOC_en_8s.mp4", 8.064, (), ("en",))


def _concat(shared_media: Path, out: Path) -> None:
    args: list[str] = []
    chains: list[str] = []
    for i, (name, _) in enumerate(CONCAT_PARTS):
        args += ["-t", f"{SHOT_S}", "-i", str(shared_media / "video_av" / name)]
        chains.append(
            f"[{i}:v]fps=25,scale={SIZE}:{SIZE}:force_original_aspect_ratio=increase,crop={SIZE}:{SIZE}:(iw-ow)/2:(ih-oh)/10,"
            f"setsar=1,trim=end_frame={int(SHOT_S * 25)},setpts=PTS-STARTPTS[v{i}];"
            f"[{i}:a]aresample=16000,aformat=channel_layouts=mono,atrim=end={SHOT_S},asetpts=PTS-STARTPTS[a{i}]"
        )
    joined = "".join(f"[v{i}][a{i}]" for i in range(len(CONCAT_PARTS)))
    graph = ";".join(chains) + f";{joined}concat=n={len(CONCAT_PARTS)}:v=1:a=1[v][a]"
    ffmpeg(
        *args, "-filter_complex", graph, "-map", "[v]", "-map", "[a]",
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p", "-g", "25",
        "-c:a", "aac", "-b:a", "96k", str(out), timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="session")
def concat_clip(shared_media, media_store) -> DerivedClip:
    """First 6 s of four real talking clips (en, ru, zh, pt), scaled/cropped to 512x512, 25 fps, 16 kHz mono.

    Portrait clips are cropped near the top, where the face is. Kept in the persistent media store.
    """
    from benchmarks.kit.cache import built, recipe_key

    name = "concat_4shots_en_ru_zh_pt_24s.mp4"
    sources = [shared_media / "video_av" / part for part, _ in CONCAT_PARTS]
    key = recipe_key((_concat, CONCAT_PARTS, SHOT_S, SIZE), sources)
    out = built(media_store / "concat" / key, lambda tmp: _concat(shared_media, tmp / name)) / name
    n = len(CONCAT_PARTS)
    return DerivedClip(out, SHOT_S * n, tuple(SHOT_S * k for k in range(1, n)), tuple(lang for _, lang in CONCAT_PARTS))


@pytest.fixture(scope="session")
def silent_clip(talking_clip, media_cache) -> DerivedClip:
    """Real talking video with no audio stream (for the no_audio drop)."""
    out = media_cache / "talking_en_noaudio_3s.mp4"
    if not out.exists():
        ffmpeg("-t", "3", "-i", str(talking_clip.path), "-an", "-c:v", "libx264", "-preset", "veryfast",
               "-pix_fmt", "yuv420p", str(out), timeout=120)  # fmt: skip
    return DerivedClip(out, 3.0, (), ())


@pytest.fixture(scope="session")
def ingested_talking(talking_clip, tmp_path_factory):
    """(cfg, rows): talking_clip through Download + Normalize + ShotSplit, for tests of later stages."""
    from pipeline.build import run_local
    from pipeline.config import BuildConfig
    from pipeline.record import seed_row
    from pipeline.stages.download import Download
    from pipeline.stages.normalize import Normalize
    from pipeline.stages.shots import ShotSplit

    cfg = BuildConfig(out=str(tmp_path_factory.mktemp("ingest_out")), langs=["en"])
    seed = seed_row("en", "hdtf_wda_aoc", str(talking_clip.path), license="test")
    stages = [Download(cfg), Normalize(cfg), ShotSplit(cfg)]
    rows = [r for group in run_local(stages, [[seed]]) for r in group]
    assert rows and all(r["status"] == "ok" for r in rows), rows
    return cfg, rows
