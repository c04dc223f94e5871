"""Finding pretrained parts under the models dir and loading diffusers-layout weights with little memory.

Weights are read tensor by tensor (safetensors, single file or sharded with an index, or a torch .bin) and copied
into the already built module, so loading the 859.5 M-parameter SD-1.5 UNet needs the model plus one tensor, not
two copies of the model.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

SAFETENSORS = "diffusion_pytorch_model.safetensors"
INDEX = "diffusion_pytorch_model.safetensors.index.json"
BIN = "diffusion_pytorch_model.bin"


def find_dir(models_dir: str, name: str, sub: str, marker: str, what: str) -> Path | None:
    """<models_dir>/<name>/<sub>/ (a full SD repo) or <models_dir>/<name>/ holding `marker`; None when absent.

    Raises when the dir exists without `marker`, naming what to put there, so a half-copied model is not ignored."""
    root = Path(name)
    root = root if root.is_absolute() else Path(models_dir).expanduser() / root
    if not root.exists():
        return None
    d = root / sub if (root / sub).is_dir() else root
    if not (d / marker).is_file():
        raise FileNotFoundError(f"{d} has no {marker}: copy {what} there, or remove the dir")
    return d


def weight_files(d: Path) -> list[Path]:
    """The weight files of a diffusers model dir, or FileNotFoundError naming the expected names."""
    if (d / INDEX).is_file():
        shards = sorted(set(json.loads((d / INDEX).read_text())["weight_map"].values()))
        return [d / s for s in shards]
    for name in (SAFETENSORS, BIN):
        if (d / name).is_file():
            return [d / name]
    raise FileNotFoundError(f"{d} has no {SAFETENSORS}, {INDEX} or {BIN}: copy the model's weights there")


def iter_tensors(files: list[Path]):
    """(key, tensor) pairs, one at a time (safetensors are memory-mapped)."""
    for f in files:
        if f.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(f), framework="pt") as st:
                for k in st.keys():
                    yield k, st.get_tensor(k)
        else:
            yield from torch.load(f, map_location="cpu", weights_only=True).items()


@torch.no_grad()
def load_weights(module: nn.Module, d: Path, adapt: Callable[[str, Tensor], Tensor] | None = None) -> list[str]:
    """Copy the weights in dir `d` into `module` in place; returns the module's keys the files did not have.

    Keys the module lacks, or shapes that differ (after `adapt`), raise naming the first few."""
    own = module.state_dict()
    seen, bad = set(), []
    for k, v in iter_tensors(weight_files(d)):
        v = adapt(k, v) if adapt else v
        if k not in own or own[k].shape != v.shape:
            bad.append(f"{k} {tuple(v.shape)} vs {tuple(own[k].shape) if k in own else 'absent'}")
            continue
        own[k].copy_(v)
        seen.add(k)
    if bad:
        raise ValueError(f"{d}: {len(bad)} weights do not fit this model, e.g. {bad[:3]}")
    return [k for k in own if k not in seen]
