"""MemoryTemporalAttention: shapes, the EMA memory formula, gradients, and that history enters only via memory."""

from __future__ import annotations

import pytest
import torch

from mcdm_model.modules.temporal_attention import FullTemporalAttention, MemoryTemporalAttention

B, F, N, C = 2, 5, 3, 16


@pytest.fixture
def attn() -> MemoryTemporalAttention:
    torch.manual_seed(0)
    return MemoryTemporalAttention(C, heads=4, alpha=0.1).eval()


def test_shapes_and_memory_shape(attn):
    x = torch.randn(B, F, N, C)
    out, mem = attn(x)
    assert out.shape == (B, F, N, C)
    assert mem.shape == (B, N, C)
    out2, mem2 = attn(torch.randn(B, 7, N, C), mem)  # clip lengths may differ
    assert out2.shape == (B, 7, N, C) and mem2.shape == (B, N, C)


def test_memory_update_equals_ema_recursion(attn):
    x = torch.randn(B, F, N, C)
    m0 = torch.randn(B, N, C)
    _, mem = attn(x, m0)
    expect = m0.clone()
    for f in range(F):
        expect = 0.1 * expect + 0.9 * x[:, f]
    torch.testing.assert_close(mem, expect, rtol=1e-5, atol=1e-6)
    # At the start, the memory begins from the first frame: M_1 = F_1.
    _, mem_start = attn(x)
    expect = x[:, 0].clone()
    for f in range(1, F):
        expect = 0.1 * expect + 0.9 * x[:, f]
    torch.testing.assert_close(mem_start, expect, rtol=1e-5, atol=1e-6)


def test_gradient_flows_to_input_memory_and_weights(attn):
    attn.train()
    x = torch.randn(B, F, N, C, requires_grad=True)
    m = torch.randn(B, N, C, requires_grad=True)
    out, mem = attn(x, m)
    (out.square().mean() + mem.mean()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert m.grad is not None and m.grad.abs().sum() > 0
    for name, p in attn.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_clip_depends_on_history_only_through_memory(attn):
    torch.manual_seed(1)
    clips = [torch.randn(B, F, N, C) for _ in range(3)]
    with torch.no_grad():
        mem = None
        for c in clips[:2]:
            _, mem = attn(c, mem)
        out_seq, _ = attn(clips[2], mem)
        # A fresh module state, only the memory handed over: identical output.
        out_fresh, _ = attn(clips[2], mem.clone())
        torch.testing.assert_close(out_seq, out_fresh)
        # Different history that yields a different memory changes the output ...
        _, other = attn(torch.randn(B, F, N, C))
        out_other, _ = attn(clips[2], other)
        assert (out_other - out_seq).abs().max() > 1e-4
        # ... and the memory tensor has constant size however many clips came before.
        assert mem.shape == (B, N, C)


def test_causal_within_clip(attn):
    x = torch.randn(B, F, N, C)
    y = x.clone()
    y[:, -1] += 5.0  # change only the last frame
    with torch.no_grad():
        m = torch.randn(B, N, C)
        a, _ = attn(x, m)
        b, _ = attn(y, m)
    torch.testing.assert_close(a[:, :-1], b[:, :-1])
    assert (a[:, -1] - b[:, -1]).abs().max() > 1e-3


def test_full_baseline_cache_grows_and_matches_shape():
    torch.manual_seed(0)
    full = FullTemporalAttention(C, heads=4).eval()
    cache = None
    with torch.no_grad():
        for k in range(1, 4):
            out, cache = full(torch.randn(B, F, N, C), cache)
            assert out.shape == (B, F, N, C)
            assert cache.shape == (B, k * F, N, C)


def test_window_limits_present_context():
    torch.manual_seed(0)
    win = MemoryTemporalAttention(C, heads=4, window=2).eval()
    x = torch.randn(B, F, N, C)
    y = x.clone()
    y[:, 0] += 5.0  # frame 0 is outside the window of frames >= 2
    m = torch.randn(B, N, C)
    with torch.no_grad():
        a, _ = win(x, m)
        b, _ = win(y, m)
    torch.testing.assert_close(a[:, 2:], b[:, 2:])
    assert (a[:, :2] - b[:, :2]).abs().max() > 1e-3
