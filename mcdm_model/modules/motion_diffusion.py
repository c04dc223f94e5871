"""Present-clip motion-prior diffusion: denoise head / lip / expression tokens with a causal multimodal transformer.

Each frame contributes three tokens (head, lip, expr). The clean motion of the archived frames is a prefix, so a
clip continues the motion of the last one. Conditions (audio of the frame, reference-image features, reference
landmarks, diffusion timestep) are fused by FiLM: per frame, every block's LayerNorm output is scaled and shifted.
Attention is causal over frames (a token sees its own frame's three tokens and earlier frames only).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mcdm_model.config import ModelConfig
from mcdm_model.motion import GROUPS, MOTION_DIM


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of diffusion steps (B,) -> (B, dim)."""
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    ang = t.float()[:, None] * freq[None]
    return torch.cat([torch.sin(ang), torch.cos(ang)], dim=-1)


class FiLM(nn.Module):
    """cond (..., C) -> (1 + gamma, beta) applied to x (..., D); zero-init so it starts as identity."""

    def __init__(self, cond_dim: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(cond_dim, 2 * dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        gamma, beta = self.proj(cond).chunk(2, dim=-1)
        return x * (1 + gamma) + beta


class CausalFiLMBlock(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.n1, self.n2 = nn.LayerNorm(dim, elementwise_affine=False), nn.LayerNorm(dim, elementwise_affine=False)
        self.f1, self.f2 = FiLM(dim, dim), FiLM(dim, dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: Tensor, cond: Tensor, mask: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.f1(self.n1(x), cond)).view(b, n, 3, self.heads, d // self.heads).unbind(2)
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask)
        x = x + self.out(o.transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.f2(self.n2(x), cond))


class MotionPriorDiffusion(nn.Module):
    """eps-prediction for present-clip motion (B, F, 105) given prefix motion (B, A, 105) and conditions."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.motion_dim
        self.dim = d
        self.inp = nn.ModuleList(nn.Linear(s.stop - s.start, d) for _, s in GROUPS)
        self.outp = nn.ModuleList(nn.Linear(d, s.stop - s.start) for _, s in GROUPS)
        for m in self.outp:
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)
        self.type_emb = nn.Parameter(torch.randn(3, d) * 0.02)
        self.frame_pos = nn.Linear(d, d)  # of a sinusoidal frame index: clips of any length
        self.t_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.audio_mlp = nn.Sequential(nn.Linear(cfg.audio_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.ref_img = nn.Sequential(  # reference latent -> global appearance vector
            nn.Conv2d(cfg.latent_channels, d, 3, padding=1), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(d, d),
        )  # fmt: skip
        self.ref_lmk = nn.Sequential(nn.Linear(MOTION_DIM, d), nn.SiLU(), nn.Linear(d, d))
        self.clean_emb = nn.Parameter(torch.zeros(d))  # replaces the timestep for the clean prefix frames
        self.blocks = nn.ModuleList(CausalFiLMBlock(d, cfg.heads) for _ in range(cfg.motion_layers))
        self.norm = nn.LayerNorm(d)

    def _embed(self, m: Tensor) -> Tensor:
        """(B, T, 105) -> (B, T, 3, d)."""
        toks = [lin(m[..., s]) for lin, (_, s) in zip(self.inp, GROUPS, strict=True)]
        return torch.stack(toks, dim=2) + self.type_emb

    def forward(self, x_t: Tensor, t: Tensor, prefix: Tensor, audio: Tensor, ref_latent: Tensor,
                ref_motion: Tensor) -> Tensor:
        """x_t (B,F,105) noisy motion, t (B,), prefix (B,A,105) clean, audio (B,F,Da), ref_latent (B,C,h,w),
        ref_motion (B,105) -> predicted noise (B,F,105)."""
        b, f, _ = x_t.shape
        a = prefix.shape[1]
        idx = torch.arange(a + f, device=x_t.device)
        seq = self._embed(torch.cat([prefix, x_t], dim=1)) + self.frame_pos(timestep_embedding(idx, self.dim))[:, None]
        base = self.ref_img(ref_latent) + self.ref_lmk(ref_motion)  # (B, d)
        temb = self.t_mlp(timestep_embedding(t, self.dim))
        cond_pre = (base + self.clean_emb)[:, None].expand(b, a, self.dim)
        cond_now = (base + temb)[:, None] + self.audio_mlp(audio)
        cond = torch.cat([cond_pre, cond_now], dim=1)[:, :, None].expand(b, a + f, 3, self.dim)
        frame = torch.arange(a + f, device=x_t.device).repeat_interleave(3)
        mask = frame[None, :] <= frame[:, None]  # causal over frames, full within a frame
        x, c = seq.reshape(b, (a + f) * 3, self.dim), cond.reshape(b, (a + f) * 3, self.dim)
        for blk in self.blocks:
            x = blk(x, c, mask)
        x = self.norm(x).view(b, a + f, 3, self.dim)[:, a:]
        return torch.cat([lin(x[:, :, i]) for i, lin in enumerate(self.outp)], dim=-1)
