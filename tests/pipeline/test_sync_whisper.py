"""The Whisper-encoder frames behind the default sync confidence (pipeline/models/sync_whisper.py), on real speech."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import media
from pipeline.config import BuildConfig
from pipeline.models.sync_energy import HOP
from pipeline.models.sync_loader import load_prior
from pipeline.models.sync_prior import WHISPER_PRIOR_PATH, AudioMouthPrior


@pytest.fixture(scope="module")
def frames():
    from pipeline.models.sync_whisper import WhisperFrames

    return WhisperFrames(BuildConfig().models_dir)


@pytest.fixture(scope="module")
def speech(shared_media) -> np.ndarray:
    return media.read_audio(shared_media / "audio" / "en" / "jfk_11s.flac")[: 6 * 16000]


def test_frames_sit_on_the_video_frame_grid(frames, speech):
    """One 512-D row per 40-ms video frame; audio delayed by k frames gives the same rows k frames later (the
    two 20-ms encoder frames are paired on the 640-sample grid, not off by one)."""
    f = frames(speech)
    assert f.shape == (len(speech) // HOP, 512) and np.isfinite(f).all()
    assert frames(speech) is f  # the scorer asks twice per clip: encoded once
    k = 3
    g = frames(np.concatenate([np.zeros(k * HOP, np.float32), speech]))
    mid = slice(40, len(f) - 40)  # away from the ends, where attention sees the padding
    z = lambda x: (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)  # noqa: E731
    same = [float(np.mean(z(g[k + i : k + i + 1]) * z(f[i : i + 1]))) for i in range(mid.start, mid.stop)]
    off = [float(np.mean(z(g[k + i + 2 : k + i + 3]) * z(f[i : i + 1]))) for i in range(mid.start, mid.stop)]
    assert np.median(same) > 0.9 and np.median(same) > np.median(off) + 0.1


def test_prior_keeps_its_features_and_refuses_to_run_without_them(frames, tmp_path):
    shipped = load_prior(WHISPER_PRIOR_PATH, BuildConfig().models_dir)
    assert shipped.features == "whisper-base" and shipped.featurizer is not None and shipped.weights.shape == (3 * 512, 4)
    bare = AudioMouthPrior.load(WHISPER_PRIOR_PATH)  # without its featurizer it must not fall back to log-mel
    with pytest.raises(RuntimeError, match="whisper-base"):
        bare.predict(np.zeros(16000, np.float32))
    odd = AudioMouthPrior(shipped.weights, features="wav2vec9")
    odd.save(tmp_path / "odd.npz")
    with pytest.raises(ValueError, match="unknown features 'wav2vec9'"):
        load_prior(tmp_path / "odd.npz", BuildConfig().models_dir)
    assert AudioMouthPrior.load(tmp_path / "odd.npz").features == "wav2vec9"
