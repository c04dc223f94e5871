"""MCDM: the whole model (VAE, audio and image encoders, archived prior, motion-prior diffusion, UNet) and its API.

Training calls `loss(batch, stage)`; generation calls `encode_reference` once and `generate_clip` per clip,
carrying a `ClipMemory` (temporal memories + the last frames' latents and motion) from clip to clip. Training
matches generation: one diffusion step t per clip; in stage 3 the memory of the present clip is built exactly as
generation builds it (a t=0 pass over each earlier clip of the take, with its motion tokens, chained); conditions
are dropped per sample with probability `cond_drop`, and generation may use classifier-free guidance.
See mcdm_model/README.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from mcdm_model.config import ModelConfig, from_dict
from mcdm_model.diffusion import Schedule, noise_loss, sample
from mcdm_model.modules.archived_prior import ArchivedClipPrior
from mcdm_model.modules.audio_encoder import build_audio_encoder
from mcdm_model.modules.denoiser import Denoiser
from mcdm_model.modules.image_encoder import build_image_encoder
from mcdm_model.modules.mcdm_attention import MCDMContext
from mcdm_model.modules.motion_diffusion import MotionPriorDiffusion
from mcdm_model.modules.vae import VAE
from mcdm_model.motion import GROUPS, MOTION_DIM

STAGES = ("1", "2", "3")
TEMPORAL_MODES = ("memory", "none", "full")


@dataclass
class ClipMemory:
    """State carried between generated clips: per-block temporal memories, archived latents, motion prefix."""

    temporal: list[Tensor] | None = None
    archived: Tensor | None = None  # (B, A, C, h, w) latents of the last generated frames
    motion: Tensor | None = None  # (B, A, 105)


@dataclass
class Reference:
    """The portrait, encoded once: VAE latent (B,C,h,w), image tokens (B,L,D), motion tokens (B,105)."""

    latent: Tensor
    tokens: Tensor
    motion: Tensor


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


def _bcast(keep: Tensor, x: Tensor) -> Tensor:
    return keep.view(-1, *([1] * (x.dim() - 1))).to(x.dtype)


class MCDM(nn.Module):
    def __init__(self, cfg: ModelConfig, pretrained: bool = True) -> None:
        """pretrained=True looks for pretrained parts under cfg.models_dir; a checkpoint rebuilds with False."""
        super().__init__()
        if cfg.temporal_mode not in TEMPORAL_MODES:
            raise ValueError(f"temporal_mode must be {' | '.join(TEMPORAL_MODES)}, got {cfg.temporal_mode!r}")
        self.vae = VAE(cfg, pretrained)
        self.audio_encoder = build_audio_encoder(cfg, pretrained)
        self.image_encoder = build_image_encoder(cfg, pretrained)
        # Record the architectures actually built, so a checkpoint rebuilds them on any machine.
        cfg_of = [getattr(m, "config_dict", lambda: None)() for m in (self.audio_encoder, self.image_encoder)]
        self.cfg = cfg = dataclasses.replace(cfg, vae_config=self.vae.config_dict(), vae_scale=self.vae.scale,
                                             wav2vec2_config=cfg_of[0], image_encoder_config=cfg_of[1])
        self.archived_prior = ArchivedClipPrior(cfg)
        self.motion_prior = MotionPriorDiffusion(cfg)
        self.motion_embed = MotionEmbed(cfg)
        self.denoiser = Denoiser(cfg, pretrained)
        self.schedule = Schedule(cfg.num_timesteps, cfg.schedule)

    # ---------------------------------------------------------------- training
    def stage_parameters(self, stage: str) -> list[nn.Parameter]:
        """Stage 1: image encoder, archived prior, the UNet (SD keys) + archived cross-attention, scratch VAE.
        Stage 2: motion prior + audio encoder. Stage 3: motion cross-attention, temporal attention, motion embed.
        Frozen pretrained parts (CLIP, wav2vec2, SD VAE) are never trained."""
        den = list(self.denoiser.named_parameters())
        if stage == "1":
            ps = [p for n, p in den if ".processor." not in n or "_arch" in n]
            ps += [p for n, p in self.image_encoder.named_parameters() if not n.startswith("clip.")]
            ps += list(self.archived_prior.parameters()) + ([] if self.vae.pretrained else list(self.vae.parameters()))
            return ps
        if stage == "2":
            audio = [p for n, p in self.audio_encoder.named_parameters() if not n.startswith("w2v.")]
            return list(self.motion_prior.parameters()) + audio
        if stage == "3":
            return [p for n, p in den if ".processor." in n and "_arch" not in n] + list(self.motion_embed.parameters())
        raise ValueError(f"unknown stage {stage!r} (1 | 2 | 3)")

    def _latents(self, x: Tensor) -> Tensor:
        """(B, T, 3, H, W) -> (B, T, C, h, w) without gradient into the VAE."""
        return self.vae.latents(x.flatten(0, 1)).unflatten(0, x.shape[:2])

    def _keep(self, b: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
        """(B,) 1 = keep the conditions, 0 = drop them (classifier-free training), drawn per sample."""
        u = torch.rand(b, device=device, generator=generator)
        return (u >= self.cfg.cond_drop).float() if self.training else torch.ones(b, device=device)

    def _context(self, tokens: Tensor | None, mtok: Tensor | None, f: int, memory: list[Tensor] | None) -> MCDMContext:
        mem = memory if self.cfg.temporal_mode != "none" else None
        return MCDMContext(frames=f, archived=tokens, motion=mtok, temporal=mtok is not None, memory_in=mem)

    def _memory_pass(self, z: Tensor, ref: Reference, tokens: Tensor | None, mtok: Tensor,
                     memory: list[Tensor] | None) -> list[Tensor]:
        """New temporal memory after clean clip z (B, F, C, h, w): a t=0 pass, as generation does after each clip."""
        b, f = z.shape[:2]
        ctx = self._context(tokens, mtok, f, memory)
        zero = torch.zeros(b * f, dtype=torch.long, device=z.device)
        self.denoiser(z.flatten(0, 1), zero, ref.latent.repeat_interleave(f, 0), ref.tokens, ctx)
        return [ctx.memory_out[i] for i in range(self.denoiser.n_memories)]

    def loss(self, batch: dict, stage: str, generator: torch.Generator | None = None,
             t: Tensor | None = None, noise: Tensor | None = None) -> dict[str, Tensor]:
        """Losses of one stage on a batch of chained windows (present = W clips of F frames, archived = the A
        frames before them); the loss is on the last clip. t (one per sample) / noise fix the draw."""
        cfg = self.cfg
        f, a = cfg.present_frames, cfg.archived_frames
        ref_img, pres = batch["ref"], batch["present"]
        b, w = pres.shape[0], pres.shape[1] // f
        keep = self._keep(b, pres.device, generator)
        motion_all = torch.cat([batch["motion_archived"], batch["motion"]], 1)  # (B, A + W*F, 105)
        audio = batch["audio"].reshape(b * w, -1)
        if stage == "2":
            z_ref = self.vae.latents(ref_img) * _bcast(keep, ref_img)
            feats = self.audio_encoder(audio, f).unflatten(0, (b, w))[:, -1] * keep[:, None, None]
            prefix, rm = motion_all[:, -f - a : -f], batch["motion_ref"] * keep[:, None]

            def eps(x: Tensor, tt: Tensor) -> Tensor:
                return self.motion_prior(x, tt, prefix, feats, z_ref, rm)

            loss = noise_loss(self.schedule, eps, batch["motion"][:, -f:], t, noise, generator)
            return {"loss": loss, "motion_mse": loss.detach()}
        frames = torch.cat([batch["archived"], pres], 1)
        if stage == "1":  # the image path on the last clip; only the frames it needs are encoded
            frames, motion_all, w = frames[:, -f - a :], motion_all[:, -f - a :], 1
        z_all = self._latents(frames)  # (B, A + W*F, C, h, w)
        ref = Reference(self.vae.latents(ref_img), self.image_encoder(ref_img), batch["motion_ref"])
        out: dict[str, Tensor] = {}
        mtoks, memory = None, None
        if stage == "3":
            feats = self.audio_encoder(audio, f).detach().unflatten(0, (b, w))
            mtoks = [self.motion_embed(motion_all[:, a + j * f : a + (j + 1) * f], feats[:, j]) for j in range(w)]
            with torch.no_grad():  # the memory of the present clip, built over the earlier clips as in generation
                for j in range(w - 1):
                    tok = self._arch_tokens(ref.latent, z_all[:, j * f : j * f + a])
                    memory = self._memory_pass(z_all[:, a + j * f : a + (j + 1) * f], ref, tok, mtoks[j], memory)
        tokens = self._arch_tokens(ref.latent, z_all[:, -f - a : -f])
        mtok = None if mtoks is None else mtoks[-1] * keep.repeat_interleave(f)[:, None, None]
        ctx = self._context(tokens, mtok, f, memory)
        ref_f = (ref.latent * _bcast(keep, ref.latent)).repeat_interleave(f, 0)
        ref_tok = ref.tokens * keep[:, None, None]
        if t is None:
            t = self.schedule.sample_t(b, pres.device, generator)

        def eps_img(x: Tensor, tt: Tensor) -> Tensor:
            return self.denoiser(x, tt, ref_f, ref_tok, ctx)

        loss = noise_loss(self.schedule, eps_img, z_all[:, -f:].flatten(0, 1), t.repeat_interleave(f), noise, generator)
        out["denoise_mse"] = loss.detach()
        if stage == "1" and not self.vae.pretrained:
            rec = self.vae.recon_loss(torch.cat([ref_img, pres[:, -1]]), generator=generator)  # 2 frames keep it cheap
            out["vae_rec"] = rec.detach()
            loss = loss + rec
        out["loss"] = loss
        return out

    def _arch_tokens(self, ref_latent: Tensor, z_arch: Tensor) -> Tensor | None:
        return self.archived_prior(ref_latent, z_arch) if self.cfg.use_archived else None

    # -------------------------------------------------------------- generation
    @torch.no_grad()
    def encode_reference(self, img: Tensor, ref_motion: Tensor | None = None) -> Reference:
        """(B, 3, H, W) in [-1, 1] (cfg.image_size²) and its (B, 105) motion tokens (zeros if None)."""
        motion = torch.zeros(img.shape[0], MOTION_DIM, device=img.device) if ref_motion is None else ref_motion
        return Reference(self.vae.encode(img), self.image_encoder(img), motion.to(img.device).float())

    @torch.no_grad()
    def generate_clip(self, ref: Reference, archived: Tensor | None, audio: Tensor, memory: ClipMemory | None = None,
                      steps: int = 25, guidance: float = 1.0, sampler: str = "ddim",
                      generator: torch.Generator | None = None) -> tuple[Tensor, ClipMemory]:
        """One present clip of F = len(audio) / 640 frames.

        ref: from encode_reference; archived: (B,A,3,H,W) frames to continue from, or None to use memory.archived
        (or the reference repeated, at the start); audio: (B, F*640) 16 kHz; guidance > 1: classifier-free
        guidance (conditional vs. reference + audio dropped; the history is kept in both).
        Returns frames (B, F, 3, H, W) in [-1, 1] and the memory for the next clip."""
        cfg, dev = self.cfg, ref.latent.device
        b, a = ref.latent.shape[0], cfg.archived_frames
        f = audio.shape[-1] // cfg.samples_per_frame
        memory = memory or ClipMemory()
        if archived is not None:
            z_arch = self._latents(archived)
        elif memory.archived is not None:
            z_arch = memory.archived
        else:
            z_arch = ref.latent[:, None].expand(b, a, *ref.latent.shape[1:])
        prefix = memory.motion if memory.motion is not None else ref.motion[:, None].expand(b, a, MOTION_DIM)
        feats = self.audio_encoder(audio, f)
        motion = sample(self.schedule, self._motion_eps(prefix, feats, ref, guidance), (b, f, MOTION_DIM), steps,
                        sampler, dev, generator)
        tokens = self._arch_tokens(ref.latent, z_arch)
        mtok = self.motion_embed(motion, feats)
        mem = memory.temporal
        eps = self._image_eps(ref, tokens, mtok, f, mem, guidance)
        z = sample(self.schedule, eps, (b * f, cfg.latent_channels, cfg.latent_size, cfg.latent_size), steps,
                   sampler, dev, generator).unflatten(0, (b, f))
        new_mem = self._memory_pass(z, ref, tokens, mtok, mem)
        frames = self.vae.decode(z.flatten(0, 1)).unflatten(0, (b, f))
        return frames, ClipMemory(new_mem, z[:, -a:] if a else z[:, :0], motion[:, -a:] if a else motion[:, :0])

    def _motion_eps(self, prefix: Tensor, feats: Tensor, ref: Reference, g: float):
        def eps(x: Tensor, t: Tensor) -> Tensor:
            if g == 1.0:
                return self.motion_prior(x, t, prefix, feats, ref.latent, ref.motion)
            two = lambda v: torch.cat([v, torch.zeros_like(v)])  # noqa: E731 - conditional, then dropped
            e_c, e_u = self.motion_prior(torch.cat([x, x]), torch.cat([t, t]), torch.cat([prefix, prefix]),
                                         two(feats), two(ref.latent), two(ref.motion)).chunk(2)
            return e_u + g * (e_c - e_u)

        return eps

    def _image_eps(self, ref: Reference, tokens: Tensor | None, mtok: Tensor, f: int, mem: list[Tensor] | None,
                   g: float):
        ref_f = ref.latent.repeat_interleave(f, 0)
        if g == 1.0:
            ctx = self._context(tokens, mtok, f, mem)
            return lambda x, t: self.denoiser(x, t, ref_f, ref.tokens, ctx)
        dup = lambda v: None if v is None else torch.cat([v, v])  # noqa: E731
        ctx = self._context(dup(tokens), torch.cat([mtok, torch.zeros_like(mtok)]), f,
                            None if mem is None else [dup(m) for m in mem])
        ref2, tok2 = torch.cat([ref_f, torch.zeros_like(ref_f)]), torch.cat([ref.tokens, torch.zeros_like(ref.tokens)])

        def eps(x: Tensor, t: Tensor) -> Tensor:
            e_c, e_u = self.denoiser(torch.cat([x, x]), torch.cat([t, t]), ref2, tok2, ctx).chunk(2)
            return e_u + g * (e_c - e_u)

        return eps

    # ------------------------------------------------------------ checkpoints
    @classmethod
    def from_config(cls, model_config: dict) -> MCDM:
        """The architecture a checkpoint records, built without looking at any models dir (weights to load)."""
        return cls(from_dict(ModelConfig, model_config), pretrained=False)

    @classmethod
    def load_checkpoint(cls, path: str | Path, ema: bool = True, map_location: str = "cpu") -> MCDM:
        """Rebuild the model from a train.py checkpoint (config + state dict); EMA weights by default."""
        ckpt = torch.load(str(path), map_location=map_location, weights_only=False)
        model = cls.from_config(ckpt["model_config"])
        state = ckpt["ema"] if ema and ckpt.get("ema") else ckpt["model"]
        model.load_state_dict(state)
        return model.eval()
