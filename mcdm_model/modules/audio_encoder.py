"""Audio encoder: one feature vector per video frame from 16 kHz audio (640 samples per 25 fps frame).

wav2vec2 (HF transformers layout, frozen) is used when its dir exists under models_dir; otherwise a log-mel
front end (torch only, 4 mel frames per video frame) and a small 1-D conv net trained with the model.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mcdm_model.config import ModelConfig


def mel_filterbank(n_mels: int, n_fft: int, sr: int, fmin: float = 20.0, fmax: float | None = None) -> Tensor:
    """(n_mels, n_fft//2+1) triangular HTK-mel filters."""
    fmax = fmax or sr / 2

    def hz2mel(f: float) -> float:
        return 2595.0 * math.log10(1.0 + f / 700.0)

    mels = torch.linspace(hz2mel(fmin), hz2mel(fmax), n_mels + 2)
    hz = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    freqs = torch.linspace(0, sr / 2, n_fft // 2 + 1)
    lo, mid, hi = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    up = (freqs[None] - lo) / (mid - lo)
    down = (hi - freqs[None]) / (hi - mid)
    return torch.clamp(torch.minimum(up, down), min=0.0)


class LogMel(nn.Module):
    """Waveform (B, S) -> log-mel (B, n_mels, S // hop); hop = samples_per_frame / 4."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.hop = cfg.samples_per_frame // 4
        self.n_fft = 2 ** math.ceil(math.log2(self.hop * 2.5))
        self.register_buffer("fb", mel_filterbank(cfg.n_mels, self.n_fft, cfg.sample_rate), persistent=False)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)

    def forward(self, wav: Tensor) -> Tensor:
        spec = torch.stft(wav.float(), self.n_fft, self.hop, window=self.window, center=True, return_complex=True)
        mel = self.fb @ spec.abs().pow(2)
        n = wav.shape[-1] // self.hop
        return torch.log(mel[..., :n] + 1e-6)


class MelConvEncoder(nn.Module):
    """Small trainable encoder: log-mel -> conv1d stack (receptive field ~ +-2 video frames) -> per-frame features."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.mel = LogMel(cfg)
        d = cfg.audio_dim
        self.norm = nn.GroupNorm(1, cfg.n_mels)
        self.net = nn.Sequential(
            nn.Conv1d(cfg.n_mels, d, 5, padding=2), nn.SiLU(),
            nn.Conv1d(d, d, 5, padding=4, dilation=2), nn.SiLU(),
            nn.Conv1d(d, d, 4, stride=4),  # 4 mel frames -> 1 video frame
        )  # fmt: skip

    def forward(self, wav: Tensor, frames: int) -> Tensor:
        x = self.net(self.norm(self.mel(wav)))
        return _fit_frames(x.transpose(1, 2), frames)


class Wav2Vec2Encoder(nn.Module):
    """Frozen wav2vec2 (50 Hz) resampled to the video frame rate and projected to audio_dim."""

    def __init__(self, cfg: ModelConfig, path: Path | None = None, config: dict | None = None) -> None:
        super().__init__()
        try:
            from transformers import Wav2Vec2Config, Wav2Vec2Model
        except ImportError as exc:
            raise ImportError(f"{path} holds wav2vec2 weights but `transformers` is not installed: "
                              "pip install transformers (or remove the dir to use the log-mel encoder)") from exc
        if path is not None:
            self.w2v = Wav2Vec2Model.from_pretrained(str(path), local_files_only=True)
        else:  # rebuilt from a checkpoint's config; the weights come from its state dict
            self.w2v = Wav2Vec2Model(Wav2Vec2Config(**config))
        self.w2v.requires_grad_(False).eval()
        self.proj = nn.Linear(self.w2v.config.hidden_size, cfg.audio_dim)

    def config_dict(self) -> dict:
        return self.w2v.config.to_dict()

    def train(self, mode: bool = True) -> Wav2Vec2Encoder:
        super().train(mode)
        self.w2v.eval()  # frozen
        return self

    def forward(self, wav: Tensor, frames: int) -> Tensor:
        wav = (wav - wav.mean(-1, keepdim=True)) / (wav.std(-1, keepdim=True) + 1e-5)
        with torch.no_grad():
            h = self.w2v(wav.float()).last_hidden_state  # (B, T50, H)
        h = F.interpolate(h.transpose(1, 2), size=frames, mode="linear", align_corners=False).transpose(1, 2)
        return self.proj(h)


def _fit_frames(x: Tensor, frames: int) -> Tensor:
    """Pad/crop (B, T, D) to exactly `frames` along T (the last frame may be short by a few samples)."""
    if x.shape[1] >= frames:
        return x[:, :frames]
    return F.pad(x, (0, 0, 0, frames - x.shape[1]), mode="replicate" if x.shape[1] else "constant")


def build_audio_encoder(cfg: ModelConfig, pretrained: bool = True) -> nn.Module:
    """wav2vec2 from cfg.wav2vec2_config (checkpoint) or when <models_dir>/<cfg.wav2vec2>/config.json exists,
    else the log-mel conv encoder."""
    if cfg.wav2vec2_config:
        return Wav2Vec2Encoder(cfg, config=cfg.wav2vec2_config)
    if pretrained and cfg.wav2vec2:
        d = Path(cfg.wav2vec2)
        d = d if d.is_absolute() else Path(cfg.models_dir).expanduser() / d
        if d.exists():
            if not (d / "config.json").exists():
                raise FileNotFoundError(f"{d} has no config.json: copy facebook/wav2vec2-base-960h there "
                                        "(config.json + pytorch_model.bin or model.safetensors)")
            return Wav2Vec2Encoder(cfg, d)
    return MelConvEncoder(cfg)
