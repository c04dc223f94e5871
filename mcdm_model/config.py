"""MCDM configuration: ModelConfig / TrainConfig dataclasses, a size registry and YAML overrides.

One code path runs every size: "MCDM-T" trains on a 2-core CPU in seconds (tests, CI), "MCDM-B" is the paper's
512² input with diffusers' SD-1.5 UNet config (GPU). A run's resolved config, including the architecture configs
of the pretrained parts it found (VAE, wav2vec2, CLIP), is saved inside every checkpoint without the models dir,
so a checkpoint alone rebuilds its model on any machine.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.common import default_models_dir, merge_dataclass


@dataclass
class ModelConfig:
    image_size: int = 64  # square face crop fed to the VAE (shards are resized to it)
    latent_channels: int = 4
    vae_channels: tuple[int, ...] = (16, 32, 32, 32)  # 2**(len-1) = spatial downsampling factor
    vae_groups: int = 8
    vae_pretrained: str = "sd-vae"  # subdir of models_dir in diffusers/SD-1.5 layout; used when present
    vae_scale: float = 1.0  # latent scaling (SD-1.5: 0.18215; set automatically when loading SD weights)
    # Denoiser = diffusers UNet2DConditionModel (MCDM-B: the SD-1.5 config); MCDM's attentions are processors.
    unet_channels: tuple[int, ...] = (32, 64)
    unet_attn: tuple[bool, ...] = (True, True)  # cross-attention (transformer) blocks at each level
    unet_layers: int = 1  # layers_per_block
    unet_groups: int = 8
    unet_pretrained: str = ""  # dir under models_dir holding `unet/` (or config.json) in the diffusers layout
    cross_attention_dim: int = 64  # width of the reference-image tokens (SD-1.5: 768, CLIP ViT-L/14 space)
    image_encoder: str = "image_encoder"  # CLIPVisionModelWithProjection dir under models_dir; else scratch
    heads: int = 4
    token_dim: int = 64  # archived-clip tokens and motion tokens as seen by the denoiser's cross-attentions
    patch_size: int = 2  # learnable patchify of latents in the archived-clip prior
    archived_layers: int = 1
    present_frames: int = 4  # F: frames of the present clip generated together
    archived_frames: int = 2  # A: historical frames right before the present clip
    temporal_alpha: float = 0.1
    temporal_window: int = 0
    temporal_mode: str = "memory"  # memory (MCDM) | none (no history) | full (keeps every past frame: baseline)
    use_archived: bool = True  # archived-clip prior on (ablation switch)
    cond_drop: float = 0.1  # per-sample probability of dropping the conditions in training (classifier-free)
    motion_dim: int = 64  # width of the present-clip motion-prior transformer
    motion_layers: int = 2
    audio_dim: int = 64
    n_mels: int = 40
    sample_rate: int = 16000
    fps: int = 25
    wav2vec2: str = "wav2vec2-base-960h"  # subdir of models_dir (HF transformers layout); used when present
    num_timesteps: int = 1000
    schedule: str = "linear"  # linear (SD-1.5 scaled_linear) | cosine
    # Architecture configs of the pretrained parts that were found (filled in when the model is built); a
    # checkpoint rebuilds these parts from them, with no models dir, and loads their weights from its state dict.
    vae_config: dict | None = None
    wav2vec2_config: dict | None = None
    image_encoder_config: dict | None = None
    models_dir: str = field(default_factory=default_models_dir)

    @property
    def samples_per_frame(self) -> int:
        return self.sample_rate // self.fps

    @property
    def latent_size(self) -> int:
        return self.image_size // 2 ** (len(self.vae_channels) - 1)


@dataclass
class TrainConfig:
    shards: str = ""
    split: str = "train"  # train | val | test | all: which of <shards>/<split>/ to read (pipeline builds)
    out: str = "runs/mcdm"
    stage: str = "all"  # 1 | 2 | 3 | all
    steps: int = 1000  # per stage
    batch_size: int = 2  # per process
    lr: float = 1e-4
    weight_decay: float = 1e-2
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    seed: int = 0
    num_workers: int = 2  # DataLoader worker processes per rank (pin_memory on CUDA)
    windows_per_clip: int = 1  # windows cut from each decoded clip (amortises decoding; they share a batch)
    chain_clips: int = 2  # consecutive present clips per window: stage 3 builds the memory over the first ones
    grad_checkpoint: bool = False  # recompute UNet activations in backward (paper-size memory)
    log_every: int = 10
    ckpt_every: int = 500
    bf16: bool = False
    device: str = "auto"


SIZES: dict[str, dict[str, Any]] = {
    "MCDM-T": {},  # the defaults: 64² pixels, latent 8², ~1-2 M parameters
    "MCDM-S": dict(
        image_size=256, vae_channels=(64, 128, 256, 256), vae_groups=32, unet_channels=(128, 256, 512),
        unet_attn=(True, True, True), unet_layers=2, unet_groups=32, cross_attention_dim=512, heads=8,
        token_dim=256, motion_dim=256, motion_layers=4, audio_dim=256, n_mels=80, present_frames=8,
        archived_frames=4, archived_layers=2,
    ),
    "MCDM-B": dict(  # the UNet is SD-1.5's (859.5 M) and loads <models_dir>/stable-diffusion-v1-5/unet/
        image_size=512, vae_channels=(128, 256, 512, 512), vae_groups=32, vae_scale=0.18215,
        unet_channels=(320, 640, 1280, 1280), unet_attn=(True, True, True, False), unet_layers=2, unet_groups=32,
        unet_pretrained="stable-diffusion-v1-5", cross_attention_dim=768, heads=8, token_dim=768, patch_size=2,
        motion_dim=512, motion_layers=8, audio_dim=768, n_mels=80, present_frames=16, archived_frames=4,
        archived_layers=4,
    ),
}


def model_config(size: str = "MCDM-T", **overrides: Any) -> ModelConfig:
    """ModelConfig for a registered size, then overrides (unknown keys raise)."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; known: {', '.join(SIZES)}")
    cfg = ModelConfig()
    merge_dataclass(cfg, copy.deepcopy(SIZES[size]), size)
    merge_dataclass(cfg, overrides, "override")
    return cfg


def load_yaml(path: str | Path | None, model: ModelConfig, train: TrainConfig) -> None:
    """Apply a YAML file with optional top-level `model:` and `train:` mappings, in place."""
    if not path:
        return
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict) or set(data) - {"model", "train"}:
        raise ValueError(f"{path}: expected a mapping with keys 'model' and/or 'train'")
    merge_dataclass(model, data.get("model") or {}, f"{path}:model")
    merge_dataclass(train, data.get("train") or {}, f"{path}:train")


def to_dict(cfg: Any, portable: bool = False) -> dict[str, Any]:
    """Plain dict (tuples as lists) for checkpoints and config.yaml; `portable` leaves out machine paths."""
    out = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}
    if portable:
        out.pop("models_dir", None)
    return out


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    return merge_dataclass(cls(), dict(data), cls.__name__)
