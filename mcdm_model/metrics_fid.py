"""FID and FVD, run only when their feature networks are in `<models_dir>/metrics/` (nothing downloads).

Accepted weights (upstream formats):
- FID, Inception-v3 pool3 (2048-D): `inception-2015-12-05.pt` (NVlabs/StyleGAN TorchScript, called with
  return_features=True on 0..255 images) or `inception_v3_google-0cc3c7bd.pth` (torchvision state dict).
- FVD, I3D (400-class Kinetics, 400-D logits as in StyleGAN-V): `i3d_torchscript.pt` (TorchScript, called with
  rescale=False, resize=False, return_features=True on (B, 3, T, 224, 224) videos in [-1, 1]).
When a file is missing the metric is recorded as "not_run" with the file name and where to put it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

INCEPTION_TS = "inception-2015-12-05.pt"
INCEPTION_TV = "inception_v3_google-0cc3c7bd.pth"
I3D_TS = "i3d_torchscript.pt"
Extractor = Callable[[np.ndarray], np.ndarray]


def _trace_sqrt_product(a: np.ndarray, b: np.ndarray) -> float:
    """tr sqrtm(S_a S_b) for the sample covariances of centred a (n, D), b (m, D), without a D x D sqrtm.

    S_a S_b = A'A B'B / ((n-1)(m-1)) has the same non-zero eigenvalues as (A B')(A B')', so the trace of its
    square root is the nuclear norm of A B' (an n x m matrix); with many samples the symmetric form
    tr sqrtm(S_a^1/2 S_b S_a^1/2) is used instead (eigh only, no general sqrtm).
    """
    n, m, d = len(a), len(b), a.shape[1]
    scale = np.sqrt((n - 1) * (m - 1))
    if min(n, m) <= d:
        return float(np.linalg.svd(a @ b.T, compute_uv=False).sum() / scale)
    sa, sb = a.T @ a / (n - 1), b.T @ b / (m - 1)
    w, v = np.linalg.eigh(sa)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    ev = np.linalg.eigvalsh(root @ sb @ root)
    return float(np.sqrt(np.clip(ev, 0, None)).sum())


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets a (N, D) and b (M, D), N, M >= 2."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu1, mu2 = a.mean(0), b.mean(0)
    ac, bc = a - mu1, b - mu2
    tr1 = (ac * ac).sum() / (len(a) - 1)
    tr2 = (bc * bc).sum() / (len(b) - 1)
    return float(max(((mu1 - mu2) ** 2).sum() + tr1 + tr2 - 2 * _trace_sqrt_product(ac, bc), 0.0))


def load_inception(models_dir: str | Path) -> tuple[Extractor, str]:
    """Inception-v3 pool3 feature extractor from `<models_dir>/metrics/`, or FileNotFoundError saying what to add."""
    d = Path(models_dir).expanduser() / "metrics"
    if (d / INCEPTION_TS).is_file():
        net = torch.jit.load(str(d / INCEPTION_TS), map_location="cpu").eval()

        def ts(frames: np.ndarray) -> np.ndarray:
            x = torch.from_numpy(np.array(frames)).permute(0, 3, 1, 2).float()
            with torch.no_grad():
                return net(x, return_features=True).numpy()

        return ts, f"inception torchscript ({INCEPTION_TS})"
    if (d / INCEPTION_TV).is_file():
        from torchvision.models import inception_v3

        net = inception_v3(weights=None, aux_logits=True, init_weights=False)
        net.load_state_dict(torch.load(d / INCEPTION_TV, map_location="cpu", weights_only=True))
        net.fc = torch.nn.Identity()
        net.eval()
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

        def tv(frames: np.ndarray) -> np.ndarray:
            x = torch.from_numpy(np.array(frames)).permute(0, 3, 1, 2).float() / 255.0
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            with torch.no_grad():
                return net((x - mean) / std).numpy()

        return tv, f"torchvision inception_v3 ({INCEPTION_TV})"
    raise FileNotFoundError(f"FID not run: put {INCEPTION_TS} (NVlabs TorchScript) or {INCEPTION_TV} (torchvision) in {d}")


def load_i3d(models_dir: str | Path) -> tuple[Extractor, str]:
    """I3D video feature extractor from `<models_dir>/metrics/`, or FileNotFoundError saying what to add."""
    d = Path(models_dir).expanduser() / "metrics"
    if not (d / I3D_TS).is_file():
        raise FileNotFoundError(f"FVD not run: put {I3D_TS} (StyleGAN-V I3D TorchScript) in {d}")
    net = torch.jit.load(str(d / I3D_TS), map_location="cpu").eval()

    def i3d(video: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.array(video)).permute(3, 0, 1, 2).float()[None] / 127.5 - 1.0
        x = F.interpolate(x, size=(x.shape[2], 224, 224), mode="trilinear", align_corners=False)
        with torch.no_grad():
            return net(x, rescale=False, resize=False, return_features=True).numpy()

    return i3d, f"i3d torchscript ({I3D_TS})"


class FrechetMetrics:
    """Accumulates Inception features of frames and I3D features of 16-frame windows, then FID / FVD."""

    def __init__(self, models_dir: str | Path, frame_stride: int = 5, fvd_frames: int = 16) -> None:
        self.frame_stride, self.fvd_frames = frame_stride, fvd_frames
        self.feats: dict[str, dict[str, list[np.ndarray]]] = {"fid": {"gen": [], "ref": []}, "fvd": {"gen": [], "ref": []}}
        self.nets: dict[str, Extractor | None] = {}
        self.status: dict[str, str] = {}
        for key, loader in (("fid", load_inception), ("fvd", load_i3d)):
            try:
                self.nets[key], name = loader(models_dir)
                self.status[key] = f"ran: {name}"
            except FileNotFoundError as exc:
                self.nets[key], self.status[key] = None, f"not_run: {exc}"

    def add(self, gen: np.ndarray, ref: np.ndarray) -> None:
        """Add one generated clip and its ground truth (N, H, W, 3) uint8."""
        if self.nets["fid"] is not None:
            self.feats["fid"]["gen"].append(self.nets["fid"](gen[:: self.frame_stride]))
            self.feats["fid"]["ref"].append(self.nets["fid"](ref[:: self.frame_stride]))
        if self.nets["fvd"] is not None:
            t = self.fvd_frames
            for s in range(0, min(len(gen), len(ref)) - t + 1, t):
                self.feats["fvd"]["gen"].append(self.nets["fvd"](gen[s : s + t]))
                self.feats["fvd"]["ref"].append(self.nets["fvd"](ref[s : s + t]))

    def result(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for key in ("fid", "fvd"):
            gen, ref = self.feats[key]["gen"], self.feats[key]["ref"]
            if self.nets[key] is None or not gen:
                out[key] = None
                out[f"{key}_status"] = self.status[key] if self.nets[key] is None else "not_run: no samples"
                continue
            g, r = np.concatenate(gen), np.concatenate(ref)
            out[key] = frechet_distance(g, r) if len(g) > 1 else None
            out[f"{key}_status"] = f"{self.status[key]} on {len(g)} samples"
        return out
