"""Weights for module tests: zero-initialised projections (as MCDM ships them) given real values."""

from __future__ import annotations

import torch


def randomize_zero_params(module: torch.nn.Module, seed: int = 0) -> None:
    """Give every all-zero parameter seeded N(0, 0.1) values, so every path of the module is exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.abs().sum() == 0:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
