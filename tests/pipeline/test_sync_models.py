"""SyncNet / Light-ASD architectures + loaders, and the MFCC front end. Light-ASD uses the real MIT weights
from ../shared/media/weights (read in place); SyncNet's upstream weights are not available offline."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import sync_media  # noqa: E402

from pipeline import media  # noqa: E402
from pipeline.config import default_models_dir  # noqa: E402
from pipeline.models.lightasd import LightASD, audio_features, find_lightasd_weights, load_lightasd  # noqa: E402
from pipeline.models.mfcc import mel_filterbank, mfcc  # noqa: E402
from pipeline.models.syncnet import SyncNet, SyncNetScorer, load_syncnet  # noqa: E402

torch.set_num_threads(1)


def test_mfcc_shape_energy_and_pitch():
    sr = 16000
    t = np.arange(sr) / sr
    tone = (np.sin(2 * np.pi * 1000 * t) * 10000).astype(np.float64)
    m = mfcc(tone, sr)
    assert m.shape == (1 + int(np.ceil((sr - 400) / 160)), 13)  # python_speech_features frame count
    frame = tone[160:560]
    pre = frame - 0.97 * tone[159:559]
    assert m[1, 0] == pytest.approx(np.log((np.abs(np.fft.rfft(pre, 512)) ** 2 / 512).sum()), rel=1e-6)
    fb = mel_filterbank()
    peak_filter = int(np.argmax(fb @ (np.abs(np.fft.rfft(pre, 512)) ** 2)))
    centre_hz = np.argmax(fb[peak_filter]) * sr / 513
    assert abs(centre_hz - 1000) < 150
    assert not np.allclose(mfcc(tone * 0.1, sr)[:, 0], m[:, 0])  # scale matters: int16 scale is the contract


def test_syncnet_towers_roundtrip_and_errors(tmp_path, shared_media):
    torch.manual_seed(0)
    net = SyncNet().eval()
    with torch.no_grad():
        assert net.forward_lip(torch.rand(2, 3, 5, 224, 224) * 255).shape == (2, 1024)
        assert net.forward_aud(torch.randn(2, 1, 13, 20)).shape == (2, 1024)
    p = tmp_path / "syncnet_v2.model"
    torch.save({f"__S__.{k}": v for k, v in net.state_dict().items()}, p)  # upstream instance-prefixed keys
    loaded = load_syncnet(p)
    for k, v in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    with pytest.raises(FileNotFoundError, match="syncnet_v2.model"):
        load_syncnet(tmp_path / "nope" / "syncnet_v2.model")
    with pytest.raises(ValueError, match="not a SyncNet checkpoint"):
        load_syncnet(shared_media / "weights" / "light_asd_finetuning_TalkSet.model")
    frames = np.random.default_rng(0).integers(0, 255, (30, 64, 64, 3), dtype=np.uint8)
    c = SyncNetScorer(loaded, search_frames=3).curve(frames, np.zeros(40 * 640, np.float32), audio_lead_frames=3)
    assert len(c.values) == 7 and np.isfinite(c.values).all() and -3 <= c.offset <= 3


@pytest.fixture(scope="module")
def asd_clips(shared_media, media_cache):
    """Two real talking clips as 112x112 gray mouth-centred face crops (first 50 frames) + their audio."""
    import cv2

    rows = sync_media.prepare(shared_media, media_cache / "sync", ("retalking_face2_en.mp4", "hdtf_WDA_AOC_en_8s.mp4"))
    out = []
    for r in rows:
        fr = media.read_frames(r["crop_path"])[:50]
        s = fr.shape[1]  # Light-ASD's crop: face centre to chin, +-0.7 face half-size around the centre
        g = [cv2.resize(cv2.cvtColor(f[int(0.393 * s) : int(0.893 * s), s // 4 : 3 * s // 4], cv2.COLOR_RGB2GRAY), (112, 112))
             for f in fr]  # fmt: skip
        out.append((np.stack(g).astype(np.float32), media.read_audio(r["audio_path"])[: 50 * 640]))
    return out


def test_lightasd_loads_real_weights_and_scores(shared_media, asd_clips):
    path = find_lightasd_weights("/nonexistent", shared_media / "weights" / "light_asd_finetuning_TalkSet.model")
    model = load_lightasd(path)
    assert isinstance(model, LightASD)
    ref = torch.load(str(path), map_location="cpu", weights_only=True)
    assert torch.equal(model.state_dict()["model.GRU.gru_forward.weight_ih_l0"], ref["model.GRU.gru_forward.weight_ih_l0"])
    faces, audio = asd_clips[0]
    with torch.no_grad():
        s = model(torch.from_numpy(faces)[None], torch.from_numpy(audio_features(audio, len(faces)))[None])
    assert s.shape == (1, 50) and torch.isfinite(s).all()
    with pytest.raises(FileNotFoundError, match="finetuning_TalkSet.model"):
        find_lightasd_weights(default_models_dir() + "/does-not-exist")


@pytest.mark.xfail(strict=False, reason="measured: own speech, silence and another speaker's speech score "
                   "alike (visual branch dominates), so Light-ASD is not used as a sync scorer")
def test_lightasd_prefers_own_audio(shared_media, asd_clips):
    model = load_lightasd(shared_media / "weights" / "light_asd_finetuning_TalkSet.model")
    (f0, a0), (_, a1) = asd_clips
    with torch.no_grad():
        def score(a):
            return float(model(torch.from_numpy(f0)[None], torch.from_numpy(audio_features(a, len(f0)))[None]).mean())

        own, silence, other = score(a0), score(np.zeros_like(a0)), score(a1)
    assert own > silence + 1 and own > other + 1, (own, silence, other)


@pytest.mark.weights
def test_syncnet_real_weights_find_shift(shared_media, media_cache):
    """Upstream syncnet_v2.model (not offline): a real clip with audio delayed 5 frames reads offset 5 (+-1)."""
    weights = Path(default_models_dir()) / "syncnet" / "syncnet_v2.model"
    if not weights.is_file():
        pytest.skip(f"put syncnet_v2.model at {weights}")
    [row] = sync_media.prepare(shared_media, media_cache / "sync", ("retalking_face2_en.mp4",))
    frames, audio = media.read_frames(row["crop_path"]), media.read_audio(row["audio_path"])
    off, conf = SyncNetScorer(load_syncnet(weights)).score(frames[15:-15], sync_media.shift_audio(audio, 5), audio_lead_frames=15)
    assert abs(off - 5) <= 1 and conf > 3
