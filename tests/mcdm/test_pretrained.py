"""Pretrained parts in their upstream layouts: a diffusers UNet (SD-1.5-shaped at MCDM-B), a CLIP image encoder,
and checkpoints that rebuild every part from their own config on a machine without the models dir."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from mcdm_model.config import model_config, to_dict
from mcdm_model.model import MCDM
from mcdm_model.modules.denoiser import Denoiser, unet_config
from mcdm_model.modules.image_encoder import CLIPImageEncoder, ScratchImageEncoder
from mcdm_model.modules.mcdm_attention import MCDMContext
from pipeline.media import read_frames

SD15 = dict(cross_attention_dim=768)  # diffusers' UNet2DConditionModel defaults + this = the SD-1.5 UNet config


def _tiny_clip(path: Path, projection_dim: int = 64) -> None:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8, projection_dim=projection_dim)
    CLIPVisionModelWithProjection(cfg).save_pretrained(path)


def test_tiny_unet_in_diffusers_layout_loads(tmp_path: Path, no_models_dir: str) -> None:
    """A UNet saved by diffusers (4-channel conv_in, like SD-1.5) loads into MCDM-T's denoiser: every SD key
    copied, the reference half of conv_in zero, MCDM's processors untouched; a mismatching one is refused."""
    cfg = model_config("MCDM-T", models_dir=str(tmp_path), unet_pretrained="sd")
    kw = {**unet_config(cfg), "in_channels": 4}
    torch.manual_seed(1)
    UNet2DConditionModel(**kw).save_pretrained(tmp_path / "sd" / "unet")
    src = UNet2DConditionModel.from_pretrained(tmp_path / "sd" / "unet")
    den = Denoiser(cfg)
    assert den.pretrained_from == str(tmp_path / "sd" / "unet")
    own = den.unet.state_dict()
    for k, v in src.state_dict().items():
        if k == "conv_in.weight":
            torch.testing.assert_close(own[k][:, :4], v)
            assert own[k][:, 4:].abs().max() == 0
        else:
            assert torch.equal(own[k], v), k
    assert all(own[k].abs().sum() == 0 for k in own if k.endswith("to_v_arch.weight"))  # still zero-initialised
    torch.manual_seed(2)
    UNet2DConditionModel(**{**kw, "block_out_channels": (32, 96)}).save_pretrained(tmp_path / "bad" / "unet")
    with pytest.raises(ValueError, match="do not fit"):
        Denoiser(model_config("MCDM-T", models_dir=str(tmp_path), unet_pretrained="bad"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        Denoiser(model_config("MCDM-T", models_dir=str(tmp_path), unet_pretrained="empty"))


def _write_sd15_unet(d: Path) -> dict[str, tuple[int, ...]]:
    """An SD-1.5-shaped UNet (diffusers config, random weights) in the diffusers layout, written shard by shard
    so that the whole model never sits in memory twice; returns {key: shape}."""
    from safetensors.torch import save_file

    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD15)
    d.mkdir(parents=True)
    unet.save_config(d)
    shapes = {k: tuple(v.shape) for k, v in unet.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    weight_map, shard, size, n = {}, {}, 0, 0
    for i, (k, shp) in enumerate(shapes.items()):
        shard[k] = torch.randn(shp, generator=g) * 0.02
        size += shard[k].numel()
        if size > 100e6 or i == len(shapes) - 1:
            name = f"diffusion_pytorch_model-{n:05d}.safetensors"
            save_file(shard, str(d / name))
            weight_map.update(dict.fromkeys(shard, name))
            shard, size, n = {}, 0, n + 1
    (d / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return shapes


@pytest.mark.slow
def test_sd15_shaped_unet_loads_into_mcdm_b(tmp_path: Path) -> None:
    """MCDM-B's denoiser takes an SD-1.5-shaped state dict saved in the diffusers layout (sharded safetensors +
    index), and with MCDM's zero-initialised attentions computes exactly what that SD UNet computes."""
    from diffusers.models.attention_processor import AttnProcessor2_0
    from safetensors import safe_open

    d = tmp_path / "stable-diffusion-v1-5" / "unet"
    shapes = _write_sd15_unet(d)
    assert sum(int(np.prod(s)) for s in shapes.values()) == 859_520_964  # the SD-1.5 UNet
    torch.manual_seed(0)
    cfg = model_config("MCDM-B", models_dir=str(tmp_path))
    den = Denoiser(cfg).eval()
    assert den.pretrained_from == str(d)
    own = den.unet.state_dict()
    index = json.loads((d / "diffusion_pytorch_model.safetensors.index.json").read_text())["weight_map"]
    for k in ("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight", "mid_block.resnets.0.conv1.weight",
              "up_blocks.3.attentions.2.proj_out.bias", "conv_in.weight"):
        with safe_open(str(d / index[k]), framework="pt") as st:
            v = st.get_tensor(k)
        assert torch.equal(own[k][:, :4] if k == "conv_in.weight" else own[k], v), k
    x, t = torch.randn(2, 4, 8, 8), torch.full((2,), 400)
    ctx_tokens = torch.randn(1, 3, 768)
    ctx = MCDMContext(frames=2, archived=torch.randn(1, 10, cfg.token_dim), motion=torch.randn(2, 4, cfg.token_dim),
                      temporal=True)
    with torch.no_grad():
        ours = den(x, t, torch.randn(2, 4, 8, 8), ctx_tokens, ctx)
        den.unet.set_attn_processor(AttnProcessor2_0())
        sd = den.unet(torch.cat([x, torch.zeros_like(x)], 1), t, encoder_hidden_states=ctx_tokens.expand(2, -1, -1)).sample
    torch.testing.assert_close(ours, sd, atol=1e-4, rtol=1e-3)


def test_clip_image_encoder_loads_and_checkpoint_is_portable(tmp_path: Path, shared_media: Path) -> None:
    """With a CLIPVisionModelWithProjection in <models_dir>/image_encoder, an SD VAE in sd-vae/ and wav2vec2,
    MCDM uses them frozen; its config records their architectures, so the model rebuilds and gives identical
    outputs after the models dir is gone (a checkpoint moved to another machine)."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    models = tmp_path / "models"
    _tiny_clip(models / "image_encoder")
    AutoencoderKL(block_out_channels=(8, 16, 16, 16), down_block_types=("DownEncoderBlock2D",) * 4,
                  up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=4, latent_channels=4,
                  scaling_factor=0.5).save_pretrained(models / "sd-vae")
    Wav2Vec2Model(Wav2Vec2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                 conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
                  ).save_pretrained(models / "wav2vec2-base-960h")
    torch.manual_seed(0)
    model = MCDM(model_config("MCDM-T", models_dir=str(models))).eval()
    enc = model.image_encoder
    assert isinstance(enc, CLIPImageEncoder) and not any(p.requires_grad for p in enc.clip.parameters())
    assert all(id(p) not in {id(q) for q in model.stage_parameters("1")} for p in enc.clip.parameters())
    frames = read_frames(shared_media / "video_av" / "hdtf_WDA_AOC_en_8s.mp4", 0.0, 0.04, size=(64, 64))
    other = read_frames(shared_media / "video_av" / "hdtf_WDA_KatieHill_en_8s.mp4", 0.0, 0.04, size=(64, 64))
    img = torch.from_numpy(np.concatenate([frames, other])).permute(0, 3, 1, 2).float() / 127.5 - 1
    ref = model.encode_reference(img)
    assert ref.tokens.shape == (2, 17, 64)  # CLIP's 16 patches + class token, in its projection space
    with torch.no_grad():  # identity-initialised map: the tokens are CLIP's own projected tokens
        x = torch.nn.functional.interpolate((img + 1) / 2, size=(32, 32), mode="bicubic").clamp(0, 1)
        h = enc.clip(pixel_values=(x - enc.mean) / enc.std).last_hidden_state
        h = enc.clip.visual_projection(enc.clip.vision_model.post_layernorm(h))
    torch.testing.assert_close(ref.tokens, h)
    assert (ref.tokens[0] - ref.tokens[1]).abs().mean() > 1e-3  # two people, two different token sets
    cfg = to_dict(model.cfg, portable=True)
    assert "models_dir" not in cfg and cfg["image_encoder_config"] and cfg["vae_config"] and cfg["wav2vec2_config"]
    state = model.state_dict()
    shutil.rmtree(models)
    again = MCDM.from_config(json.loads(json.dumps(cfg)))
    again.load_state_dict(state)
    again.eval()
    ref2 = again.encode_reference(img)
    torch.testing.assert_close(ref2.tokens, ref.tokens)
    torch.testing.assert_close(ref2.latent, ref.latent)
    assert again.vae.pretrained and isinstance(again.image_encoder, CLIPImageEncoder)
    assert isinstance(MCDM(model_config("MCDM-T", models_dir=str(models))).image_encoder, ScratchImageEncoder)
