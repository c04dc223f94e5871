"""Metrics on known inputs from real talking-face clips (read in place from ../shared/media/video_av).

Identical videos give perfect scores, degraded copies score worse, and a clip's own audio scores higher sync than
the same audio shifted by 8 frames or another speaker's audio.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mcdm_model import metrics
from mcdm_model.metrics_face import FaceAnalyzer
from mcdm_model.metrics_fid import INCEPTION_TV, FrechetMetrics, frechet_distance
from mcdm_model.metrics_sync import SyncScorer
from pipeline.media import read_audio, read_frames

CLIPS = ("hdtf_WDA_AOC_en_8s.mp4", "hdtf_WDA_KatieHill_en_8s.mp4")  # 512x512 HDTF crops, 25 fps, in sync


@pytest.fixture(scope="module")
def clips(shared_media, have_ffmpeg) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (frames (200, 512, 512, 3) uint8, audio (128000,) float32), 8 s each."""
    out = {}
    for name in CLIPS:
        path = shared_media / "video_av" / name
        out[name] = (read_frames(path, 0.0, 8.0), read_audio(path, 0.0, 8.0))
    return out


@pytest.fixture(scope="module")
def face() -> FaceAnalyzer:
    return FaceAnalyzer()


@pytest.fixture(scope="module")
def landmarks(clips, face) -> dict[str, np.ndarray]:
    return {name: face.landmarks(fr) for name, (fr, _) in clips.items()}


def test_identical_videos_score_perfectly(clips, face, landmarks):
    fr, _ = clips[CLIPS[0]]
    short = fr[:20]
    assert metrics.ssim(short, short.copy()) == 1.0
    assert metrics.psnr(short, short.copy()) == metrics.PSNR_CAP
    lm = landmarks[CLIPS[0]][:20]
    assert np.isfinite(lm).all()
    assert metrics.nanmean(metrics.landmark_distance(lm, face.landmarks(short.copy()))) == 0.0
    emb = face.embeddings(short[:3])
    np.testing.assert_allclose(metrics.cosine(emb, emb[0])[0], 1.0, atol=1e-6)


def test_noised_and_blurred_copies_score_worse(clips):
    fr = clips[CLIPS[0]][0][:10]
    rng = np.random.default_rng(0)
    light = np.clip(fr + rng.normal(0, 5, fr.shape), 0, 255).astype(np.uint8)
    heavy = np.clip(fr + rng.normal(0, 25, fr.shape), 0, 255).astype(np.uint8)
    blurred = np.stack([cv2.GaussianBlur(f, (15, 15), 4) for f in fr])
    s_light, s_heavy, s_blur = (metrics.ssim(fr, x) for x in (light, heavy, blurred))
    p_light, p_heavy, p_blur = (metrics.psnr(fr, x) for x in (light, heavy, blurred))
    assert 1.0 > s_light > s_heavy > 0.0
    assert s_blur < 0.99
    assert metrics.PSNR_CAP > p_light > p_heavy
    assert p_blur < 40.0
    # Known value: Gaussian noise of sigma 5 (before clipping) gives PSNR close to 20*log10(255/5) = 34.2 dB.
    assert abs(p_light - 34.15) < 0.5


def test_landmark_distance_grows_with_displacement(clips, face, landmarks):
    fr = clips[CLIPS[0]][0][:10]
    ref = landmarks[CLIPS[0]][:10]
    shifted = np.stack([cv2.warpAffine(f, np.float32([[1, 0, 12], [0, 1, 0]]), (f.shape[1], f.shape[0])) for f in fr])
    d = metrics.nanmean(metrics.landmark_distance(face.landmarks(shifted), ref))
    iod = np.linalg.norm(ref[:, 36] - ref[:, 45], axis=-1).mean()
    assert d == pytest.approx(12.0 / iod, rel=0.35)  # landmarks follow the 12 px shift, normalised by the eyes


def test_identity_same_person_beats_other_person(clips, face, landmarks):
    (a, _), (b, _) = clips[CLIPS[0]], clips[CLIPS[1]]
    ref = face.embedding(a[0])
    assert ref is not None
    same = metrics.cosine(face.embeddings(a[150:153], landmarks[CLIPS[0]][150:153]), ref)
    other = metrics.cosine(face.embeddings(b[:3], landmarks[CLIPS[1]][:3]), ref)
    assert same.min() > 0.9
    assert other.max() < same.min() - 0.02


@pytest.mark.parametrize("name", CLIPS)
def test_sync_lower_for_shifted_or_foreign_audio(clips, face, landmarks, name, tmp_path):
    fr, audio = clips[name]
    other = clips[CLIPS[1 - CLIPS.index(name)]][1]
    scorer = SyncScorer(face, models_dir=str(tmp_path))  # empty models dir: the pipeline's energy scorer
    assert scorer.name == "energy"
    lm = landmarks[name]
    own = scorer.score(fr, audio, landmarks=lm)
    late = scorer.score(fr, np.concatenate([np.zeros(8 * 640, np.float32), audio])[: len(audio)], landmarks=lm)
    foreign = scorer.score(fr, other, landmarks=lm)
    assert own["sync_c"] > late["sync_c"] + 0.3
    assert own["sync_c"] > foreign["sync_c"] + 0.3
    assert own["sync_d"] < min(late["sync_d"], foreign["sync_d"])
    assert own["sync_conf"] > foreign["sync_conf"]  # the scorer's best-lag confidence: another voice is chance
    if name == CLIPS[0]:  # on this clip the weight-free scorer also finds the lags (it misses them on the other)
        assert abs(own["sync_offset"]) <= 2
        assert late["sync_offset"] - own["sync_offset"] == pytest.approx(8, abs=1)


def test_frechet_distance_known_values():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 4))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # Same covariance, mean shifted by 2 in every one of 4 dims: distance = |mu1 - mu2|^2 = 16.
    assert frechet_distance(a, a + 2.0) == pytest.approx(16.0, rel=1e-6)


def test_fid_fvd_not_run_without_weights(tmp_path, clips):
    fm = FrechetMetrics(tmp_path)
    fr = clips[CLIPS[0]][0][:16]
    fm.add(fr, fr)
    res = fm.result()
    assert res["fid"] is None and res["fvd"] is None
    assert res["fid_status"].startswith("not_run") and INCEPTION_TV in res["fid_status"]
    assert res["fvd_status"].startswith("not_run") and "i3d_torchscript.pt" in res["fvd_status"]


def test_fid_runs_with_torchvision_state_dict(tmp_path, clips):
    """The loader reads a torchvision inception_v3 state dict (random weights stand in for the real file)."""
    import torch
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    (tmp_path / "metrics").mkdir()
    net = inception_v3(weights=None, aux_logits=True, init_weights=True)
    for m in net.modules():  # calibrate BatchNorm statistics on real frames so random features stay finite
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    net.train()
    x = torch.from_numpy(np.array(clips[CLIPS[1]][0][::50])).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    with torch.no_grad():
        net(torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear"))
    torch.save(net.state_dict(), tmp_path / "metrics" / INCEPTION_TV)
    fm = FrechetMetrics(tmp_path, frame_stride=20)
    a, b = clips[CLIPS[0]][0][:60], clips[CLIPS[1]][0][:60]
    fm.add(a, a)
    same = fm.result()
    assert same["fid_status"].startswith("ran: torchvision inception_v3")
    assert same["fid"] == pytest.approx(0.0, abs=1e-3)
    fm.add(a, b)
    assert fm.result()["fid"] > same["fid"] + 1e-3


@pytest.mark.weights
def test_fid_fvd_with_real_weights(clips):
    """Needs <models_dir>/metrics/ with Inception (inception-2015-12-05.pt or the torchvision .pth) and
    i3d_torchscript.pt: identical sets give ~0, different people give a clearly larger distance."""
    from mcdm_model.config import default_models_dir

    fm = FrechetMetrics(default_models_dir(), frame_stride=4)
    if fm.nets["fid"] is None or fm.nets["fvd"] is None:
        pytest.fail(f"weights missing: {fm.status}")
    a, b = clips[CLIPS[0]][0][:64], clips[CLIPS[1]][0][:64]
    fm.add(a, a)
    same = fm.result()
    fm.add(a, b)
    mixed = fm.result()
    assert same["fid"] == pytest.approx(0.0, abs=1e-2) and same["fvd"] == pytest.approx(0.0, abs=1e-2)
    assert mixed["fid"] > 1.0 and mixed["fvd"] > 1.0
