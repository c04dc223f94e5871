"""Gaussian diffusion on diffusers' schedulers: training noise (q_sample, MSE on noise) and DDIM / DPM-Solver++.

The betas come from diffusers' DDPMScheduler (SD-1.5's "scaled_linear", or "squaredcos_cap_v2" for cosine), and
sampling uses diffusers' DDIMScheduler or DPMSolverMultistepScheduler (algorithm "dpmsolver++") built from the same
betas, so training and generation share one noise schedule. One schedule serves the image denoiser and the motion
prior; nothing here has parameters, so checkpoints never store it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from torch import Tensor

BETAS = {"linear": "scaled_linear", "cosine": "squaredcos_cap_v2"}
SAMPLERS = ("ddim", "dpm++")


class Schedule:
    """DDPM noise schedule (SD-1.5 scaled-linear or cosine) and its cumulative alphas."""

    def __init__(self, num_timesteps: int = 1000, kind: str = "linear") -> None:
        if kind not in BETAS:
            raise ValueError(f"unknown schedule {kind!r} ({' | '.join(BETAS)})")
        self.num_timesteps, self.kind = int(num_timesteps), kind
        self.config = dict(num_train_timesteps=self.num_timesteps, beta_schedule=BETAS[kind], beta_start=0.00085,
                           beta_end=0.012, prediction_type="epsilon")
        self.alphas_cumprod = DDPMScheduler(**self.config).alphas_cumprod.float()

    def _ab(self, t: Tensor, like: Tensor) -> Tensor:
        ab = self.alphas_cumprod.to(like.device)[t].to(like.dtype)
        return ab.view(-1, *([1] * (like.dim() - 1)))

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) noise, t: (B,) long."""
        ab = self._ab(t, x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def sample_t(self, batch: int, device: torch.device, generator: torch.Generator | None = None) -> Tensor:
        return torch.randint(0, self.num_timesteps, (batch,), device=device, generator=generator)

    def sampler(self, kind: str = "ddim"):
        """A fresh diffusers scheduler for sampling: DDIM (eta 0) or DPM-Solver++ (2nd order multistep)."""
        if kind == "ddim":
            return DDIMScheduler(**self.config, clip_sample=False, set_alpha_to_one=True, timestep_spacing="trailing")
        if kind == "dpm++":
            return DPMSolverMultistepScheduler(**self.config, algorithm_type="dpmsolver++", solver_order=2,
                                               timestep_spacing="trailing", final_sigmas_type="zero")
        raise ValueError(f"unknown sampler {kind!r} ({' | '.join(SAMPLERS)})")


def noise_loss(schedule: Schedule, model: Callable[[Tensor, Tensor], Tensor], x0: Tensor, t: Tensor | None = None,
               noise: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
    """MSE between the true and the predicted noise; t (one per item of x0) / noise may be fixed."""
    if t is None:
        t = schedule.sample_t(x0.shape[0], x0.device, generator)
    if noise is None:
        noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
    pred = model(schedule.q_sample(x0, t, noise), t)
    return F.mse_loss(pred.float(), noise.float())


@torch.no_grad()
def sample(schedule: Schedule, model: Callable[[Tensor, Tensor], Tensor], shape: tuple[int, ...], steps: int = 25,
           sampler: str = "ddim", device: torch.device | str = "cpu", generator: torch.Generator | None = None,
           x_T: Tensor | None = None) -> Tensor:
    """From noise to x0 in `steps` steps; `model(x, t)` predicts the noise, t is a (shape[0],) long tensor."""
    device = torch.device(device)
    sch = schedule.sampler(sampler)
    sch.set_timesteps(steps, device=device)
    x = torch.randn(shape, device=device, generator=generator) if x_T is None else x_T.to(device)
    for t in sch.timesteps:
        eps = model(x, t.expand(shape[0]).long()).float()
        x = sch.step(eps, t, x, return_dict=False)[0]
    return x

