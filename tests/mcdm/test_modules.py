"""MCDM modules: VAE loading, audio encoder, archived prior, motion-prior causality, UNet processors, samplers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL

from mcdm_model.config import SIZES, model_config
from mcdm_model.diffusion import Schedule, noise_loss, sample
from mcdm_model.model import MCDM
from mcdm_model.modules.archived_prior import ArchivedClipPrior
from mcdm_model.modules.audio_encoder import build_audio_encoder
from mcdm_model.modules.denoiser import Denoiser
from mcdm_model.modules.mcdm_attention import MCDMContext
from mcdm_model.modules.motion_diffusion import MotionPriorDiffusion
from mcdm_model.modules.vae import VAE
from pipeline.media import read_audio
from tests.helpers.torch_init import randomize_zero_params


def test_vae_scratch_shapes(no_models_dir: str) -> None:
    cfg = model_config("MCDM-T", models_dir=no_models_dir)
    vae = VAE(cfg)
    assert not vae.pretrained
    z = vae.encode(torch.rand(2, 3, 64, 64) * 2 - 1)
    assert z.shape == (2, 4, cfg.latent_size, cfg.latent_size) == (2, 4, 8, 8)
    assert vae.decode(z).shape == (2, 3, 64, 64)
    assert vae.recon_loss(torch.zeros(1, 3, 64, 64)).requires_grad


@pytest.mark.parametrize("layout", ["flat", "sd15"])
def test_vae_loads_diffusers_weights(tmp_path: Path, layout: str) -> None:
    ae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                       up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=4, latent_channels=4,
                       scaling_factor=0.5)
    target = tmp_path / "sd-vae" / ("vae" if layout == "sd15" else "")
    ae.save_pretrained(str(target))
    vae = VAE(model_config("MCDM-T", models_dir=str(tmp_path)))
    assert vae.pretrained and vae.scale == 0.5
    assert not any(p.requires_grad for p in vae.parameters())
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(vae.encode(x), ae.encode(x).latent_dist.mode() * 0.5)
    assert float(vae.recon_loss(x)) == 0.0


def test_vae_incomplete_dir_names_missing_file(tmp_path: Path) -> None:
    (tmp_path / "sd-vae").mkdir()
    (tmp_path / "sd-vae" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="diffusion_pytorch_model.safetensors"):
        VAE(model_config("MCDM-T", models_dir=str(tmp_path)))


def test_audio_encoder_on_real_speech(shared_media: Path, no_models_dir: str) -> None:
    cfg = model_config("MCDM-T", models_dir=no_models_dir)
    enc = build_audio_encoder(cfg)
    speech = torch.from_numpy(read_audio(shared_media / "audio" / "en" / "jfk_11s.flac", 1.0, 1.4)).float()
    wav = torch.stack([speech[: 10 * 640], torch.zeros(10 * 640)])
    feats = enc(wav, 10)
    assert feats.shape == (2, 10, cfg.audio_dim)
    assert (feats[0] - feats[1]).abs().mean() > 1e-3  # speech and silence differ
    mel = enc.mel(wav)
    assert mel.shape == (2, cfg.n_mels, 40)  # 4 mel frames per video frame
    assert mel[0].mean() > mel[1].mean() + 5  # log energy of speech far above silence


def test_wav2vec2_dir_needs_config(tmp_path: Path) -> None:
    (tmp_path / "wav2vec2-base-960h").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        build_audio_encoder(model_config("MCDM-T", models_dir=str(tmp_path)))


def test_wav2vec2_loads_a_transformers_checkpoint(tmp_path: Path, shared_media: Path) -> None:
    """A wav2vec2 dir in the HF layout (config.json + model.safetensors, as facebook/wav2vec2-base-960h ships) is
    loaded frozen, its 50 Hz features resampled to one per video frame; speech and silence give different features.
    The checkpoint is a small random-init one saved here with transformers itself (the real one is not offline)."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from mcdm_model.modules.audio_encoder import Wav2Vec2Encoder

    small = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                           conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)  # fmt: skip
    torch.manual_seed(0)
    Wav2Vec2Model(small).save_pretrained(tmp_path / "wav2vec2-base-960h")
    assert (tmp_path / "wav2vec2-base-960h" / "config.json").is_file()
    cfg = model_config("MCDM-T", models_dir=str(tmp_path))
    enc = build_audio_encoder(cfg)
    assert isinstance(enc, Wav2Vec2Encoder)
    assert not any(p.requires_grad for p in enc.w2v.parameters())
    assert all(p.requires_grad for p in enc.proj.parameters())
    speech = torch.from_numpy(read_audio(shared_media / "audio" / "en" / "jfk_11s.flac", 1.0, 1.4)).float()
    wav = torch.stack([speech[: 10 * 640], torch.zeros(10 * 640)])
    feats = enc(wav, 10)
    assert feats.shape == (2, 10, cfg.audio_dim) and torch.isfinite(feats).all()
    assert (feats[0] - feats[1]).abs().mean() > 1e-3
    feats.sum().backward()  # gradients reach the projection only
    assert enc.proj.weight.grad is not None and all(p.grad is None for p in enc.w2v.parameters())


def test_archived_prior_tokens_follow_history() -> None:
    cfg = model_config("MCDM-T")
    prior = ArchivedClipPrior(cfg).eval()
    ref, arch = torch.randn(2, 4, 8, 8), torch.randn(2, cfg.archived_frames, 4, 8, 8)
    tok = prior(ref, arch)
    n = (8 // cfg.patch_size) ** 2
    assert tok.shape == (2, (cfg.archived_frames + 1) * n, cfg.token_dim)
    arch2 = arch.clone()
    arch2[1] += 1.0
    tok2 = prior(ref, arch2)
    torch.testing.assert_close(tok2[0], tok[0])  # batch items are independent
    assert (tok2[1] - tok[1]).abs().max() > 1e-3
    assert prior(ref, arch[:, :0]).shape == (2, n, cfg.token_dim)


def test_motion_prior_is_causal_over_frames() -> None:
    cfg = model_config("MCDM-T")
    mp = MotionPriorDiffusion(cfg).eval()
    randomize_zero_params(mp)
    f, a = cfg.present_frames, cfg.archived_frames
    x, t = torch.randn(1, f, 105), torch.tensor([500])
    args = (torch.randn(1, a, 105), torch.randn(1, f, cfg.audio_dim), torch.randn(1, 4, 8, 8), torch.randn(1, 105))
    out = mp(x, t, *args)
    x2 = x.clone()
    x2[:, 2] += 1.0
    out2 = mp(x2, t, *args)
    torch.testing.assert_close(out2[:, :2], out[:, :2])  # earlier frames do not see frame 2
    assert (out2[:, 2:] - out[:, 2:]).abs().max() > 1e-4
    audio2 = args[1].clone()
    audio2[:, 3] += 1.0
    out3 = mp(x, t, args[0], audio2, *args[2:])
    torch.testing.assert_close(out3[:, :3], out[:, :3])
    assert (out3[:, 3] - out[:, 3]).abs().max() > 1e-4  # FiLM brings the frame's audio in


def test_denoiser_temporal_memory_and_causality(no_models_dir: str) -> None:
    cfg = model_config("MCDM-T", models_dir=no_models_dir)
    den = Denoiser(cfg).eval()
    randomize_zero_params(den)
    f = cfg.present_frames
    x, ref = torch.randn(f, 4, 8, 8), torch.randn(f, 4, 8, 8)
    t, arch, mot = torch.full((f,), 300), torch.randn(1, 12, cfg.token_dim), torch.randn(f, 4, cfg.token_dim)
    rtok = torch.randn(1, 5, cfg.cross_attention_dim)

    def run(xx, mem=None, temporal=True):
        ctx = MCDMContext(frames=f, archived=arch, motion=mot if temporal else None, temporal=temporal, memory_in=mem)
        out = den(xx, t, ref, rtok, ctx)
        return out, [ctx.memory_out.get(i) for i in range(den.n_memories)]

    out, mems = run(x)
    assert len(mems) == den.n_memories == 7 and all(m is not None for m in mems)  # 2 down, 1 mid, 2x2 up blocks
    assert mems[0].shape == (1, 64, cfg.unet_channels[0])
    x2 = x.clone()
    x2[3] += 1.0
    out2, _ = run(x2)
    torch.testing.assert_close(out2[:3], out[:3])  # frame 3 never leaks into earlier frames
    out_mem, mems2 = run(x, mems)
    assert (out_mem - out).abs().max() > 1e-4  # memory of earlier clips changes the present
    assert [m.shape for m in mems2] == [m.shape for m in mems]  # constant-size state
    off, none = run(x, mems, temporal=False)
    torch.testing.assert_close(off, run(x, None, temporal=False)[0])
    assert none == [None] * len(mems)


def test_extra_attentions_start_at_zero_and_unet_is_diffusers(no_models_dir: str) -> None:
    """With its zero inits, the MCDM UNet computes exactly what the plain diffusers UNet (default processors,
    reference half of conv_in unused) computes: SD-1.5 weights start out behaving as SD-1.5."""
    from diffusers import UNet2DConditionModel
    from diffusers.models.attention_processor import AttnProcessor2_0

    cfg = model_config("MCDM-T", models_dir=no_models_dir)
    torch.manual_seed(0)
    den = Denoiser(cfg).eval()
    assert isinstance(den.unet, UNet2DConditionModel)
    f = cfg.present_frames
    x, t = torch.randn(f, 4, 8, 8), torch.full((f,), 500)
    rtok = torch.randn(1, 7, cfg.cross_attention_dim)
    ctx = MCDMContext(frames=f, archived=torch.randn(1, 12, cfg.token_dim), motion=torch.randn(f, 4, cfg.token_dim),
                      temporal=True)
    with torch.no_grad():
        den.unet.conv_in.weight[:, 4:] = 0  # what loading SD-1.5 does to the reference half
        ours = den(x, t, torch.randn(f, 4, 8, 8), rtok, ctx)
        den.unet.set_attn_processor(AttnProcessor2_0())
        plain = den.unet(torch.cat([x, torch.zeros_like(x)], 1), t, encoder_hidden_states=rtok.expand(f, -1, -1)).sample
    torch.testing.assert_close(ours, plain, atol=1e-5, rtol=1e-4)


def test_archived_kv_projected_once_per_clip(no_models_dir: str) -> None:
    """Archived / reference tokens are projected to K/V once per sample (not per frame) and reused across all the
    sampler's steps of a clip; the result equals attending with the tokens repeated per frame."""
    torch.manual_seed(0)
    cfg = model_config("MCDM-T", models_dir=no_models_dir)
    model = MCDM(cfg).eval()
    randomize_zero_params(model.denoiser)
    calls: list[int] = []
    hook = model.denoiser.crosses[0].to_k_arch.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    ref = model.encode_reference(torch.rand(1, 3, 64, 64) * 2 - 1)
    model.generate_clip(ref, None, torch.randn(1, cfg.present_frames * 640) * 0.1, steps=4)
    hook.remove()
    assert calls == [1, 1]  # 4 sampler steps + the memory pass: one projection per context, batch B=1 not B*F
    proc, attn = model.denoiser.crosses[0], None
    for name, mod in model.denoiser.unet.named_modules():
        if name.endswith("transformer_blocks.0.attn2"):
            attn = mod
            break
    f, q = cfg.present_frames, torch.randn(cfg.present_frames, 64, cfg.unet_channels[0])
    arch, rtok = torch.randn(1, 12, cfg.token_dim), torch.randn(1, 5, cfg.cross_attention_dim)
    once = proc(attn, q, rtok, mcdm=MCDMContext(frames=f, archived=arch))
    per_frame = proc(attn, q, rtok.expand(f, -1, -1), mcdm=MCDMContext(frames=1, archived=arch.expand(f, -1, -1)))
    torch.testing.assert_close(once, per_frame, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(("kind", "sampler"), [("linear", "ddim"), ("cosine", "ddim"), ("linear", "dpm++")])
def test_schedule_and_samplers_recover_x0_with_oracle(kind: str, sampler: str) -> None:
    sch = Schedule(1000, kind)
    ab = sch.alphas_cumprod
    assert (ab[1:] < ab[:-1]).all() and ab[0] > 0.99 and ab[-1] < 0.01
    x0 = torch.randn(3, 5)
    noise = torch.randn(3, 5)
    near = sch.q_sample(x0, torch.zeros(3, dtype=torch.long), noise)
    assert ((near - x0).abs() <= 0.04 * noise.abs() + 0.01 * x0.abs() + 1e-6).all()  # t=0: almost clean
    far = sch.q_sample(x0, torch.full((3,), 999), noise)
    assert ((far - noise).abs() <= 0.1 * x0.abs() + 0.01 * noise.abs() + 1e-6).all()  # t=T-1: almost noise

    def oracle(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = sch.alphas_cumprod[t].view(-1, 1)
        return (x - a.sqrt() * x0) / (1 - a).sqrt()

    torch.testing.assert_close(sample(sch, oracle, (3, 5), steps=10, sampler=sampler), x0, atol=1e-3, rtol=1e-3)
    assert float(noise_loss(sch, oracle, x0)) < 1e-8
    assert float(noise_loss(sch, lambda x, t: torch.zeros_like(x), x0)) > 0.5
    with pytest.raises(ValueError, match="unknown sampler"):
        sch.sampler("euler")


def test_generate_clip_carries_constant_memory(no_models_dir: str) -> None:
    torch.manual_seed(0)
    cfg = model_config("MCDM-T", models_dir=no_models_dir)
    model = MCDM(cfg).eval()
    ref = model.encode_reference(torch.rand(1, 3, 64, 64) * 2 - 1)
    audio = torch.randn(1, 5 * 640) * 0.1
    frames, mem = model.generate_clip(ref, None, audio, steps=2)
    g_frames, _ = model.generate_clip(ref, None, audio, steps=2, guidance=3.0, sampler="dpm++")
    assert g_frames.shape == frames.shape and torch.isfinite(g_frames).all()
    assert frames.shape == (1, 5, 3, 64, 64) and frames.abs().max() <= 1.0
    assert mem.archived.shape == (1, cfg.archived_frames, 4, 8, 8) and mem.motion.shape == (1, 2, 105)
    shapes = [m.shape for m in mem.temporal]
    for _ in range(2):
        frames, mem = model.generate_clip(ref, None, audio, mem, steps=2)
        assert [m.shape for m in mem.temporal] == shapes


def test_size_registry_builds_paper_widths() -> None:
    from mcdm_model.params import count

    b = model_config("MCDM-B")
    assert b.image_size == 512 and b.latent_size == 64 and tuple(b.unet_channels[:3]) == (320, 640, 1280)
    assert set(SIZES) == {"MCDM-T", "MCDM-S", "MCDM-B"}
    n = sum(p.numel() for p in MCDM(model_config("MCDM-T", models_dir="/nonexistent")).parameters())
    assert 0.5e6 < n < 5e6  # tiny: a few M parameters
    with pytest.raises(ValueError, match="unknown setting"):
        model_config("MCDM-T", image_sise=32)
    assert np.isclose(b.temporal_alpha, 0.1)
    big = count("MCDM-B")  # built on the meta device: no memory
    # diffusers' UNet2DConditionModel with the SD-1.5 config has 859,520,964 parameters; ours adds the reference
    # half of conv_in (320 x 4 x 3 x 3); MCDM's attentions are separate processors
    assert big["unet (diffusers)"] == 859_520_964 + 320 * 4 * 9
    assert big["mcdm attention processors"] > 0
