"""Denoiser: a UNet-lite over video latents whose blocks carry MCDM's four attentions.

Every attention level has: spatial self-attention; cross-attention to the archived-clip tokens (identity and
recent appearance); cross-attention to the present clip's per-frame motion tokens (head/lip/expr + audio); and the
memory-efficient temporal attention along time per token. The noisy latent is concatenated with the reference
latent on channels. The present-clip cross-attention and the temporal attention start as identities (zero output
projections), so stage 1 trains the image path alone and stage 3 switches them on without a jump.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mcdm_model.config import ModelConfig
from mcdm_model.modules.motion_diffusion import timestep_embedding
from mcdm_model.modules.temporal_attention import MemoryTemporalAttention


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, tdim: int, groups: int) -> None:
        super().__init__()
        self.n1, self.c1 = nn.GroupNorm(min(groups, cin), cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.t = nn.Linear(tdim, cout)
        self.n2, self.c2 = nn.GroupNorm(min(groups, cout), cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = self.c1(F.silu(self.n1(x))) + self.t(temb)[:, :, None, None]
        return self.skip(x) + self.c2(F.silu(self.n2(h)))


class MCDMBlock(nn.Module):
    """Self-attn, cross-attn (archived), cross-attn (present motion), memory temporal attn, feed-forward."""

    def __init__(self, ch: int, cfg: ModelConfig) -> None:
        super().__init__()
        h, d = cfg.heads, cfg.token_dim
        self.norms = nn.ModuleList(nn.LayerNorm(ch) for _ in range(4))
        self.self_attn = nn.MultiheadAttention(ch, h, batch_first=True)
        self.arch_attn = nn.MultiheadAttention(ch, h, kdim=d, vdim=d, batch_first=True)
        self.motion_attn = nn.MultiheadAttention(ch, h, kdim=d, vdim=d, batch_first=True)
        nn.init.zeros_(self.motion_attn.out_proj.weight)
        nn.init.zeros_(self.motion_attn.out_proj.bias)
        self.temporal = MemoryTemporalAttention(ch, h, alpha=cfg.temporal_alpha, window=cfg.temporal_window)
        nn.init.zeros_(self.temporal.core.proj.weight)
        nn.init.zeros_(self.temporal.core.proj.bias)
        self.ff = nn.Sequential(nn.Linear(ch, 4 * ch), nn.GELU(), nn.Linear(4 * ch, ch))

    def forward(self, x: Tensor, frames: int, archived: Tensor, motion: Tensor | None,
                memory: Tensor | None, temporal: bool) -> tuple[Tensor, Tensor | None]:
        bf, c, hh, ww = x.shape
        s = x.flatten(2).transpose(1, 2)  # (B*F, N, C)
        n = self.norms[0](s)
        s = s + self.self_attn(n, n, n, need_weights=False)[0]
        s = s + self.arch_attn(self.norms[1](s), archived, archived, need_weights=False)[0]
        if motion is not None:
            s = s + self.motion_attn(self.norms[2](s), motion, motion, need_weights=False)[0]
        new_memory = None
        if temporal:
            v, new_memory = self.temporal(s.unflatten(0, (bf // frames, frames)), memory)
            s = v.flatten(0, 1)
        s = s + self.ff(self.norms[3](s))
        return s.transpose(1, 2).reshape(bf, c, hh, ww), new_memory


class Denoiser(nn.Module):
    """eps(x_t, t | ref latent, archived tokens, motion tokens, temporal memory) over (B*F, C, h, w) latents."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        chs, g = list(cfg.unet_channels), cfg.unet_groups
        self.tdim = tdim = 4 * chs[0]
        self.t_mlp = nn.Sequential(nn.Linear(chs[0], tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        self.conv_in = nn.Conv2d(2 * cfg.latent_channels, chs[0], 3, padding=1)
        self.down_res, self.down_attn, self.downs = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        prev = chs[0]
        for i, ch in enumerate(chs):
            self.down_res.append(ResBlock(prev, ch, tdim, g))
            self.down_attn.append(MCDMBlock(ch, cfg) if cfg.unet_attn[i] else nn.Identity())
            self.downs.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1) if i < len(chs) - 1 else nn.Identity())
            prev = ch
        self.mid_res1, self.mid_attn = ResBlock(prev, prev, tdim, g), MCDMBlock(prev, cfg)
        self.mid_res2 = ResBlock(prev, prev, tdim, g)
        self.up_res, self.up_attn = nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(len(chs))):
            self.up_res.append(ResBlock(prev + chs[i], chs[i], tdim, g))
            self.up_attn.append(MCDMBlock(chs[i], cfg) if cfg.unet_attn[i] else nn.Identity())
            prev = chs[i]
        self.out = nn.Sequential(nn.GroupNorm(min(g, prev), prev), nn.SiLU(), nn.Conv2d(prev, cfg.latent_channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)
        self.chs = chs

    def forward(self, x: Tensor, t: Tensor, ref: Tensor, archived: Tensor, motion: Tensor | None, frames: int,
                memories: list[Tensor | None] | None = None, temporal: bool = False,
                ) -> tuple[Tensor, list[Tensor | None]]:
        """x (B*F,C,h,w); t (B*F,); ref (B*F,C,h,w); archived (B,T,D); motion (B*F,K,D) or None.

        Returns (eps (B*F,C,h,w), new memories: one per attention block, in a fixed order)."""
        temb = self.t_mlp(timestep_embedding(t, self.chs[0]))
        arch = archived.repeat_interleave(frames, dim=0)
        blocks = [m for m in self.modules() if isinstance(m, MCDMBlock)]
        mem_in = list(memories) if memories is not None else [None] * len(blocks)
        mem_out: list[Tensor | None] = []

        def attn(mod: nn.Module, h: Tensor) -> Tensor:
            if not isinstance(mod, MCDMBlock):
                return h
            h, m = mod(h, frames, arch, motion, mem_in[len(mem_out)], temporal)
            mem_out.append(m)
            return h

        h = self.conv_in(torch.cat([x, ref], dim=1))
        skips = []
        for res, at, down in zip(self.down_res, self.down_attn, self.downs, strict=True):
            h = attn(at, res(h, temb))
            skips.append(h)
            h = down(h)
        h = self.mid_res2(attn(self.mid_attn, self.mid_res1(h, temb)), temb)
        for i, (res, at) in enumerate(zip(self.up_res, self.up_attn, strict=True)):
            h = attn(at, res(torch.cat([h, skips.pop()], dim=1), temb))
            if i < len(self.up_res) - 1:
                h = F.interpolate(h, scale_factor=2.0, mode="nearest")
        return self.out(h), mem_out
