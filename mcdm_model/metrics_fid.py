"""FID, FVD and E-FID, run only when their feature networks are in `<models_dir>/metrics/` (nothing downloads).

FID uses the maintained pytorch-fid package: its FID Inception-v3 (pool3, 2048-D; the TF-ported weights
`pt_inception-2015-12-05-6726825d.pth` that pytorch-fid itself downloads) with its own resizing and [-1, 1]
normalisation, and its `calculate_frechet_distance`. FVD: the StyleGAN-V I3D TorchScript `i3d_torchscript.pt`
(400-D, called with rescale=False, resize=False, return_features=True on (B, 3, T, 224, 224) in [-1, 1]), with the
same Fréchet distance. E-FID needs a 3DMM expression regressor (Deep3DFaceRecon), which is not offline: "not_run".
When a file is missing the metric is recorded as "not_run" with the file name and where to put it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

PYTORCH_FID = "pt_inception-2015-12-05-6726825d.pth"
I3D_TS = "i3d_torchscript.pt"
EFID_STATUS = "not_run: E-FID needs a 3DMM expression regressor (Deep3DFaceRecon + BFM), not available offline"
Extractor = Callable[[np.ndarray], np.ndarray]


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets a (N, D) and b (M, D), N, M >= 2 (pytorch-fid)."""
    from pytorch_fid.fid_score import calculate_frechet_distance

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d = calculate_frechet_distance(a.mean(0), np.atleast_2d(np.cov(a, rowvar=False)), b.mean(0),
                                   np.atleast_2d(np.cov(b, rowvar=False)))
    return float(max(d, 0.0))


def load_inception(models_dir: str | Path) -> tuple[Extractor, str]:
    """pytorch-fid's FID Inception-v3 with weights from `<models_dir>/metrics/`, or FileNotFoundError."""
    f = Path(models_dir).expanduser() / "metrics" / PYTORCH_FID
    if not f.is_file():
        raise FileNotFoundError(f"FID not run: put pytorch-fid's {PYTORCH_FID} in {f.parent}")
    from pytorch_fid import inception as pfi

    state = torch.load(f, map_location="cpu", weights_only=True)
    fetch = pfi.load_state_dict_from_url
    pfi.load_state_dict_from_url = lambda *a, **k: state  # pytorch-fid would download it; hand it the local file
    try:
        net = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]], resize_input=True, normalize_input=True).eval()
    finally:
        pfi.load_state_dict_from_url = fetch

    def feats(frames: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.array(frames)).permute(0, 3, 1, 2).float() / 255.0
        with torch.no_grad():
            return net(x)[0].flatten(1).numpy()

    return feats, f"pytorch-fid InceptionV3 ({PYTORCH_FID})"


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
        out["efid"], out["efid_status"] = None, EFID_STATUS
        return out
