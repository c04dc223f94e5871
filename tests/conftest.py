"""Shared fixtures: where the real media lives, a per-session cache for media built from it, offline env.

Per-area fixtures live in tests/<area>/conftest.py. Media under ../shared/media is read in place, never copied
into the project; derived clips (cuts, shifted audio, TTS) are built with ffmpeg into a session cache.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")


def shared_media_dir() -> Path:
    return Path(os.environ.get("TFW_SHARED_MEDIA", ROOT.parent / "shared" / "media")).resolve()


@pytest.fixture(scope="session")
def shared_media() -> Path:
    """../shared/media (or $TFW_SHARED_MEDIA): real talking-face clips, speech, faces, a few weights."""
    d = shared_media_dir()
    if not (d / "video_av").is_dir():
        pytest.fail(f"real test media not found at {d}: put the shared/ folder beside the repo or set TFW_SHARED_MEDIA")
    return d


@pytest.fixture(scope="session")
def media_cache(tmp_path_factory) -> Path:
    """A session-wide dir for media derived from the shared clips (built once per session)."""
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def media_store() -> Path:
    """The cache that outlives the session (benchmarks/kit/cache.py: $TFW_TEST_MEDIA_CACHE, default
    ~/.cache/talkingface-wild/test-media) for derived media that takes minutes to build; read-only for tests."""
    from benchmarks.kit.cache import cache_root

    return cache_root()


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def have_ffmpeg() -> None:
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg missing: run scripts/setup.sh")
