"""Training matches generation: one t per clip, the stage-3 memory built exactly as generation builds it (over the
earlier clips of the chain, with motion), condition dropout, classifier-free guidance, gradient checkpointing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import mcdm_model.model as model_mod
from mcdm_model.config import TrainConfig, model_config
from mcdm_model.data import make_loader, to_model
from mcdm_model.model import MCDM
from mcdm_model.modules.mcdm_attention import MCDMContext
from tests.helpers.torch_init import randomize_zero_params


@pytest.fixture(scope="module")
def setup(mcdm_shards: Path, tmp_path_factory) -> tuple[MCDM, dict]:
    models = tmp_path_factory.mktemp("nomodels")
    cfg = model_config("MCDM-T", models_dir=str(models))
    torch.manual_seed(0)
    model = MCDM(cfg).eval()
    randomize_zero_params(model)
    batch = to_model(next(iter(make_loader(mcdm_shards, cfg, TrainConfig(batch_size=2, seed=1, num_workers=0)))), "cpu")
    return model, batch


def _capture_denoiser(model: MCDM, monkeypatch: pytest.MonkeyPatch) -> list[tuple[torch.Tensor, MCDMContext]]:
    calls: list = []
    real = model.denoiser.forward

    def spy(x, t, ref, ref_tokens, ctx):
        calls.append((t.clone(), ctx, None if ctx.memory_in is None else [m.clone() for m in ctx.memory_in]))
        return real(x, t, ref, ref_tokens, ctx)

    monkeypatch.setattr(model.denoiser, "forward", spy)
    return calls


def test_one_timestep_per_clip(setup, monkeypatch: pytest.MonkeyPatch) -> None:
    model, batch = setup
    calls = _capture_denoiser(model, monkeypatch)
    with torch.no_grad():
        model.loss(batch, "1", torch.Generator().manual_seed(3))
    t = calls[-1][0].view(2, model.cfg.present_frames)
    assert (t == t[:, :1]).all()  # every frame of a clip at the same noise level, as the sampler does
    assert t[0, 0] != t[1, 0]  # each clip draws its own


def test_stage3_memory_is_the_generation_memory(setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """Generation of the chain's first clip (its samplers forced to return the ground-truth latents and motion)
    leaves exactly the memory that training feeds to the second clip's denoiser."""
    model, batch = setup
    f, a = model.cfg.present_frames, model.cfg.archived_frames
    i = 0
    z_gt = model._latents(batch["present"][i : i + 1, :f])
    forced = iter([batch["motion"][i : i + 1, :f], z_gt.flatten(0, 1)])
    monkeypatch.setattr(model_mod, "sample", lambda *args, **kw: next(forced))
    ref = model.encode_reference(batch["ref"][i : i + 1], batch["motion_ref"][i : i + 1])
    _, mem = model.generate_clip(ref, batch["archived"][i : i + 1], batch["audio"][i : i + 1, : f * 640])
    calls = _capture_denoiser(model, monkeypatch)
    with torch.no_grad():
        model.loss({k: v[i : i + 1] if torch.is_tensor(v) else v for k, v in batch.items()}, "3",
                   torch.Generator().manual_seed(0))
    t, ctx, used = calls[-1]  # the loss call on the last clip
    assert t.max() > 0 and used is not None and ctx.motion is not None
    assert len(used) == len(mem.temporal)
    for m_train, m_gen in zip(used, mem.temporal, strict=True):
        torch.testing.assert_close(m_train, m_gen, atol=1e-5, rtol=1e-4)
    assert a and ctx.archived is not None


def test_condition_dropout_in_training(setup) -> None:
    """cond_drop = 1: the loss no longer depends on the present clip's audio (the reference image and motion are
    dropped with it; the history, archived tokens and memory, is kept as in guided generation); cond_drop = 0:
    it does."""
    model, batch = setup
    n = model.cfg.present_frames * 640
    audio = batch["audio"].clone()
    audio[:, -n:] = audio.flip(0)[:, -n:]
    other = {**batch, "audio": audio}
    model.train()
    try:
        for p, same in ((1.0, True), (0.0, False)):
            model.cfg.cond_drop = p
            with torch.no_grad():
                losses = [float(model.loss(b, "3", torch.Generator().manual_seed(9))["loss"]) for b in (batch, other)]
            assert (losses[0] == losses[1]) == same, (p, losses)
    finally:
        model.cfg.cond_drop = 0.1
        model.eval()


def test_guidance_zero_ignores_audio_and_guidance_changes_output(setup) -> None:
    model, batch = setup
    f = model.cfg.present_frames
    ref = model.encode_reference(batch["ref"][:1], batch["motion_ref"][:1])
    speech, other = batch["audio"][:1, : f * 640], batch["audio"][1:, : f * 640]

    def gen(audio: torch.Tensor, g: float) -> torch.Tensor:
        return model.generate_clip(ref, None, audio, steps=2, guidance=g, generator=torch.Generator().manual_seed(0))[0]

    torch.testing.assert_close(gen(speech, 0.0), gen(other, 0.0))  # unconditional branch: audio dropped
    assert (gen(speech, 1.0) - gen(other, 1.0)).abs().max() > 1e-4
    assert (gen(speech, 3.0) - gen(speech, 1.0)).abs().max() > 1e-4


def test_gradient_checkpointing_gives_the_same_gradients(setup) -> None:
    model, batch = setup
    grads = []
    for on in (False, True):
        model.zero_grad()
        if on:
            model.denoiser.unet.enable_gradient_checkpointing()
        model.loss(batch, "3", torch.Generator().manual_seed(4))["loss"].backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    model.denoiser.unet.disable_gradient_checkpointing()
    model.zero_grad()
    assert grads[0].keys() == grads[1].keys() and any("temporal" in k for k in grads[0])
    for k in grads[0]:
        torch.testing.assert_close(grads[0][k], grads[1][k], atol=1e-6, rtol=1e-4)
