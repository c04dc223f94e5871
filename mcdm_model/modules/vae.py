"""Image VAE in the diffusers AutoencoderKL layout: SD-1.5 weights from a local dir, else a small one trained here.

Pixels are in [-1, 1]; latents are scaled by `scale` (SD-1.5: 0.18215) so the diffusion sees roughly unit
variance. The scratch VAE is trained in stage 1 with an L1 + tiny KL reconstruction loss; a pretrained one is frozen.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from torch import Tensor, nn

from mcdm_model.config import ModelConfig

log = logging.getLogger(__name__)
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def find_pretrained_vae(cfg: ModelConfig) -> Path | None:
    """The SD-1.5-format VAE dir under models_dir (either <dir>/config.json or <dir>/vae/config.json), or None.

    Raises when the dir exists but is incomplete, naming the missing file, so a half-copied model is not ignored."""
    if not cfg.vae_pretrained:
        return None
    root = Path(cfg.vae_pretrained)
    root = root if root.is_absolute() else Path(cfg.models_dir).expanduser() / root
    if not root.exists():
        return None
    d = root / "vae" if (root / "vae").is_dir() else root
    if not (d / "config.json").exists():
        raise FileNotFoundError(f"VAE dir {d} has no config.json: copy the SD-1.5 'vae/' folder (config.json + "
                                f"{WEIGHT_FILES[0]}) from runwayml/stable-diffusion-v1-5 there, or remove the dir")
    if not any((d / w).exists() for w in WEIGHT_FILES):
        raise FileNotFoundError(f"VAE dir {d} has no {' or '.join(WEIGHT_FILES)}: copy the SD-1.5 VAE weights there")
    return d


class VAE(nn.Module):
    """Wraps AutoencoderKL with scaling; `pretrained` says whether weights were loaded (then frozen)."""

    def __init__(self, cfg: ModelConfig, pretrained: bool = True) -> None:
        super().__init__()
        path = find_pretrained_vae(cfg) if pretrained and not cfg.vae_config else None
        if cfg.vae_config:  # a pretrained VAE recorded in a checkpoint: same architecture, weights from its state
            self.ae = AutoencoderKL.from_config(dict(cfg.vae_config))
        elif path is not None:
            self.ae = AutoencoderKL.from_pretrained(str(path), local_files_only=True)
            log.info("VAE: loaded %s (scale %.5f)", path, float(self.ae.config.scaling_factor))
        if cfg.vae_config or path is not None:
            self.scale = float(self.ae.config.scaling_factor)
            self.pretrained = True
            self.ae.requires_grad_(False)
        else:
            n = len(cfg.vae_channels)
            self.ae = AutoencoderKL(
                down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
                block_out_channels=tuple(cfg.vae_channels), layers_per_block=1, latent_channels=cfg.latent_channels,
                norm_num_groups=cfg.vae_groups, sample_size=cfg.image_size, scaling_factor=cfg.vae_scale,
                mid_block_add_attention=False,
            )
            self.scale = float(cfg.vae_scale)
            self.pretrained = False
        if self.ae.config.latent_channels != cfg.latent_channels:
            raise ValueError(f"VAE has {self.ae.config.latent_channels} latent channels, config says {cfg.latent_channels}")

    def config_dict(self) -> dict | None:
        """The AutoencoderKL config when pretrained (recorded in checkpoints), else None."""
        return {k: v for k, v in dict(self.ae.config).items() if not k.startswith("_")} if self.pretrained else None

    def encode(self, x: Tensor, sample: bool = False) -> Tensor:
        """(N, 3, H, W) in [-1, 1] -> scaled latents (N, C, H/f, W/f); the posterior mode unless `sample`."""
        dist = self.ae.encode(x).latent_dist
        return (dist.sample() if sample else dist.mode()) * self.scale

    def decode(self, z: Tensor) -> Tensor:
        return self.ae.decode(z / self.scale).sample.clamp(-1, 1)

    def recon_loss(self, x: Tensor, kl_weight: float = 1e-4, generator: torch.Generator | None = None) -> Tensor:
        """L1 reconstruction + KL, for training the scratch VAE in stage 1 (zero for a frozen pretrained one)."""
        if self.pretrained:
            return x.new_zeros(())
        dist = self.ae.encode(x).latent_dist
        rec = self.ae.decode(dist.sample(generator)).sample
        kl = dist.kl().mean() / dist.mean[0].numel()
        return F.l1_loss(rec, x) + kl_weight * kl

    @torch.no_grad()
    def latents(self, x: Tensor) -> Tensor:
        """Latents as diffusion targets (no gradient into the VAE)."""
        return self.encode(x)
