"""The long-video claims, each with a test that fails when the claim is broken (benchmarks/check_mutations.py
applies each break to a copy of the code and shows the matching test failing):

1. generation carries the temporal memory from clip to clip (in MCDM.generate_clip and in iter_clips);
2. frame-aligned attention takes its keys from the reference (values and queries from the historical frame);
3. generation conditions the frames on the motion it sampled;
4. generation conditions on the archived frames (given ones, or the last generated ones from the memory).
The zero-initialised attention paths are given random values, so every path carries signal.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import mcdm_model.model as model_mod
from mcdm_model import generate
from mcdm_model.config import model_config
from mcdm_model.model import MCDM, ClipMemory
from mcdm_model.modules.archived_prior import FrameAlignedAttention
from mcdm_model.motion import MOTION_DIM


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> MCDM:
    torch.manual_seed(0)
    m = MCDM(model_config("MCDM-T", models_dir=str(tmp_path_factory.mktemp("nomodels")))).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in m.parameters():
            if p.abs().sum() == 0:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return m


def _ref(model: MCDM, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return model.encode_reference(torch.rand(1, 3, 64, 64, generator=g) * 2 - 1, torch.randn(1, MOTION_DIM, generator=g))


def _audio(seed: int, frames: int = 4) -> torch.Tensor:
    return torch.randn(1, frames * 640, generator=torch.Generator().manual_seed(seed)) * 0.1


def _gen(model: MCDM, ref, archived=None, memory=None, audio_seed: int = 5, seed: int = 0):
    return model.generate_clip(ref, archived, _audio(audio_seed), memory, steps=2,
                               generator=torch.Generator().manual_seed(seed))


def _differ(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool((a - b).abs().max() > 1e-4)


def test_generation_carries_the_memory(model: MCDM) -> None:
    ref = _ref(model)
    _, mem1 = _gen(model, ref)
    assert mem1.temporal and all(m is not None for m in mem1.temporal)
    with_mem, mem2 = _gen(model, ref, memory=mem1, seed=1)
    no_temporal = ClipMemory(None, mem1.archived, mem1.motion)  # the same clip without the temporal memory
    without, _ = _gen(model, ref, memory=no_temporal, seed=1)
    assert _differ(with_mem, without)  # the memory of earlier clips shapes the present clip
    assert any(_differ(a, b) for a, b in zip(mem1.temporal, mem2.temporal, strict=True))  # and is updated


def test_iter_clips_carries_the_memory_between_clips(model: MCDM) -> None:
    """iter_clips' clips equal a manual generate_clip chain that passes each memory on."""
    img = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    audio = np.random.default_rng(1).normal(0, 0.1, 3 * 4 * 640).astype(np.float32)
    clips = list(generate.iter_clips(model, img, audio, steps=2, seed=7, progress=False))
    ref = model.encode_reference(torch.from_numpy(img).permute(2, 0, 1)[None].float().div(127.5).sub(1))
    g, mem, manual = torch.Generator().manual_seed(7), None, []
    for i in range(3):
        chunk = torch.from_numpy(audio[i * 2560 : (i + 1) * 2560])[None]
        frames, mem = model.generate_clip(ref, None, chunk, mem, steps=2, generator=g)
        manual.append(generate.to_uint8(frames[0]))
    np.testing.assert_array_equal(np.concatenate(clips), np.concatenate(manual))
    g, fresh = torch.Generator().manual_seed(7), []
    for i in range(3):  # the same clips, each started without memory: the third one must differ
        chunk = torch.from_numpy(audio[i * 2560 : (i + 1) * 2560])[None]
        fresh.append(generate.to_uint8(model.generate_clip(ref, None, chunk, None, steps=2, generator=g)[0][0]))
    assert np.abs(fresh[2].astype(int) - clips[2]).max() > 0


def test_frame_aligned_attention_takes_keys_from_the_reference() -> None:
    torch.manual_seed(0)
    fa = FrameAlignedAttention(16, 2).eval()
    ref, hist = torch.randn(1, 6, 16), torch.randn(1, 3, 6, 16)
    out = fa(ref, hist)
    # softmax(Q_hist K_ref^T / sqrt(d)) V_hist per head, by hand from the module's own projections
    w, bias = fa.attn.in_proj_weight, fa.attn.in_proj_bias
    q = fa.norm_q(hist) @ w[:16].T + bias[:16]
    k = fa.norm_k(ref)[:, None] @ w[16:32].T + bias[16:32]
    v = hist @ w[32:].T + bias[32:]
    heads = lambda x: x.unflatten(-1, (2, 8)).transpose(-2, -3)  # noqa: E731
    att = torch.softmax(heads(q) @ heads(k).transpose(-1, -2) / math.sqrt(8), -1) @ heads(v)
    expect = hist + fa.attn.out_proj(att.transpose(-2, -3).flatten(-2))
    torch.testing.assert_close(out, expect, atol=1e-5, rtol=1e-4)
    assert _differ(fa(ref + torch.randn_like(ref), hist), out)  # another reference, other keys


def test_generation_uses_the_sampled_motion(model: MCDM, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the motion sampler's result fixed, two different sampled motions give two different clips (same
    image noise), and the memory's motion prefix is the sampled motion's tail."""
    real = model_mod.sample
    forced: dict[str, torch.Tensor] = {}

    def fake(schedule, fn, shape, *args, **kw):
        return forced["m"] if shape[-1] == MOTION_DIM else real(schedule, fn, shape, *args, **kw)

    monkeypatch.setattr(model_mod, "sample", fake)
    ref = _ref(model)
    outs = []
    for s in (1, 2):
        forced["m"] = torch.randn(1, 4, MOTION_DIM, generator=torch.Generator().manual_seed(s))
        frames, mem = _gen(model, ref)
        torch.testing.assert_close(mem.motion, forced["m"][:, -model.cfg.archived_frames :])
        outs.append(frames)
    assert _differ(outs[0], outs[1])


def test_generation_uses_the_archived_frames(model: MCDM) -> None:
    ref = _ref(model)
    g = torch.Generator().manual_seed(3)
    x, y = (torch.rand(1, 2, 3, 64, 64, generator=g) * 2 - 1 for _ in range(2))
    assert _differ(_gen(model, ref, archived=x)[0], _gen(model, ref, archived=y)[0])  # frames given
    _, mem = _gen(model, ref)
    other = ClipMemory(mem.temporal, mem.archived.flip(-1) + 0.5, mem.motion)
    assert _differ(_gen(model, ref, memory=mem)[0], _gen(model, ref, memory=other)[0])  # last generated frames
