"""python -m mcdm_model.train on real-media shards: overfitting, exact resume, stages, checkpoints, CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mcdm_model import train
from mcdm_model.config import TrainConfig, model_config
from mcdm_model.data import make_loader, to_model
from mcdm_model.model import MCDM


def _run(shards: Path, out: Path, models_dir: str, *extra: str) -> dict:
    return train.main(["--shards", str(shards), "--out", str(out), "--models-dir", models_dir, "--log-every", "5",
                       "--num-workers", "0", *extra])


def _fixed_loss(model: MCDM, batch: dict, stage: str, key: str = "loss") -> float:
    """Mean loss over 4 fixed (t, noise) draws on a fixed batch, no condition dropout: comparable across models."""
    g = torch.Generator().manual_seed(123)
    model.eval()
    with torch.no_grad():
        return sum(float(model.loss(batch, stage, g)[key]) for _ in range(4)) / 4


@pytest.mark.slow  # training to convergence on a tiny clip
@pytest.mark.parametrize(("stage", "steps", "factor"), [("1", 40, 2.0), ("2", 120, 3.0)])
def test_overfits_tiny_clip(mcdm_tiny_shard: Path, tmp_path: Path, no_models_dir: str, stage: str, steps: int,
                            factor: float) -> None:
    cfg = model_config("MCDM-T", models_dir=no_models_dir)
    tc = TrainConfig(batch_size=4, seed=99, num_workers=0)
    batch = to_model(next(iter(make_loader(mcdm_tiny_shard, cfg, tc))), "cpu")
    torch.manual_seed(0)  # train.main initialises with the same seed: this is its starting point
    before = _fixed_loss(MCDM(cfg), batch, stage)
    result = _run(mcdm_tiny_shard, tmp_path / "run", no_models_dir, "--stage", stage, "--steps", str(steps),
                  "--lr", "3e-3", "--batch-size", "2")
    after = _fixed_loss(MCDM.load_checkpoint(tmp_path / "run" / "last.pt", ema=False), batch, stage)
    assert after * factor < before, f"stage {stage}: loss {before:.3f} -> {after:.3f}, expected {factor}x lower"
    assert len(result["history"]) == steps and result["step"] == steps


def test_resume_continues_identically(mcdm_shards: Path, tmp_path: Path, no_models_dir: str) -> None:
    """2 steps + 2 resumed steps = 4 straight steps, bit for bit; the resumed run reads its data from the saved
    batch on (the loader is positioned, nothing before it is decoded: tests/mcdm/test_data.py)."""
    common = ("--stage", "3", "--batch-size", "2", "--seed", "7", "--ckpt-every", "2")
    full = _run(mcdm_shards, tmp_path / "full", no_models_dir, "--steps", "4", *common)
    _run(mcdm_shards, tmp_path / "half", no_models_dir, "--steps", "2", *common)
    resumed = _run(mcdm_shards, tmp_path / "half", no_models_dir, "--steps", "4", "--resume", *common)
    assert [h[1] for h in resumed["history"]] == [3, 4]
    assert [h[2] for h in resumed["history"]] == [h[2] for h in full["history"][2:]]
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "half" / "last.pt", weights_only=False)
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs after resume"
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert (tmp_path / "half" / "ckpt-s3-0000002.pt").exists() and a["stage_step"] == b["stage_step"] == 4
    assert a["data_batch"] == 4 and "models_dir" not in a["model_config"]


def test_checkpoint_round_trip_is_exact(mcdm_tiny_shard: Path, tmp_path: Path, no_models_dir: str) -> None:
    _run(mcdm_tiny_shard, tmp_path / "r", no_models_dir, "--stage", "2", "--steps", "3")
    ckpt = torch.load(tmp_path / "r" / "last.pt", weights_only=False)
    for ema in (True, False):
        model = MCDM.load_checkpoint(tmp_path / "r" / "last.pt", ema=ema)
        ref = ckpt["ema" if ema else "model"]
        assert all(torch.equal(v, ref[k]) for k, v in model.state_dict().items())
    assert not all(torch.equal(ckpt["ema"][k], ckpt["model"][k]) for k in ckpt["model"])  # EMA lags the weights
    assert ckpt["model_config"]["image_size"] == 64 and ckpt["size"] == "MCDM-T"
    assert ckpt["model_config"]["vae_config"] is None  # scratch VAE recorded: rebuilt from its own fields
    assert "models_dir" not in ckpt["model_config"]  # portable: no machine path inside


def test_yaml_config_overrides(mcdm_tiny_shard: Path, tmp_path: Path, no_models_dir: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  image_size: 32\n  present_frames: 3\ntrain:\n  lr: 0.01\n  steps: 2\n")
    result = _run(mcdm_tiny_shard, tmp_path / "y", no_models_dir, "--config", str(cfg), "--stage", "1")
    ckpt = torch.load(tmp_path / "y" / "last.pt", weights_only=False)
    assert ckpt["model_config"]["image_size"] == 32 and ckpt["model_config"]["present_frames"] == 3
    assert ckpt["train_config"]["lr"] == 0.01 and result["step"] == 2
    assert MCDM.load_checkpoint(tmp_path / "y" / "last.pt").vae.encode(torch.zeros(1, 3, 32, 32)).shape[-1] == 4
    cfg.write_text("model:\n  image_sise: 32\n")
    with pytest.raises(ValueError, match="unknown setting 'image_sise'"):
        _run(mcdm_tiny_shard, tmp_path / "y", no_models_dir, "--config", str(cfg))


def test_all_stages_train_only_their_parts(mcdm_tiny_shard: Path, tmp_path: Path, no_models_dir: str) -> None:
    torch.manual_seed(0)
    init = MCDM(model_config("MCDM-T", models_dir=no_models_dir)).state_dict()
    _run(mcdm_tiny_shard, tmp_path / "s1", no_models_dir, "--stage", "1", "--steps", "2")
    s1 = torch.load(tmp_path / "s1" / "last.pt", weights_only=False)["model"]
    changed = {k for k in init if not torch.equal(init[k], s1[k])}
    assert any(k.startswith("denoiser.unet.down_blocks") for k in changed) and any(k.startswith("vae.") for k in changed)
    assert any("to_k_arch" in k for k in changed) and any(k.startswith("image_encoder.") for k in changed)
    assert not any("_motion" in k or "temporal" in k or k.startswith("motion_prior") for k in changed)
    result = _run(mcdm_tiny_shard, tmp_path / "s1", no_models_dir, "--stage", "all", "--steps", "2", "--resume")
    assert [(h[0], h[1]) for h in result["history"]] == [("2", 1), ("2", 2), ("3", 1), ("3", 2)]
    s3 = torch.load(tmp_path / "s1" / "last.pt", weights_only=False)["model"]
    changed3 = {k for k in s1 if not torch.equal(s1[k], s3[k])}
    assert any(k.startswith("motion_prior") for k in changed3)
    assert any("temporal" in k for k in changed3) and any("to_v_motion" in k for k in changed3)
    sd_keys = [k for k in changed3 if k.startswith("denoiser.") and ".processor." not in k]
    assert not sd_keys and not any(k.startswith(("vae.", "archived_prior", "image_encoder")) for k in changed3)
    assert list((tmp_path / "s1" / "tb").glob("events.out.tfevents.*"))
    assert (tmp_path / "s1" / "config.yaml").read_text().startswith("model:")


def test_cli_help_and_errors(tmp_path: Path, no_models_dir: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:  # the same parser `python -m mcdm_model.train --help` prints
        train.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for opt in ("--shards", "--size", "--stage", "--steps", "--batch-size", "--out", "--resume", "--bf16",
                "--device", "MCDM-B", "torchrun", "python -m mcdm_model.train"):
        assert opt in text
    with pytest.raises(FileNotFoundError, match="no .tar shards"):
        _run(tmp_path, tmp_path / "o", no_models_dir, "--steps", "1")
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="bf16"):
            _run(tmp_path, tmp_path / "o", no_models_dir, "--bf16")
    with pytest.raises(FileNotFoundError, match="last.pt"):
        _run(tmp_path, tmp_path / "none", no_models_dir, "--resume")


@pytest.mark.gpu
def test_bf16_on_gpu(mcdm_tiny_shard: Path, tmp_path: Path, no_models_dir: str) -> None:
    result = _run(mcdm_tiny_shard, tmp_path / "g", no_models_dir, "--stage", "1", "--steps", "3", "--bf16",
                  "--device", "cuda")
    assert all(torch.isfinite(torch.tensor(h[2])) for h in result["history"])
