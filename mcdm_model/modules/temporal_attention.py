"""Temporal attention over video frames: MCDM's memory-efficient variant and a full-history baseline.

MCDM keeps long generations consistent without attending over every frame generated so far: a per-token memory
M_f = alpha * M_{f-1} + (1 - alpha) * F_f summarises all earlier clips in one slot, and each present frame attends
along time over [memory; present frames]. Cost and memory per clip are therefore independent of how many clips came
before. `FullTemporalAttention` is the baseline that keeps every past frame in a cache (it grows linearly, and so
does attention cost), used by benchmarks/bench_memory.py to show the difference.

Both modules take x of shape (B, F, N, C): batch, frames of the present clip, tokens per frame, channels, and
return (out, state) with out = x + attention(x) (the residual is included).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _frame_position(n: int, dim: int, offset: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Sinusoidal embedding (n, dim) of frame indices offset..offset+n-1, so attention knows frame order."""
    pos = torch.arange(offset, offset + n, device=device, dtype=torch.float32)[:, None]
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=device, dtype=torch.float32) / max(half, 1))
    ang = pos * freq[None]
    emb = torch.cat([torch.sin(ang), torch.cos(ang)], dim=-1)
    if emb.shape[-1] < dim:
        emb = F.pad(emb, (0, dim - emb.shape[-1]))
    return emb.to(dtype)


class _TimeAttention(nn.Module):
    """Shared core: pre-norm, q from the present frames, k/v from a context sequence, per token along time."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.dim, self.heads = dim, heads
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_kv = nn.Linear(dim, 2 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def attend(self, x: Tensor, ctx: Tensor, mask: Tensor) -> Tensor:
        """x: (B, F, N, C) queries; ctx: (B, T, N, C) keys/values; mask: (F, T) bool, True = may attend.

        Returns the attention update only (B, F, N, C); callers add the residual."""
        b, f, n, c = x.shape
        t = ctx.shape[1]
        h, d = self.heads, c // self.heads
        q = self.to_q(x).permute(0, 2, 1, 3).reshape(b * n, f, h, d).transpose(1, 2)
        k, v = self.to_kv(ctx).permute(0, 2, 1, 3).reshape(b * n, t, 2, h, d).unbind(2)
        k, v = k.transpose(1, 2), v.transpose(1, 2)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        o = o.transpose(1, 2).reshape(b, n, f, c).permute(0, 2, 1, 3)
        return self.proj(o)


def _present_mask(f: int, window: int, device: torch.device) -> Tensor:
    """(F, F) causal mask among the present frames, optionally limited to the last `window` frames."""
    i = torch.arange(f, device=device)[:, None]
    j = torch.arange(f, device=device)[None, :]
    allowed = j <= i
    if window > 0:
        allowed &= j > i - window
    return allowed


class MemoryTemporalAttention(nn.Module):
    """MCDM memory-efficient temporal attention: one EMA memory slot per token carries all earlier clips."""

    def __init__(self, dim: int, heads: int = 4, alpha: float = 0.1, window: int = 0) -> None:
        super().__init__()
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"alpha must be in [0, 1), got {alpha}")
        self.alpha, self.window = float(alpha), int(window)
        self.core = _TimeAttention(dim, heads)
        self.memory_embed = nn.Parameter(torch.zeros(dim))  # marks the memory slot apart from present frames

    def _check(self, x: Tensor, memory: Tensor | None) -> None:
        if x.dim() != 4 or x.shape[-1] != self.core.dim:
            raise ValueError(f"x must be (B, F, N, {self.core.dim}), got {tuple(x.shape)}")
        if memory is not None and memory.shape != (x.shape[0], x.shape[2], x.shape[3]):
            raise ValueError(f"memory must be (B, N, C) = {(x.shape[0], x.shape[2], x.shape[3])}, got {tuple(memory.shape)}")

    def update_memory(self, x: Tensor, memory: Tensor | None) -> Tensor:
        """M_f = alpha*M_{f-1} + (1-alpha)*F_f over the clip's frames; with no memory yet, M_0 = F_1."""
        m = x[:, 0] if memory is None else memory
        a = self.alpha
        # Closed form of the recursion: M_F = a^F M_0 + sum_f (1-a) a^(F-f) F_f  (no Python loop over frames).
        f = x.shape[1]
        w = (1.0 - a) * a ** torch.arange(f - 1, -1, -1, device=x.device, dtype=x.dtype)
        return (a**f) * m + torch.einsum("f,bfnc->bnc", w, x)

    def forward(self, x: Tensor, memory: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x: (B, F, N, C) present-clip features (F frames, N tokens per frame).
        memory: (B, N, C) EMA state from earlier clips (None at the start).
        Returns (out (B, F, N, C), new_memory (B, N, C)). M_f = alpha*M_{f-1} + (1-alpha)*F_f over the clip's
        frames; each frame attends along time per token over [memory; present frames] (causal within the clip),
        so cost and memory are independent of how many clips came before."""
        self._check(x, memory)
        b, f, n, c = x.shape
        pos = _frame_position(f, c, 1, x.device, x.dtype)
        xq = x + pos[None, :, None, :]
        mask = _present_mask(f, self.window, x.device)
        if memory is None:
            ctx = xq
        else:
            slot = (memory + self.memory_embed).unsqueeze(1)
            ctx = torch.cat([slot, xq], dim=1)
            mask = torch.cat([torch.ones(f, 1, dtype=torch.bool, device=x.device), mask], dim=1)
        out = x + self.core.attend(self.core.norm(xq), self.core.norm(ctx), mask)
        return out, self.update_memory(x, memory)


class FullTemporalAttention(nn.Module):
    """Baseline: attends over every frame generated so far; the cache (B, T, N, C) grows by F per clip."""

    def __init__(self, dim: int, heads: int = 4, alpha: float = 0.1, window: int = 0) -> None:
        super().__init__()
        self.window = int(window)  # alpha is accepted for a drop-in call shape and unused
        self.core = _TimeAttention(dim, heads)

    def forward(self, x: Tensor, memory: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x: (B, F, N, C); memory: (B, T, N, C) all earlier frames or None. Returns (out, cache of T+F frames)."""
        b, f, n, c = x.shape
        t = 0 if memory is None else memory.shape[1]
        xq = x + _frame_position(f, c, t + 1, x.device, x.dtype)[None, :, None, :]
        ctx = xq if memory is None else torch.cat([memory, xq], dim=1)
        past = torch.ones(f, t, dtype=torch.bool, device=x.device)
        mask = torch.cat([past, _present_mask(f, self.window, x.device)], dim=1)
        out = x + self.core.attend(self.core.norm(xq), self.core.norm(ctx), mask)
        return out, ctx
