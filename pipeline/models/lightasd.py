"""Light-ASD active-speaker model (Liao et al., CVPR 2023), written from the paper; loads the upstream weights.

Why here: the upstream checkpoints (MIT, `<models_dir>/lightasd/*.model`, e.g. finetuning_TalkSet.model or
pretrain_AVA_CVPR.model from github.com/Junhua-Liao/Light-ASD) give a per-frame "is this face speaking to this
audio" score. Architecture (parameter names follow the checkpoint's state dict):
- visual encoder: 3 blocks, each two paths (1xkxk spatial conv -> kx1x1 temporal conv, k = 3 and 5) summed and
  fused by a 1x1x1 conv; input 112x112 gray face crops at 25 fps (`asd_face_crops`), normalised
  (x/255-0.4161)/0.1688;
- audio encoder: the same split design in 2-D over (MFCC, time) on 13-d MFCC at 100 fps, pooled to 25 fps;
- detector: the two embeddings are added and run through a forward GRU then a backward GRU; a linear head gives
  2 logits per frame; the score is the log-odds of class 1 (speaking).

What it measures (benchmarks/bench_lightasd.py, RESULTS_sync.md): the MFCC matches python_speech_features 0.6
to the bit and every layer follows the upstream code, yet it is an *activity* detector, not a sync detector. The
TalkSet checkpoint's audio-visual head follows the visual stream (a still face scores "silent", a moving mouth
"speaking", with any audio); the AVA checkpoint separates own speech from silence (by ~4 logits) and, weakly, from
another speaker's speech, but its score over audio shifts is nearly flat, so it does not find A/V offsets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .mfcc import mfcc

VIS_MEAN, VIS_STD = 0.4161, 0.1688


def _bn3(c: int) -> nn.BatchNorm3d:
    return nn.BatchNorm3d(c, momentum=0.01, eps=1e-3)


def _bn2(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, momentum=0.01, eps=1e-3)


class _SplitBlock(nn.Module):
    """Two factorised paths (k=3, k=5): `<first>_k` then `t_k`, each with BN + ReLU, summed, then a 1x1 fusion
    conv. The attribute names are the upstream state-dict keys; `first` is "s" (visual) or "m" (audio)."""

    first = ""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = 0
        for k in (3, 5):
            y = F.relu(getattr(self, f"bn_{self.first}_{k}")(getattr(self, f"{self.first}_{k}")(x)))
            out = out + F.relu(getattr(self, f"bn_t_{k}")(getattr(self, f"t_{k}")(y)))
        return F.relu(self.bn_last(self.last(out)))


class VisualBlock(_SplitBlock):
    """(2+1)-D paths: spatial (1 x k x k) then temporal (k x 1 x 1)."""

    first = "s"

    def __init__(self, cin: int, cout: int, down: bool):
        super().__init__()
        st = (1, 2, 2) if down else (1, 1, 1)
        for k in (3, 5):
            setattr(self, f"s_{k}", nn.Conv3d(cin, cout, (1, k, k), st, (0, k // 2, k // 2), bias=False))
            setattr(self, f"bn_s_{k}", _bn3(cout))
            setattr(self, f"t_{k}", nn.Conv3d(cout, cout, (k, 1, 1), 1, (k // 2, 0, 0), bias=False))
            setattr(self, f"bn_t_{k}", _bn3(cout))
        self.last = nn.Conv3d(cout, cout, 1, bias=False)
        self.bn_last = _bn3(cout)


class AudioBlock(_SplitBlock):
    """Split paths over the MFCC axis (k x 1) then the time axis (1 x k)."""

    first = "m"

    def __init__(self, cin: int, cout: int):
        super().__init__()
        for k in (3, 5):
            setattr(self, f"m_{k}", nn.Conv2d(cin, cout, (k, 1), padding=(k // 2, 0), bias=False))
            setattr(self, f"bn_m_{k}", _bn2(cout))
            setattr(self, f"t_{k}", nn.Conv2d(cout, cout, (1, k), padding=(0, k // 2), bias=False))
            setattr(self, f"bn_t_{k}", _bn2(cout))
        self.last = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_last = _bn2(cout)


class VisualEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.block1, self.block2, self.block3 = VisualBlock(1, 32, True), VisualBlock(32, 64, False), VisualBlock(64, 128, False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, 112, 112) raw gray 0..255 -> (B, T, 128)
        x = ((x / 255.0 - VIS_MEAN) / VIS_STD).unsqueeze(1)
        pool = lambda t: F.max_pool3d(t, (1, 3, 3), (1, 2, 2), (0, 1, 1))  # noqa: E731
        x = self.block3(pool(self.block2(pool(self.block1(x)))))
        return x.amax(dim=(3, 4)).transpose(1, 2)


class AudioEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.block1, self.block2, self.block3 = AudioBlock(1, 32), AudioBlock(32, 64), AudioBlock(64, 128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 4T, 13) MFCC -> (B, T, 128)
        x = x.unsqueeze(1).transpose(2, 3)  # (B, 1, 13, 4T)
        pool = lambda t: F.max_pool2d(t, (1, 3), (1, 2), (0, 1))  # noqa: E731  time /2
        x = self.block3(pool(self.block2(pool(self.block1(x)))))
        return x.mean(dim=2).transpose(1, 2)


class BGRU(nn.Module):
    """Forward GRU, then a backward GRU over its output (GELU after each)."""

    def __init__(self, c: int = 128):
        super().__init__()
        self.gru_forward = nn.GRU(c, c, batch_first=True)
        self.gru_backward = nn.GRU(c, c, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.gru_forward(x)[0])
        x = torch.flip(self.gru_backward(torch.flip(x, dims=[1]))[0], dims=[1])
        return F.gelu(x)


class _Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.FC = nn.Linear(128, 2)


class _Core(nn.Module):
    def __init__(self):
        super().__init__()
        self.visualEncoder, self.audioEncoder, self.GRU = VisualEncoder(), AudioEncoder(), BGRU()


class LightASD(nn.Module):
    """Per-frame speaking logit for (face crops, audio MFCC)."""

    def __init__(self):
        super().__init__()
        self.model, self.lossAV, self.lossV = _Core(), _Head(), _Head()

    def forward(self, faces: torch.Tensor, mfcc_feats: torch.Tensor) -> torch.Tensor:
        """faces (B, T, 112, 112) gray 0..255, mfcc (B, 4T, 13) -> (B, T) logit(speaking) - logit(not)."""
        return self.score_embeddings(self.model.visualEncoder(faces), self.model.audioEncoder(mfcc_feats))

    def score_embeddings(self, visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Back end on precomputed (B, T, 128) embeddings, so one visual pass serves many audio candidates."""
        logits = self.lossAV.FC(self.model.GRU(visual + audio))
        return logits[..., 1] - logits[..., 0]

    def visual_only(self, faces: torch.Tensor) -> torch.Tensor:
        """(B, T) log-odds of the visual-only head (lossV): "does this face look like it is talking"."""
        logits = self.lossV.FC(self.model.visualEncoder(faces))
        return logits[..., 1] - logits[..., 0]


def find_lightasd_weights(models_dir: str | Path, path: str | Path | None = None) -> Path:
    """An explicit checkpoint path, else the first `<models_dir>/lightasd/*.model`; clear error if none."""
    if path:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"Light-ASD checkpoint not found: {p}")
        return p
    found = sorted((Path(models_dir) / "lightasd").glob("*.model"))
    if not found:
        raise FileNotFoundError(
            f"no Light-ASD weights in {Path(models_dir) / 'lightasd'}: put finetuning_TalkSet.model there "
            "(github.com/Junhua-Liao/Light-ASD, weight/finetuning_TalkSet.model, MIT)"
        )
    return found[0]


def load_lightasd(path: str | Path) -> LightASD:
    """Build the model and load an upstream checkpoint (a state dict saved with torch.save); eval mode, CPU."""
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    model = LightASD()
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: not a Light-ASD checkpoint (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.eval()


def audio_features(audio_16k: np.ndarray, n_frames: int) -> np.ndarray:
    """13-d MFCC at 100 fps on int16-scaled samples (the checkpoint's front end), exactly 4 rows per video frame."""
    feats = mfcc(np.asarray(audio_16k, np.float64) * 32768.0, 16000, numcep=13, winlen=0.025, winstep=0.010)
    need = 4 * n_frames
    if len(feats) < need:
        feats = np.concatenate([feats, np.repeat(feats[-1:], need - len(feats), axis=0)])
    return feats[:need].astype(np.float32)


def asd_face_crops(frames: np.ndarray, boxes: np.ndarray, crop_scale: float = 0.4) -> np.ndarray:
    """(N, 112, 112) float32 gray crops as the upstream demo makes them from face boxes (x1, y1, x2, y2) in frame px.

    Why this window: the checkpoints were trained on it. bs = half the box's longer side; the frame is padded with
    grey 110; the window spans [cy - bs, cy + bs(1 + 2cs)] x [cx - bs(1 + cs), cx + bs(1 + cs)], resized to 224,
    and its centre 112x112 is kept (mouth, nose and chin)."""
    import cv2

    out = np.empty((len(frames), 112, 112), np.float32)
    for i, (f, b) in enumerate(zip(frames, np.asarray(boxes, np.float64), strict=True)):
        g = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) if f.ndim == 3 else f
        bs = max(b[2] - b[0], b[3] - b[1]) / 2
        pad = int(bs * (1 + 2 * crop_scale)) + 1
        g = np.pad(g, pad, mode="constant", constant_values=110)
        cy, cx = (b[1] + b[3]) / 2 + pad, (b[0] + b[2]) / 2 + pad
        win = g[int(cy - bs) : int(cy + bs * (1 + 2 * crop_scale)), int(cx - bs * (1 + crop_scale)) : int(cx + bs * (1 + crop_scale))]
        out[i] = cv2.resize(win, (224, 224))[56:168, 56:168]
    return out
