"""Archived-clip motion prior: reference + historical frames -> tokens the denoiser cross-attends to.

Latents of the reference frame and of each historical (archived) frame are patchified by a learnable strided conv.
Frame-aligned attention then lets every historical frame's tokens look up the reference layout: queries come from
the historical frame, keys from the reference tokens, values from the historical frame itself, so motion between
reference and history is expressed in the reference's spatial frame. A small transformer mixes all frames.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mcdm_model.config import ModelConfig


class FrameAlignedAttention(nn.Module):
    """Per historical frame h: softmax(Q_h K_ref^T) V_h, heads in parallel; residual on the historical tokens."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_q, self.norm_k = nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, ref: Tensor, hist: Tensor) -> Tensor:
        """ref: (B, N, D); hist: (B, A, N, D) -> (B, A, N, D)."""
        b, a, n, d = hist.shape
        q = self.norm_q(hist.reshape(b * a, n, d))
        k = self.norm_k(ref).repeat_interleave(a, dim=0)
        out, _ = self.attn(q, k, hist.reshape(b * a, n, d), need_weights=False)
        return hist + out.reshape(b, a, n, d)


class ArchivedClipPrior(nn.Module):
    """(ref latent (B,C,h,w), archived latents (B,A,C,h,w)) -> tokens (B, (A+1)*N, token_dim)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d, p = cfg.token_dim, cfg.patch_size
        self.patchify = nn.Conv2d(cfg.latent_channels, d, p, stride=p)
        n = (cfg.latent_size // p) ** 2
        self.pos = nn.Parameter(torch.randn(1, n, d) * 0.02)
        self.frame_emb = nn.Parameter(torch.randn(cfg.archived_frames + 1, d) * 0.02)  # 0 = reference
        self.align = FrameAlignedAttention(d, cfg.heads)
        layer = nn.TransformerEncoderLayer(d, cfg.heads, 4 * d, dropout=0.0, batch_first=True, norm_first=True)
        self.mix = nn.TransformerEncoder(layer, cfg.archived_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)

    def tokens(self, z: Tensor) -> Tensor:
        """(M, C, h, w) -> (M, N, D) patch tokens with positions."""
        return self.patchify(z).flatten(2).transpose(1, 2) + self.pos

    def forward(self, ref: Tensor, archived: Tensor) -> Tensor:
        b, a = archived.shape[:2]
        r = self.tokens(ref) + self.frame_emb[0]
        if a:
            h = self.tokens(archived.flatten(0, 1)).unflatten(0, (b, a)) + self.frame_emb[1 : a + 1, None]
            h = self.align(r, h)
            seq = torch.cat([r, h.flatten(1, 2)], dim=1)
        else:
            seq = r
        return self.norm(self.mix(seq))
