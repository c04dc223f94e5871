"""MCDM: the whole model (VAE, audio encoder, archived prior, motion-prior diffusion, denoiser) and its public API.

Training calls `loss(batch, stage)`; generation calls `encode_reference` once and `generate_clip` per clip,
carrying a `ClipMemory` (temporal EMA memories + the last frames' latents and motion) from clip to clip, so long
videos cost the same per clip however long they get. See mcdm_model/README.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from mcdm_model.config import ModelConfig, from_dict
from mcdm_model.diffusion import Schedule, ddim_sample, noise_loss
from mcdm_model.modules.archived_prior import ArchivedClipPrior
from mcdm_model.modules.audio_encoder import MelConvEncoder, build_audio_encoder
from mcdm_model.modules.denoiser import Denoiser
from mcdm_model.modules.motion_diffusion import MotionPriorDiffusion
from mcdm_model.modules.vae import VAE
from mcdm_model.motion import GROUPS, MOTION_DIM

STAGES = ("1", "2", "3")


@dataclass
class ClipMemory:
    """State carried between generated clips: per-block temporal memories, archived latents, motion prefix."""

    temporal: list[Tensor | None] | None = None
    archived: Tensor | None = None  # (B, A, C, h, w) latents of the last generated frames
    motion: Tensor | None = None  # (B, A, 105)
    extra: dict = field(default_factory=dict)


class MotionEmbed(nn.Module):
    """Per frame: head / lip / expr motion + audio feature -> 4 tokens (B*F, 4, token_dim) for cross-attention."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.groups = nn.ModuleList(nn.Linear(s.stop - s.start, cfg.token_dim) for _, s in GROUPS)
        self.audio = nn.Linear(cfg.audio_dim, cfg.token_dim)
        self.type_emb = nn.Parameter(torch.randn(4, cfg.token_dim) * 0.02)

    def forward(self, motion: Tensor, audio: Tensor) -> Tensor:
        toks = [lin(motion[..., s]) for lin, (_, s) in zip(self.groups, GROUPS, strict=True)] + [self.audio(audio)]
        return (torch.stack(toks, dim=-2) + self.type_emb).flatten(0, 1)


class MCDM(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.vae = VAE(cfg)
        self.audio_encoder = build_audio_encoder(cfg)
        # Record what was actually built, so a checkpoint rebuilds the same architecture on any machine.
        self.cfg = cfg = dataclasses.replace(
            cfg, vae_pretrained=cfg.vae_pretrained if self.vae.pretrained else "",
            wav2vec2="" if isinstance(self.audio_encoder, MelConvEncoder) else cfg.wav2vec2,
        )
        self.archived_prior = ArchivedClipPrior(cfg)
        self.motion_prior = MotionPriorDiffusion(cfg)
        self.motion_embed = MotionEmbed(cfg)
        self.denoiser = Denoiser(cfg)
        self.schedule = Schedule(cfg.num_timesteps, cfg.schedule)

    # ---------------------------------------------------------------- training
    def stage_parameters(self, stage: str) -> list[nn.Parameter]:
        """Stage 1: VAE (if scratch) + archived prior + denoiser image path. Stage 2: motion prior + audio
        encoder. Stage 3: present-clip cross-attention, temporal attention and the motion embedding."""
        if stage == "1":
            mods = [self.archived_prior, self.denoiser] + ([] if self.vae.pretrained else [self.vae])
            skip = {id(p) for n, p in self.denoiser.named_parameters() if "motion_attn" in n or "temporal" in n}
            return [p for m in mods for p in m.parameters() if id(p) not in skip]
        if stage == "2":
            audio = [p for n, p in self.audio_encoder.named_parameters() if not n.startswith("w2v.")]  # frozen
            return list(self.motion_prior.parameters()) + audio
        if stage == "3":
            ps = [p for n, p in self.denoiser.named_parameters() if "motion_attn" in n or "temporal" in n
                  or "norms.2" in n]
            return ps + list(self.motion_embed.parameters())
        raise ValueError(f"unknown stage {stage!r} (1 | 2 | 3)")

    def _latents(self, x: Tensor) -> Tensor:
        """(B, T, 3, H, W) -> (B, T, C, h, w) without gradient into the VAE."""
        return self.vae.latents(x.flatten(0, 1)).unflatten(0, x.shape[:2])

    def loss(self, batch: dict, stage: str, generator: torch.Generator | None = None,
             t: Tensor | None = None, noise: Tensor | None = None) -> dict[str, Tensor]:
        """Losses of one stage on a batch; t/noise fix the draw (evaluation). Returns {'loss': total, parts...}."""
        ref, arch, pres = batch["ref"], batch["archived"], batch["present"]
        b, f = pres.shape[:2]
        if stage == "2":
            audio = self.audio_encoder(batch["audio"], f)
            z_ref = self.vae.latents(ref)

            def eps(x: Tensor, tt: Tensor) -> Tensor:
                return self.motion_prior(x, tt, batch["motion_archived"], audio, z_ref, batch["motion_ref"])

            loss = noise_loss(self.schedule, eps, batch["motion"], t, noise, generator)
            return {"loss": loss, "motion_mse": loss.detach()}
        z_ref, z_arch, z_pres = self.vae.latents(ref), self._latents(arch), self._latents(pres)
        tokens = self.archived_prior(z_ref, z_arch)
        ref_f = z_ref.repeat_interleave(f, dim=0)
        out: dict[str, Tensor] = {}
        motion, memories, temporal = None, None, False
        if stage == "3":
            temporal = True
            motion = self.motion_embed(batch["motion"], self.audio_encoder(batch["audio"], f).detach())
            a = z_arch.shape[1]
            if a:
                with torch.no_grad():  # memory from the archived (previous) frames, clean, as in generation
                    zero = torch.zeros(b * a, dtype=torch.long, device=ref.device)
                    _, memories = self.denoiser(z_arch.flatten(0, 1), zero, z_ref.repeat_interleave(a, 0),
                                                tokens, None, a, None, True)
        if t is not None:
            t = t.repeat_interleave(f)

        def eps_img(x: Tensor, tt: Tensor) -> Tensor:
            return self.denoiser(x, tt, ref_f, tokens, motion, f, memories, temporal)[0]

        x0 = z_pres.flatten(0, 1)
        loss = noise_loss(self.schedule, eps_img, x0, t, noise, generator)
        out["denoise_mse"] = loss.detach()
        if stage == "1" and not self.vae.pretrained:
            rec = self.vae.recon_loss(torch.cat([ref, pres[:, -1]]), generator=generator)  # 2 frames per window keep it cheap
            out["vae_rec"] = rec.detach()
            loss = loss + rec
        out["loss"] = loss
        return out

    # -------------------------------------------------------------- generation
    @torch.no_grad()
    def encode_reference(self, img: Tensor) -> Tensor:
        """(B, 3, H, W) in [-1, 1] (cfg.image_size²) -> reference latent (B, C, h, w)."""
        return self.vae.encode(img)

    @torch.no_grad()
    def generate_clip(self, ref: Tensor, archived: Tensor | None, audio: Tensor, memory: ClipMemory | None = None,
                      ref_motion: Tensor | None = None, steps: int = 25, generator: torch.Generator | None = None,
                      ) -> tuple[Tensor, ClipMemory]:
        """One present clip of F = len(audio) / 640 frames.

        ref: reference latent (B,C,h,w) from encode_reference; archived: (B,A,3,H,W) frames to continue from, or
        None to use memory.archived (or the reference repeated, at the start); audio: (B, F*640) 16 kHz;
        ref_motion: (B,105) motion tokens of the reference (mcdm_model.motion.motion_tokens), zeros if None.
        Returns frames (B, F, 3, H, W) in [-1, 1] and the memory for the next clip."""
        cfg, dev = self.cfg, ref.device
        b, a = ref.shape[0], cfg.archived_frames
        f = audio.shape[-1] // cfg.samples_per_frame
        memory = memory or ClipMemory()
        if archived is not None:
            z_arch = self._latents(archived)
        elif memory.archived is not None:
            z_arch = memory.archived
        else:
            z_arch = ref[:, None].expand(b, a, *ref.shape[1:])
        ref_motion = torch.zeros(b, MOTION_DIM, device=dev) if ref_motion is None else ref_motion
        prefix = memory.motion if memory.motion is not None else ref_motion[:, None].expand(b, a, MOTION_DIM)
        feats = self.audio_encoder(audio, f)
        motion = ddim_sample(self.schedule, lambda x, t: self.motion_prior(x, t, prefix, feats, ref, ref_motion),
                             (b, f, MOTION_DIM), steps, device=dev, generator=generator)
        tokens = self.archived_prior(ref, z_arch)
        mtok = self.motion_embed(motion, feats)
        ref_f = ref.repeat_interleave(f, dim=0)
        mem = memory.temporal

        def eps(x: Tensor, t: Tensor) -> Tensor:
            return self.denoiser(x, t, ref_f, tokens, mtok, f, mem, True)[0]

        z = ddim_sample(self.schedule, eps, (b * f, cfg.latent_channels, cfg.latent_size, cfg.latent_size), steps,
                        device=dev, generator=generator)
        zero = torch.zeros(b * f, dtype=torch.long, device=dev)
        _, new_mem = self.denoiser(z, zero, ref_f, tokens, mtok, f, mem, True)
        frames = self.vae.decode(z).unflatten(0, (b, f))
        z = z.unflatten(0, (b, f))
        nxt = ClipMemory(new_mem, z[:, -a:] if a else z[:, :0], motion[:, -a:] if a else motion[:, :0])
        return frames, nxt

    # ------------------------------------------------------------ checkpoints
    @classmethod
    def load_checkpoint(cls, path: str | Path, ema: bool = True, map_location: str = "cpu") -> MCDM:
        """Rebuild the model from a train.py checkpoint (config inside); EMA weights by default."""
        ckpt = torch.load(str(path), map_location=map_location, weights_only=False)
        model = cls(from_dict(ModelConfig, ckpt["model_config"]))
        state = ckpt["ema"] if ema and ckpt.get("ema") else ckpt["model"]
        model.load_state_dict(state)
        return model.eval()
