"""MCDM test fixtures: small training shards built FROM REAL MEDIA in exactly the pipeline's sink format.

  mcdm_shards      2 shards (en-000000.tar, en-000001.tar), one 3 s HDTF talking clip each (AOC, Katie Hill),
                   64² crops, 16 kHz audio with 640 samples per frame, dlib-68 + solvePnP .npz tracks
  mcdm_tiny_shard  1 shard with one 0.4 s clip (10 frames): windows barely vary, so a model can overfit it

Both are built once per recipe into the persistent media_store (the real clips are read in place).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


def _shards(store: Path, name: str, clips: list[tuple[Path, float, float]]) -> Path:
    """write_shards(clips) once per recipe and source files, in the persistent store (benchmarks/kit/cache.py)."""
    from benchmarks.kit import fixture_shards as fs
    from benchmarks.kit.cache import built, recipe_key

    key = recipe_key((fs.track_arrays, fs.clip_sample, fs.write_shards, clips), [src for src, _, _ in clips])
    return built(store / "mcdm" / f"{name}-{key}", lambda tmp: fs.write_shards(tmp, clips)) / "shards"


@pytest.fixture(scope="session")
def mcdm_shards(shared_media: Path, media_store: Path, have_ffmpeg: None) -> Path:
    v = shared_media / "video_av"
    return _shards(media_store, "two", [(v / "hdtf_WDA_AOC_en_8s.mp4", 1.0, 4.0), (v / "hdtf_WDA_KatieHill_en_8s.mp4", 1.0, 4.0)])


@pytest.fixture(scope="session")
def mcdm_tiny_shard(shared_media: Path, media_store: Path, have_ffmpeg: None) -> Path:
    return _shards(media_store, "tiny", [(shared_media / "video_av" / "hdtf_WDA_AOC_en_8s.mp4", 2.0, 2.4)])


@pytest.fixture
def no_models_dir(tmp_path: Path) -> str:
    """An empty models dir so tests never pick up weights installed on the machine."""
    d = tmp_path / "models"
    d.mkdir()
    return str(d)
