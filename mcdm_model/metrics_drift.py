"""Drift over time for long generations: per-bin (default per-minute) metrics, averaged over samples, and a plot.

Long-term generation fails by drifting: identity fades, landmarks wander, lips fall out of sync. Each sample's
video is cut into bins of `bin_s` seconds; every bin gets identity similarity to the reference, face rate, landmark
distance to the ground truth (where it exists), LSE-C/D and SSIM/PSNR. `drift_curve` averages bins across samples and `plot_drift`
draws one panel per metric (thin lines per sample, thick mean) to a PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

DRIFT_KEYS = ("identity_sim", "face_rate", "landmark_dist", "lse_c", "lse_d", "ssim", "psnr")
LABELS = {
    "identity_sim": "identity similarity to reference (cos, higher better)",
    "landmark_dist": "landmark distance / inter-ocular (lower better)",
    "lse_c": "LSE-C at the best offset (higher better)",
}


def _mean(values: list[Any]) -> float | None:
    arr = np.array([v for v in values if v is not None], np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else None


def drift_curve(samples: list[dict[str, Any]], bin_s: float) -> dict[str, Any]:
    """{"bin_s", "t_start_s": [...], "<metric>": [mean over samples per bin], "n_samples": [...]}."""
    longest = max(samples, key=lambda s: len(s["bins"]), default={"bins": []})
    n_bins = len(longest["bins"])
    starts = [b.get("t_start_s", i * bin_s) for i, b in enumerate(longest["bins"])]
    out: dict[str, Any] = {"bin_s": bin_s, "t_start_s": starts, "n_samples": []}
    for key in DRIFT_KEYS:
        out[key] = [_mean([s["bins"][i].get(key) for s in samples if i < len(s["bins"])]) for i in range(n_bins)]
    out["n_samples"] = [sum(1 for s in samples if i < len(s["bins"])) for i in range(n_bins)]
    return out


def drift_slope(curve: dict[str, Any], key: str) -> float | None:
    """Least-squares change of `key` per minute across bins (None with fewer than two measured bins)."""
    t = np.array(curve["t_start_s"], np.float64) / 60.0
    y = np.array([np.nan if v is None else v for v in curve[key]], np.float64)
    ok = np.isfinite(y)
    if ok.sum() < 2:
        return None
    return float(np.polyfit(t[ok], y[ok], 1)[0])


def plot_drift(samples: list[dict[str, Any]], curve: dict[str, Any], path: str | Path) -> Path:
    """Three panels (identity, landmarks, sync) over time, one thin line per sample and the mean in bold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unit = 60.0 if curve["bin_s"] >= 60 else 1.0
    xlabel = "minute of generated video" if unit == 60.0 else "second of generated video"
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key in zip(axes, ("identity_sim", "landmark_dist", "lse_c"), strict=True):
        for s in samples:
            xs = [b.get("t_start_s", i * curve["bin_s"]) / unit for i, b in enumerate(s["bins"])]
            ys = [np.nan if b.get(key) is None else b[key] for b in s["bins"]]
            ax.plot(xs, ys, lw=0.8, alpha=0.5, marker=".")
        ys = [np.nan if v is None else v for v in curve[key]]
        ax.plot([t / unit for t in curve["t_start_s"]], ys, lw=2.5, color="black", marker="o", label="mean")
        ax.set_title(LABELS[key], fontsize=9)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"MCDM long-term drift ({len(samples)} held-out samples, bins of {curve['bin_s']:g} s)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
