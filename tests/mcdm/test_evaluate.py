"""evaluate.py on real-media shards: a trained tiny checkpoint end to end, and the wiring on known inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mcdm_model import evaluate, metrics
from mcdm_model.metrics_drift import drift_curve, drift_slope


@pytest.fixture(scope="module")
def tiny_checkpoint(mcdm_shards, tmp_path_factory) -> str:
    """One optimizer step per training stage on the real-media shards: a genuine train.py checkpoint."""
    from mcdm_model import train

    out = tmp_path_factory.mktemp("run")
    models = tmp_path_factory.mktemp("nomodels")
    train.main(["--shards", str(mcdm_shards), "--steps", "1", "--out", str(out), "--models-dir", str(models),
                "--num-workers", "0"])
    return str(out / "last.pt")


def _args(shards, out, models, *extra: str) -> list[str]:
    return ["--shards", str(shards), "--out", str(out), "--models-dir", str(models), "--steps", "2",
            "--metric-size", "160", "--no-progress", *extra]  # fmt: skip


@pytest.mark.slow  # train a checkpoint, then the evaluate CLI
def test_evaluate_end_to_end_with_checkpoint(mcdm_shards, tiny_checkpoint, tmp_path):
    res = evaluate.main(_args(mcdm_shards, tmp_path / "ev", tmp_path / "nomodels", "--checkpoint", tiny_checkpoint,
                              "--clips", "8", "--bin-s", "0.64"))
    data = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert data["n_samples"] == res["n_samples"] == 2
    assert data["frames_per_sample"] == [32, 32]  # 8 clips of 4 frames
    assert data["fid"] is None and data["fid_status"].startswith("not_run")
    assert data["fvd"] is None and data["fvd_status"].startswith("not_run") and data["efid_status"].startswith("not_run")
    for s in data["samples"]:
        assert len(s["clips"]) == 8 and s["gt_face_rate"] == 1.0
        assert [b["t_start_s"] for b in s["bins"]] == [0.0, 0.64]  # 16-frame bins
        for b in s["bins"]:
            assert 0.0 < b["psnr"] < metrics.PSNR_CAP and -1.0 <= b["ssim"] < 1.0
            assert 0.0 <= b["face_rate"] <= 1.0 and b["sync_scorer"] == "energy"
            if b["face_rate"] == 0.0:  # a barely trained model draws no face: nothing face-based is scored
                assert b["landmark_dist"] is None and b["identity_sim"] is None and b["lse_c"] is None
    assert len(data["drift"]["identity_sim"]) == 2
    png = (tmp_path / "ev" / "drift.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


@pytest.mark.slow  # the evaluate pipeline over real clips
def test_ground_truth_as_generator_scores_perfectly(mcdm_shards, tmp_path, monkeypatch):
    """With a fake generator that replays the (looped) ground truth, every metric must be at its ideal value."""

    def replay(model, ref_image, audio, ref_motion=None, steps=25, seed=0, progress=True, **kw):
        f, spf = model.cfg.present_frames, model.cfg.samples_per_frame
        n = len(audio) // spf
        for s in range(0, n, f):
            yield np.stack([replay.gt[i % len(replay.gt)] for i in range(s, min(s + f, n))])

    real_iter = evaluate.iter_samples

    def capture(shards, cfg, limit):
        for clip in real_iter(shards, cfg, limit):
            replay.gt = clip["frames"]
            yield clip

    monkeypatch.setattr(evaluate, "iter_clips", replay)
    monkeypatch.setattr(evaluate, "iter_samples", capture)
    res = evaluate.main(_args(mcdm_shards, tmp_path / "ev", tmp_path / "nomodels", "--clips", "12",
                              "--bin-s", "2", "--max-samples", "1"))
    s = res["samples"][0]
    assert s["ssim"] == 1.0 and s["psnr"] == metrics.PSNR_CAP
    assert s["landmark_dist"] == 0.0
    assert s["identity_sim"] > 0.95
    assert s["face_rate"] == 1.0 and len(s["bins"]) == 1 and s["bins"][0]["lse_c"] > 0  # in sync with its audio


def test_noise_generator_gets_no_face_scores(mcdm_shards, tmp_path, monkeypatch):
    """Coloured noise: face rate 0, and no identity, landmark or lip-sync number for it (not plausible ones)."""

    def noise(model, ref_image, audio, ref_motion=None, steps=25, seed=0, progress=True, **kw):
        f, spf = model.cfg.present_frames, model.cfg.samples_per_frame
        rng = np.random.default_rng(0)
        for _ in range(0, len(audio) // spf, f):
            yield rng.integers(0, 256, (f, 64, 64, 3), dtype=np.uint8)

    monkeypatch.setattr(evaluate, "iter_clips", noise)
    res = evaluate.main(_args(mcdm_shards, tmp_path / "ev", tmp_path / "nomodels", "--clips", "12", "--bin-s", "2",
                              "--max-samples", "1"))
    s = res["samples"][0]
    assert s["face_rate"] == 0.0 and s["identity_sim"] is None and s["landmark_dist"] is None
    assert s["bins"][0]["lse_c"] is None and "face in 0%" in s["bins"][0]["sync_error"]


def test_ground_truth_is_never_looped(mcdm_shards, tmp_path, monkeypatch):
    """Asking for more than the real 75 frames generates only as much as exists, unless --loop-audio: then the
    frames past the ground truth get no ground-truth metrics (SSIM, PSNR, landmarks), only the others."""

    def grey(model, ref_image, audio, ref_motion=None, steps=25, seed=0, progress=True, **kw):
        f, spf = model.cfg.present_frames, model.cfg.samples_per_frame
        n = len(audio) // spf
        for s in range(0, n, f):
            yield np.full((min(f, n - s), 64, 64, 3), 128, np.uint8)

    monkeypatch.setattr(evaluate, "iter_clips", grey)
    base = _args(mcdm_shards, tmp_path / "ev", tmp_path / "nomodels", "--clips", "40", "--bin-s", "1.6",
                 "--max-samples", "1")
    assert evaluate.main(base)["samples"][0]["frames"] == 75
    s = evaluate.main([*base, "--loop-audio"])["samples"][0]
    assert s["frames"] == 160 and s["real_frames"] == 75
    past = [c for c in s["clips"] if c["t_start_s"] * 25 >= 76]
    assert past and all(c["ssim"] is None and c["psnr"] is None for c in past)
    assert all(c["ssim"] is not None for c in s["clips"] if c["t_start_s"] * 25 + 4 <= 75)


def test_drift_curve_and_slope_on_known_bins():
    samples = [
        {"bins": [{"t_start_s": 0.0, "identity_sim": 0.9}, {"t_start_s": 60.0, "identity_sim": 0.8},
                  {"t_start_s": 120.0, "identity_sim": 0.7}]},
        {"bins": [{"t_start_s": 0.0, "identity_sim": 0.7}, {"t_start_s": 60.0, "identity_sim": None}]},
    ]
    curve = drift_curve(samples, 60.0)
    assert curve["t_start_s"] == [0.0, 60.0, 120.0]
    assert curve["n_samples"] == [2, 2, 1]
    assert curve["identity_sim"] == pytest.approx([0.8, 0.8, 0.7])
    assert curve["landmark_dist"] == [None, None, None]
    assert drift_slope(curve, "identity_sim") == pytest.approx(-0.05)  # per minute
    assert drift_slope(curve, "landmark_dist") is None
