"""Denoiser: diffusers' UNet2DConditionModel (MCDM-B: the SD-1.5 config) carrying MCDM's four attentions.

The noisy latent is concatenated with the reference latent on channels (conv_in takes 2x latent channels; loading
SD-1.5 weights copies its 4-channel conv_in and zeroes the reference half, as InstructPix2Pix does). The UNet's own
cross-attention reads the reference-image tokens (CLIP image encoder, modules/image_encoder.py); the archived-clip
and motion cross-attentions and the memory temporal attention are processors (modules/mcdm_attention.py) whose
output paths start at zero, so a loaded SD-1.5 UNet starts out computing exactly what SD-1.5 computes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from torch import Tensor, nn

from mcdm_model.config import ModelConfig
from mcdm_model.modules.mcdm_attention import MCDMContext, install_processors
from mcdm_model.modules.pretrained import find_dir, load_weights

log = logging.getLogger(__name__)


def unet_config(cfg: ModelConfig) -> dict:
    """diffusers UNet2DConditionModel kwargs; with MCDM-B's fields these are SD-1.5's (in_channels aside)."""
    n = len(cfg.unet_channels)
    down = ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in cfg.unet_attn]
    up = ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(cfg.unet_attn)]
    return dict(
        sample_size=cfg.latent_size, in_channels=2 * cfg.latent_channels, out_channels=cfg.latent_channels,
        down_block_types=tuple(down), up_block_types=tuple(up), mid_block_type="UNetMidBlock2DCrossAttn",
        block_out_channels=tuple(cfg.unet_channels), layers_per_block=cfg.unet_layers,
        norm_num_groups=cfg.unet_groups, cross_attention_dim=cfg.cross_attention_dim,
        attention_head_dim=cfg.heads,  # diffusers' name for the number of heads in SD-1.5 configs
    ) if n else {}


class Denoiser(nn.Module):
    """eps(x_t, t | ref latent, ref tokens, archived tokens, motion tokens, temporal memory) on (B*F, C, h, w)."""

    def __init__(self, cfg: ModelConfig, pretrained: bool = True) -> None:
        super().__init__()
        self.unet = UNet2DConditionModel(**unet_config(cfg))
        self.selfs, self.crosses = install_processors(self.unet, cfg.token_dim, cfg.temporal_alpha,
                                                      cfg.temporal_window, cfg.temporal_mode)
        self.pretrained_from: str | None = None
        if pretrained and cfg.unet_pretrained:
            d = find_dir(cfg.models_dir, cfg.unet_pretrained, "unet", "config.json",
                         "the SD-1.5 'unet/' folder (config.json + diffusion_pytorch_model.safetensors)")
            if d is not None:
                self.load_sd_unet(d)

    @property
    def n_memories(self) -> int:
        return len(self.selfs)

    def load_sd_unet(self, d: Path) -> None:
        """Load a diffusers-layout UNet (SD-1.5) into this one: every SD key must be present with its shape;
        a 4-channel conv_in fills the noisy-latent half of ours; only MCDM's processor keys stay as initialised."""
        own = self.unet.state_dict()

        def adapt(key: str, value: Tensor) -> Tensor:
            if key == "conv_in.weight" and value.shape[1] * 2 == own[key].shape[1]:
                return torch.cat([value, torch.zeros_like(value)], dim=1)
            return value

        missing = load_weights(self.unet, d, adapt)
        extra = [k for k in missing if ".processor." not in k]
        if extra:
            raise ValueError(f"{d}: UNet weights lack {len(extra)} keys, e.g. {extra[:3]}: not an SD-1.5-shaped UNet "
                             "for this size (MCDM-B loads SD-1.5)")
        self.pretrained_from = str(d)
        log.info("UNet: loaded %s (%d MCDM processor tensors initialised)", d, len(missing))

    def forward(self, x: Tensor, t: Tensor, ref: Tensor, ref_tokens: Tensor, ctx: MCDMContext) -> Tensor:
        """x, ref (B*F, C, h, w); t (B*F,); ref_tokens (B, L, cross_attention_dim); ctx: archived / motion tokens,
        temporal flag and memory (its memory_out is filled by this call). Returns eps (B*F, C, h, w)."""
        return self.unet(torch.cat([x, ref], dim=1), t, encoder_hidden_states=ref_tokens,
                         cross_attention_kwargs={"mcdm": ctx}, return_dict=False)[0]
