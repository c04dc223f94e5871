"""MCDM's attentions as diffusers attention processors, so the SD-1.5 UNet keeps its weights and key names.

Every transformer block of the UNet gets two processors (their parameters live under `...attn1.processor.*` and
`...attn2.processor.*`, beside the untouched SD keys):
- `SelfTemporalProcessor` (attn1): SD's spatial self-attention, plus MCDM's memory-efficient temporal attention
  along the present clip's frames (per token, over [memory; frames]); its output projection starts at zero.
- `CrossProcessor` (attn2): SD's cross-attention to the reference-image tokens, plus cross-attention to the
  archived-clip tokens and to the present clip's per-frame motion tokens, decoupled as in IP-Adapter (own K/V,
  shared output projection); their value projections start at zero.
With the zero inits the UNet computes exactly what SD-1.5 computes until training moves them.

Per-sample context (reference tokens, archived tokens) is projected to K/V once per sample, never repeated per
frame: the F frames' queries of one sample attend together to that sample's keys. `MCDMContext` carries the
per-call inputs and caches those K/V for as long as it lives (one clip: every diffusion step reuses them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mcdm_model.modules.temporal_attention import FullTemporalAttention, MemoryTemporalAttention


@dataclass
class MCDMContext:
    """Inputs of one denoiser call shared by every processor (passed as cross_attention_kwargs['mcdm'])."""

    frames: int
    archived: Tensor | None = None  # (B, T, token_dim) archived-clip tokens, or None (prior off)
    motion: Tensor | None = None  # (B*F, K, token_dim) per-frame motion tokens, or None (stage 1)
    temporal: bool = False
    memory_in: list[Tensor | None] | None = None  # per SelfTemporalProcessor index
    memory_out: dict[int, Tensor] = field(default_factory=dict)
    kv_cache: dict[tuple[int, str], tuple[Tensor, Tensor]] = field(default_factory=dict)
    kv_projections: int = 0  # how many K/V projections of per-sample context ran (tests check "once")


def _heads(x: Tensor, h: int) -> Tensor:
    """(B, L, h*d) -> (B, h, L, d)."""
    return x.unflatten(-1, (h, -1)).transpose(1, 2)


def _attend(q: Tensor, k: Tensor, v: Tensor, h: int) -> Tensor:
    """q (B, Lq, h*d), k/v (B, Lk, h*d) -> (B, Lq, h*d)."""
    return F.scaled_dot_product_attention(_heads(q, h), _heads(k, h), _heads(v, h)).transpose(1, 2).flatten(2)


def _check_plain(attn: nn.Module) -> None:
    if attn.group_norm is not None or attn.spatial_norm is not None or attn.residual_connection:
        raise ValueError("MCDM processors expect SD-style attention (no group/spatial norm, no residual)")


class SelfTemporalProcessor(nn.Module):
    """attn1: spatial self-attention (SD) + temporal attention over [memory; present frames] (zero-init)."""

    def __init__(self, dim: int, heads: int, index: int, alpha: float, window: int, mode: str) -> None:
        super().__init__()
        self.index, self.mode = index, mode
        cls = FullTemporalAttention if mode == "full" else MemoryTemporalAttention
        self.temporal = cls(dim, heads, alpha=alpha, window=window)
        nn.init.zeros_(self.temporal.core.proj.weight)
        nn.init.zeros_(self.temporal.core.proj.bias)

    def __call__(self, attn: nn.Module, hidden_states: Tensor, encoder_hidden_states: Tensor | None = None,
                 attention_mask: Tensor | None = None, temb: Tensor | None = None,
                 mcdm: MCDMContext | None = None) -> Tensor:
        _check_plain(attn)
        x = hidden_states
        q, k, v = attn.to_q(x), attn.to_k(x), attn.to_v(x)
        out = attn.to_out[1](attn.to_out[0](_attend(q, k, v, attn.heads)))
        if mcdm is not None and mcdm.temporal:
            seq = x.unflatten(0, (-1, mcdm.frames))  # (B, F, N, C): the block's normalised features
            mem = None
            if mcdm.memory_in is not None and self.mode != "none":
                mem = mcdm.memory_in[self.index]
            upd, new_mem = self.temporal(seq, mem)
            mcdm.memory_out[self.index] = new_mem
            out = out + (upd - seq).flatten(0, 1)
        return out


class CrossProcessor(nn.Module):
    """attn2: cross-attention to reference tokens (SD's K/V) + archived tokens + motion tokens (zero-init V)."""

    def __init__(self, query_dim: int, token_dim: int, inner_dim: int, index: int) -> None:
        super().__init__()
        self.index = index
        self.to_k_arch, self.to_v_arch = nn.Linear(token_dim, inner_dim, bias=False), nn.Linear(token_dim, inner_dim, bias=False)
        self.to_k_motion, self.to_v_motion = (nn.Linear(token_dim, inner_dim, bias=False),
                                              nn.Linear(token_dim, inner_dim, bias=False))
        nn.init.zeros_(self.to_v_arch.weight)
        nn.init.zeros_(self.to_v_motion.weight)

    def _kv(self, mcdm: MCDMContext | None, name: str, tokens: Tensor, k: nn.Module, v: nn.Module) -> tuple[Tensor, Tensor]:
        """K/V of per-sample tokens, projected once per context (one clip) and reused by every sampler step.
        With gradients on (training: one call per context) nothing is cached, so a checkpointed block recomputes
        exactly what it computed."""
        if mcdm is None or torch.is_grad_enabled():
            return k(tokens), v(tokens)
        key = (self.index, name)
        hit = mcdm.kv_cache.get(key)
        if hit is None or hit[0].shape[0] != tokens.shape[0]:
            hit = mcdm.kv_cache[key] = (k(tokens), v(tokens))
            mcdm.kv_projections += 1
        return hit

    def __call__(self, attn: nn.Module, hidden_states: Tensor, encoder_hidden_states: Tensor | None = None,
                 attention_mask: Tensor | None = None, temb: Tensor | None = None,
                 mcdm: MCDMContext | None = None) -> Tensor:
        _check_plain(attn)
        bf, n, _ = hidden_states.shape
        f = mcdm.frames if mcdm is not None else 1
        b, h = bf // f, attn.heads
        q = attn.to_q(hidden_states)
        qs = q.reshape(b, f * n, q.shape[-1])  # one sample's F frames query its context together
        ctx = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if ctx.shape[0] == b:  # per-sample context (MCDM): K/V projected once, not per frame
            k, v = self._kv(mcdm, "ref", ctx, attn.to_k, attn.to_v)
            out = _attend(qs, k, v, h)
        else:  # per-frame context (plain SD call)
            out = _attend(q, attn.to_k(ctx), attn.to_v(ctx), h).reshape(b, f * n, -1)
        if mcdm is not None and mcdm.archived is not None:
            ka, va = self._kv(mcdm, "arch", mcdm.archived, self.to_k_arch, self.to_v_arch)
            out = out + _attend(qs, ka, va, h)
        if mcdm is not None and mcdm.motion is not None:  # per-frame tokens: each frame queries its own
            km, vm = self._kv(mcdm, "motion", mcdm.motion, self.to_k_motion, self.to_v_motion)
            out = out + _attend(q, km, vm, h).reshape(b, f * n, -1)
        out = out.reshape(bf, n, -1)
        return attn.to_out[1](attn.to_out[0](out))


def install_processors(unet: nn.Module, token_dim: int, alpha: float, window: int, mode: str) -> tuple[list, list]:
    """Put MCDM processors on every transformer block of a diffusers UNet; returns (self/temporal, cross) lists."""
    from diffusers.models.attention import BasicTransformerBlock

    selfs, crosses, procs = [], [], {}
    for name, mod in unet.named_modules():
        if not isinstance(mod, BasicTransformerBlock):
            continue
        a1, a2 = mod.attn1, mod.attn2
        dim = a1.to_q.in_features
        st = SelfTemporalProcessor(dim, a1.heads, len(selfs), alpha, window, mode)
        cr = CrossProcessor(a2.to_q.in_features, token_dim, a2.to_q.out_features, len(crosses))
        selfs.append(st)
        crosses.append(cr)
        procs[f"{name}.attn1.processor"], procs[f"{name}.attn2.processor"] = st, cr
    unet.set_attn_processor(procs)
    return selfs, crosses
