"""Reference-image tokens for the UNet's own cross-attention: a frozen CLIP image encoder, or a small one trained here.

CLIP: transformers' `CLIPVisionModelWithProjection` from `<models_dir>/<cfg.image_encoder>` (the `image_encoder/`
folder of SD image-variation / IP-Adapter repos: config.json + model.safetensors), or `<dir>/image_encoder/`.
Every patch token goes through CLIP's post-layernorm and visual projection (so the tokens live in CLIP's image
embedding space, 768-D for ViT-L/14 as SD-1.5's cross-attention expects), then a trained linear map to
cross_attention_dim (identity-initialised when the widths agree). Without CLIP, a patch-conv + transformer encoder
is trained in stage 1 (tests, small sizes).
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mcdm_model.config import ModelConfig
from mcdm_model.modules.pretrained import find_dir

log = logging.getLogger(__name__)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ScratchImageEncoder(nn.Module):
    """(B, 3, S, S) in [-1, 1] -> (B, (S/8)², D) tokens: 8x8 patches, positions, one transformer layer."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d, p = cfg.cross_attention_dim, 8
        self.patch = nn.Conv2d(3, d, p, stride=p)
        self.pos = nn.Parameter(torch.randn(1, (cfg.image_size // p) ** 2, d) * 0.02)
        heads = max(h for h in (8, 4, 2, 1) if d % h == 0)
        self.mix = nn.TransformerEncoderLayer(d, heads, 2 * d, dropout=0.0, batch_first=True, norm_first=True)
        self.norm = nn.LayerNorm(d)

    def forward(self, img: Tensor) -> Tensor:
        return self.norm(self.mix(self.patch(img).flatten(2).transpose(1, 2) + self.pos))


class CLIPImageEncoder(nn.Module):
    """Frozen CLIP vision tower -> projected patch tokens -> trained linear map to the UNet's context width."""

    def __init__(self, cfg: ModelConfig, path=None, config: dict | None = None) -> None:
        super().__init__()
        try:
            from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
        except ImportError as exc:
            raise ImportError("a CLIP image encoder needs `transformers`: pip install transformers") from exc
        if path is not None:
            self.clip = CLIPVisionModelWithProjection.from_pretrained(str(path), local_files_only=True)
        else:  # rebuilt from a checkpoint's config; the weights come from its state dict
            self.clip = CLIPVisionModelWithProjection(CLIPVisionConfig(**config))
        self.clip.requires_grad_(False).eval()
        c = self.clip.config
        self.size = int(c.image_size)
        self.proj = nn.Linear(c.projection_dim, cfg.cross_attention_dim)
        if c.projection_dim == cfg.cross_attention_dim:
            nn.init.eye_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)

    def config_dict(self) -> dict:
        return self.clip.config.to_dict()

    def train(self, mode: bool = True) -> CLIPImageEncoder:
        super().train(mode)
        self.clip.eval()  # frozen: always in eval mode
        return self

    def forward(self, img: Tensor) -> Tensor:
        x = F.interpolate((img + 1) / 2, size=(self.size, self.size), mode="bicubic", align_corners=False)
        x = (x.clamp(0, 1) - self.mean) / self.std
        with torch.no_grad():
            h = self.clip.vision_model(pixel_values=x).last_hidden_state
            h = self.clip.visual_projection(self.clip.vision_model.post_layernorm(h))
        return self.proj(h)


def build_image_encoder(cfg: ModelConfig, pretrained: bool = True) -> nn.Module:
    """CLIP from cfg.image_encoder_config (checkpoint) or the models dir when present, else the scratch encoder."""
    if cfg.image_encoder_config:
        return CLIPImageEncoder(cfg, config=cfg.image_encoder_config)
    if pretrained and cfg.image_encoder:
        d = find_dir(cfg.models_dir, cfg.image_encoder, "image_encoder", "config.json",
                     "a CLIPVisionModelWithProjection (e.g. the image_encoder/ folder of "
                     "lambdalabs/sd-image-variations-diffusers: config.json + model.safetensors)")
        if d is not None:
            log.info("image encoder: CLIP from %s", d)
            return CLIPImageEncoder(cfg, path=d)
    return ScratchImageEncoder(cfg)
