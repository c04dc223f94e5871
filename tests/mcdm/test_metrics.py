"""Metrics on known inputs from real talking-face clips (read in place from ../shared/media/video_av).

Identical videos give perfect scores, degraded copies score worse; a clip's own audio scores a higher LSE-C than
another speaker's audio, and audio shifted by 8 frames moves the best offset (LSE-C/D are taken at the best offset,
so the shift itself does not lower them). tests/mcdm/test_metric_ordering.py ranks noise / grey / other / truth.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mcdm_model import metrics
from mcdm_model.metrics_face import FaceAnalyzer
from mcdm_model.metrics_fid import PYTORCH_FID, FrechetMetrics, frechet_distance
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
def test_lse_lower_for_foreign_audio_and_offset_follows_a_shift(clips, face, landmarks, name, tmp_path):
    fr, audio = clips[name]
    other = clips[CLIPS[1 - CLIPS.index(name)]][1]
    scorer = SyncScorer(face, models_dir=str(tmp_path))  # empty models dir: the pipeline's energy scorer
    assert scorer.name == "energy"
    lm = landmarks[name]
    own = scorer.score(fr, audio, landmarks=lm)
    late = scorer.score(fr, np.concatenate([np.zeros(8 * 640, np.float32), audio])[: len(audio)], landmarks=lm)
    foreign = scorer.score(fr, other, landmarks=lm)
    vals = {k: (own[k], late[k], foreign[k]) for k in ("lse_c", "lse_d", "sync_offset", "sync_conf")}
    assert own["lse_c"] > foreign["lse_c"] and own["lse_d"] < foreign["lse_d"], vals
    assert own["sync_conf"] > foreign["sync_conf"], vals  # the scorer's own best-lag confidence: another voice is chance
    if name == CLIPS[0]:  # on this clip the weight-free scorer finds the lags (it misses them on the other)
        assert late["sync_offset"] - own["sync_offset"] == pytest.approx(8, abs=1)  # the best offset follows


def test_lse_is_taken_at_the_best_offset():
    """SyncNet's definitions on a distance curve (LSE-D = min, LSE-C = median - min) and on a correlation curve."""
    from mcdm_model.metrics_sync import lse_scores

    lags = np.arange(-3, 4)
    dist = np.array([9.0, 8.0, 7.0, 8.5, 6.0, 9.0, 9.5])
    assert lse_scores(lags, dist, True) == {"lse_c": 8.5 - 6.0, "lse_d": 6.0, "sync_offset": 1}
    corr = np.array([0.1, 0.0, 0.2, 0.1, 0.5, 0.3, np.nan])
    out = lse_scores(lags, corr, False)
    sd = np.std(corr[:-1])
    assert out["sync_offset"] == 1 and out["lse_c"] == pytest.approx((0.5 - 0.15) / sd) and out["lse_d"] == pytest.approx(0.5)
    assert lse_scores(lags, corr, False, conf=2.5)["lse_c"] == 2.5  # the scorer's own confidence when it has one
    assert lse_scores(lags, np.full(7, np.nan), False)["lse_c"] is None


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
    assert res["fid"] is None and res["fvd"] is None and res["efid"] is None
    assert res["fid_status"].startswith("not_run") and PYTORCH_FID in res["fid_status"]
    assert res["fvd_status"].startswith("not_run") and "i3d_torchscript.pt" in res["fvd_status"]
    assert res["efid_status"].startswith("not_run")


def _fid_inception_random(frames: np.ndarray):
    """pytorch-fid's FID Inception architecture (as its fid_inception_v3 builds it) with random weights whose
    BatchNorm statistics are calibrated on real frames, standing in for the real weights file."""
    import torch
    from pytorch_fid import inception as pfi
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    net = inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=True)
    for name, cls, args in (("Mixed_5b", pfi.FIDInceptionA, (192, 32)), ("Mixed_5c", pfi.FIDInceptionA, (256, 64)),
                            ("Mixed_5d", pfi.FIDInceptionA, (288, 64)), ("Mixed_6b", pfi.FIDInceptionC, (768, 128)),
                            ("Mixed_6c", pfi.FIDInceptionC, (768, 160)), ("Mixed_6d", pfi.FIDInceptionC, (768, 160)),
                            ("Mixed_6e", pfi.FIDInceptionC, (768, 192)), ("Mixed_7b", pfi.FIDInceptionE_1, (1280,)),
                            ("Mixed_7c", pfi.FIDInceptionE_2, (2048,))):
        setattr(net, name, cls(*args))
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    net.train()
    x = torch.from_numpy(np.array(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    with torch.no_grad():
        net(torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear"))
    return net.state_dict()


def test_fid_runs_with_pytorch_fid_weights_file(tmp_path, clips):
    """The loader reads pytorch-fid's weights file from <models_dir>/metrics/ into pytorch-fid's own InceptionV3
    (random weights in the real file's layout stand in for the TF-ported ones)."""
    import torch

    (tmp_path / "metrics").mkdir()
    torch.save(_fid_inception_random(clips[CLIPS[1]][0][::50]), tmp_path / "metrics" / PYTORCH_FID)
    fm = FrechetMetrics(tmp_path, frame_stride=20)
    a, b = clips[CLIPS[0]][0][:60], clips[CLIPS[1]][0][:60]
    fm.add(a, a)
    same = fm.result()
    assert same["fid_status"].startswith("ran: pytorch-fid InceptionV3")
    assert same["fid"] == pytest.approx(0.0, abs=1e-3)
    fm.add(a, b)
    assert fm.result()["fid"] > same["fid"] + 1e-3


@pytest.mark.weights
def test_fid_fvd_with_real_weights(clips):
    """Needs <models_dir>/metrics/ with pytorch-fid's pt_inception-2015-12-05-6726825d.pth and
    i3d_torchscript.pt: identical sets give ~0; noise > grey > another person > the truth itself."""
    from mcdm_model.config import default_models_dir

    fm = FrechetMetrics(default_models_dir(), frame_stride=4)
    if fm.nets["fid"] is None or fm.nets["fvd"] is None:
        pytest.fail(f"weights missing: {fm.status}")
    a, b = clips[CLIPS[0]][0][:64], clips[CLIPS[1]][0][:64]
    cands = {"noise": np.random.default_rng(0).integers(0, 256, a.shape, dtype=np.uint8),
             "grey": np.full_like(a, 128), "other": b, "truth": a}
    res = {}
    for name, video in cands.items():
        fm = FrechetMetrics(default_models_dir(), frame_stride=4)
        fm.add(video, a)
        res[name] = fm.result()
    for key in ("fid", "fvd"):
        d = [res[c][key] for c in ("noise", "grey", "other", "truth")]
        assert d[0] > d[1] > d[2] > d[3] and d[3] == pytest.approx(0.0, abs=1e-2), (key, d)


def test_arcface_pack_is_used_when_present(tmp_path, clips, face):
    """With <models_dir>/insightface/buffalo_l/w600k_r50.onnx, identity comes from that ONNX net on the 5-point
    112² ArcFace alignment (a small net exported here in the pack's input/output layout stands in for it): 512-D
    embeddings, and a face moved by 10 px in the frame gives the same embedding because the crop is aligned."""
    import torch

    from mcdm_model.metrics_face import ARCFACE

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 8, stride=8), torch.nn.Flatten(), torch.nn.Linear(8 * 14 * 14, 512))
    (tmp_path / ARCFACE).parent.mkdir(parents=True)
    torch.onnx.export(net, torch.zeros(1, 3, 112, 112), str(tmp_path / ARCFACE), dynamo=False, input_names=["input.1"])
    arc = FaceAnalyzer(models_dir=tmp_path)
    assert arc.identity_model.startswith("arcface") and face.identity_model.startswith("dlib")
    fr = clips[CLIPS[0]][0][:1]
    moved = np.stack([cv2.warpAffine(f, np.float32([[1, 0, 10], [0, 1, 0]]), (f.shape[1], f.shape[0])) for f in fr])
    e, e_moved = arc.embeddings(fr), arc.embeddings(moved)
    other = arc.embeddings(clips[CLIPS[1]][0][:1])
    assert e.shape == (1, 512) and np.isfinite(e).all()
    assert metrics.cosine(e_moved, e[0])[0] > 0.99 > metrics.cosine(other, e[0])[0]
    assert np.isnan(arc.embeddings(np.full_like(fr, 128))).all()  # no face, no embedding
