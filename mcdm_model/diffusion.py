"""Stateless Gaussian diffusion: noise schedule, q_sample, MSE-on-noise loss and a DDIM sampler.

No parameters live here, so the same schedule serves the image denoiser (video latents) and the motion prior
(motion tokens), and checkpoints never need to store it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


class Schedule:
    """DDPM betas (linear as in SD-1.5's scaled-linear, or cosine) and the derived cumulative alphas."""

    def __init__(self, num_timesteps: int = 1000, kind: str = "linear") -> None:
        self.num_timesteps = int(num_timesteps)
        if kind == "linear":  # SD-1.5 "scaled_linear"
            betas = torch.linspace(0.00085**0.5, 0.012**0.5, num_timesteps, dtype=torch.float64) ** 2
        elif kind == "cosine":  # Nichol & Dhariwal 2021
            s = 0.008
            steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
            f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
            betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
        else:
            raise ValueError(f"unknown schedule {kind!r} (linear | cosine)")
        self.kind = kind
        self.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0).float()

    def _ab(self, t: Tensor, like: Tensor) -> Tensor:
        ab = self.alphas_cumprod.to(like.device)[t].to(like.dtype)
        return ab.view(-1, *([1] * (like.dim() - 1)))

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) noise, t: (B,) long."""
        ab = self._ab(t, x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def sample_t(self, batch: int, device: torch.device, generator: torch.Generator | None = None) -> Tensor:
        return torch.randint(0, self.num_timesteps, (batch,), device=device, generator=generator)


def noise_loss(
    schedule: Schedule,
    model: Callable[[Tensor, Tensor], Tensor],
    x0: Tensor,
    t: Tensor | None = None,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """MSE between the true and the predicted noise; t/noise may be given for a fixed (evaluation) draw."""
    if t is None:
        t = schedule.sample_t(x0.shape[0], x0.device, generator)
    if noise is None:
        noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
    pred = model(schedule.q_sample(x0, t, noise), t)
    return F.mse_loss(pred.float(), noise.float())


@torch.no_grad()
def ddim_sample(
    schedule: Schedule,
    model: Callable[[Tensor, Tensor], Tensor],
    shape: tuple[int, ...],
    steps: int = 25,
    eta: float = 0.0,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    x_T: Tensor | None = None,
) -> Tensor:
    """DDIM (Song et al. 2021) from pure noise to x0 in `steps` steps; eta=0 is deterministic."""
    device = torch.device(device)
    x = torch.randn(shape, device=device, generator=generator) if x_T is None else x_T.to(device)
    ts = torch.linspace(schedule.num_timesteps - 1, 0, steps, device=device).round().long()
    ab_all = schedule.alphas_cumprod.to(device)
    for i, t in enumerate(ts):
        ab = ab_all[t]
        ab_prev = ab_all[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0, device=device)
        eps = model(x, t.expand(shape[0])).float()
        x0 = (x - (1 - ab).sqrt() * eps) / ab.sqrt()
        sigma = eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)).clamp(min=0).sqrt()
        dir_xt = (1 - ab_prev - sigma**2).clamp(min=0).sqrt() * eps
        x = ab_prev.sqrt() * x0 + dir_xt
        if eta > 0 and i + 1 < len(ts):
            x = x + sigma * torch.randn(shape, device=device, generator=generator)
    return x
