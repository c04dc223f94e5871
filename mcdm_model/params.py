"""Parameter count of every MCDM size, part by part: python -m mcdm_model.params [--size MCDM-B].

Models are built on the meta device (no memory), with the scratch encoders a size gets when no pretrained parts are
installed; the UNet row is diffusers' UNet2DConditionModel with MCDM's processors split out (for MCDM-B the UNet
without them is the SD-1.5 config: 859.5 M, plus 11.5 K for the reference half of conv_in).
"""

from __future__ import annotations

import argparse

import torch

from mcdm_model.config import SIZES, model_config


def count(size: str) -> dict[str, int]:
    """{part: parameters} for one size (scratch VAE / audio / image encoders)."""
    from mcdm_model.model import MCDM

    with torch.device("meta"):
        m = MCDM(model_config(size, models_dir="/nonexistent"), pretrained=False)
    n = lambda ps: sum(p.numel() for p in ps)  # noqa: E731
    den = list(m.denoiser.named_parameters())
    out = {
        "unet (diffusers)": n(p for k, p in den if ".processor." not in k),
        "mcdm attention processors": n(p for k, p in den if ".processor." in k),
        "vae": n(m.vae.parameters()), "image encoder": n(m.image_encoder.parameters()),
        "audio encoder": n(m.audio_encoder.parameters()), "archived prior": n(m.archived_prior.parameters()),
        "motion prior": n(m.motion_prior.parameters()), "motion embed": n(m.motion_embed.parameters()),
    }  # fmt: skip
    out["total"] = sum(out.values())
    return out


def main(argv: list[str] | None = None) -> dict[str, dict[str, int]]:
    p = argparse.ArgumentParser(prog="python -m mcdm_model.params", description=__doc__.split("\n")[0])
    p.add_argument("--size", action="append", choices=list(SIZES), help="size(s) to count (default all)")
    a = p.parse_args(argv)
    res = {s: count(s) for s in a.size or SIZES}
    parts = list(next(iter(res.values())))
    print("| part | " + " | ".join(res) + " |\n|---|" + "---:|" * len(res))
    for part in parts:
        print(f"| {part} | " + " | ".join(f"{res[s][part] / 1e6:.2f} M" for s in res) + " |")
    return res


if __name__ == "__main__":
    main()
