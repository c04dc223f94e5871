"""SyncNet (Chung & Zisserman 2016) in the layout of joonson/syncnet_python, so `syncnet_v2.model` loads as is.

Why: SyncNet's offset/confidence is the field's standard (keep |offset| <= 6, conf >= 3). Its weights are not
available offline, so the loader reads `<models_dir>/syncnet/syncnet_v2.model` (a torch state dict with keys
netcnnaud.* / netfcaud.* / netcnnlip.* / netfclip.*) and fails with a message naming the file when absent.
Inputs as upstream: 5 RGB face frames 224x224 (0..255, no normalisation) and a 13x20 MFCC window (python_speech_
features defaults on int16 audio, 100 fps); distance = L2 between the two 1024-d embeddings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .mfcc import mfcc
from .sync_energy import SyncCurve, curve_decision, load_frames
from .sync_loader import WEIGHTS_REL


def _c2(cin: int, cout: int, k, **kw) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, **kw), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _c3(cin: int, cout: int, k, **kw) -> list[nn.Module]:
    return [nn.Conv3d(cin, cout, k, **kw), nn.BatchNorm3d(cout), nn.ReLU(inplace=True)]


def _fc(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, dim))


class SyncNet(nn.Module):
    """Audio and lip towers; module indices match the upstream state dict."""

    def __init__(self, dim: int = 1024):
        super().__init__()
        self.netcnnaud = nn.Sequential(
            *_c2(1, 64, 3, padding=1), nn.MaxPool2d(1, 1),
            *_c2(64, 192, 3, padding=1), nn.MaxPool2d(3, (1, 2)),
            *_c2(192, 384, 3, padding=1), *_c2(384, 256, 3, padding=1),
            *_c2(256, 256, 3, padding=1), nn.MaxPool2d(3, 2),
            *_c2(256, 512, (5, 4)),
        )  # fmt: skip
        self.netfcaud = _fc(dim)
        self.netcnnlip = nn.Sequential(
            *_c3(3, 96, (5, 7, 7), stride=(1, 2, 2)), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_c3(96, 256, (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            *_c3(256, 256, (1, 3, 3), padding=(0, 1, 1)), *_c3(256, 256, (1, 3, 3), padding=(0, 1, 1)),
            *_c3(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_c3(256, 512, (1, 6, 6)),
        )  # fmt: skip
        self.netfclip = _fc(dim)

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 13, 20) -> (B, dim)
        return self.netfcaud(self.netcnnaud(x).flatten(1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, 5, 224, 224) -> (B, dim)
        return self.netfclip(self.netcnnlip(x).flatten(1))


def load_syncnet(path: str | Path) -> SyncNet:
    """Load an upstream syncnet_v2.model; clear errors for a missing or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"SyncNet weights not found at {path}: download syncnet_v2.model (joonson/syncnet_python, "
            f"download_model.sh) and put it at <models_dir>/{WEIGHTS_REL}"
        )
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, nn.Module):
        state = state.state_dict()
    state = {k.removeprefix("__S__."): v for k, v in state.items()}
    model = SyncNet()
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: not a SyncNet checkpoint (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.eval()


class SyncNetScorer:
    """Upstream evaluation: mean embedding distance per audio shift; offset = best shift, conf = median - min."""

    name = "syncnet"
    offset_reliable = True
    input_size = 224

    def __init__(self, model: SyncNet, search_frames: int = 15, batch: int = 20):
        self.model, self.search, self.batch = model, search_frames, batch

    @torch.no_grad()
    def curve(self, frames_or_track: Any, audio_16k: np.ndarray, fps: float = 25, audio_lead_frames: int = 0) -> SyncCurve:
        import cv2

        frames, _, _ = load_frames(frames_or_track)
        if frames is None or len(frames) < 6:
            raise ValueError("SyncNet needs at least 6 crop frames")
        rgb = np.stack([cv2.resize(np.asarray(f)[..., :3], (224, 224))[..., ::-1] for f in frames])  # BGR
        n = len(rgb) - 4
        vid = torch.from_numpy(rgb.astype(np.float32)).permute(3, 0, 1, 2)  # (3, T, 224, 224)
        lip = torch.cat([self.model.forward_lip(torch.stack([vid[:, i : i + 5] for i in range(s, min(s + self.batch, n))]))
                         for s in range(0, n, self.batch)])  # fmt: skip
        cc = torch.from_numpy(mfcc(np.asarray(audio_16k, np.float64) * 32768.0).T.astype(np.float32))
        n_aud = (cc.shape[1] - 20) // 4 + 1
        wins = [cc[:, 4 * j : 4 * j + 20] for j in range(max(n_aud, 0))]
        aud = torch.cat([self.model.forward_aud(torch.stack(wins[s : s + self.batch])[:, None])
                         for s in range(0, len(wins), self.batch)])  # fmt: skip
        offsets = np.arange(-self.search, self.search + 1)
        dists = np.full(len(offsets), np.nan)
        for i, s in enumerate(offsets):
            t0, t1 = max(0, -(audio_lead_frames + s)), min(n, len(aud) - audio_lead_frames - s)
            if t1 - t0 >= 5:
                j = slice(t0 + audio_lead_frames + s, t1 + audio_lead_frames + s)
                dists[i] = float(torch.linalg.vector_norm(lip[t0:t1] - aud[j], dim=1).mean())
        ok = np.isfinite(dists)
        if ok.sum() < 3:
            return SyncCurve(offsets, dists, 0, 0.0)
        best = int(np.nanargmin(np.where(ok, dists, np.inf)))
        conf = float(np.median(dists[ok]) - dists[best])  # upstream SyncNet confidence
        return SyncCurve(offsets, dists, int(offsets[best]), conf)

    def score(self, frames_or_track: Any, audio_16k: np.ndarray, fps: float = 25, audio_lead_frames: int = 0) -> tuple[int, float]:
        c = self.curve(frames_or_track, audio_16k, fps, audio_lead_frames)
        return c.offset, c.conf


__all__ = ["SyncNet", "SyncNetScorer", "load_syncnet", "curve_decision", "WEIGHTS_REL"]
