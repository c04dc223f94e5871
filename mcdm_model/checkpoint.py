"""EMA weights and checkpoints (model + EMA + optimizer + RNG + step + config), written atomically.

Everything needed to continue a run bit-for-bit lives in one file: resuming restores the weights, the AdamW moments,
the EMA, the noise generator and the position in the data stream (train.py fast-forwards the loader).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn


class EMA:
    """Exponential moving average of every float parameter/buffer (with the usual warm-up of the decay)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for k, v in model.state_dict().items():
            if k in self.shadow:
                self.shadow[k].lerp_(v.detach(), 1.0 - d)

    def state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """A full model state dict with EMA values where tracked (loadable with model.load_state_dict)."""
        return {k: self.shadow.get(k, v).detach().clone() for k, v in model.state_dict().items()}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        for k in self.shadow:
            self.shadow[k].copy_(state[k])


def save(path: str | Path, payload: dict[str, Any]) -> None:
    """torch.save to a temp name, then rename: a crash never leaves a half-written checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} not found (train with --out to create one)")
    return torch.load(path, map_location=map_location, weights_only=False)
