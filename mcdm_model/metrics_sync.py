"""Lip-sync scores in the spirit of SyncNet's Sync-C / Sync-D, plus the pipeline's own sync scorer.

Always available (weight-free, weaker than SyncNet): mouth motion per frame (pixel change in the dlib mouth box
plus the change of the inner-lip gap, z-scored and summed) is correlated with the change of the audio's log-energy
envelope at lags of +-`search` frames. `sync_c` is the zero-lag correlation minus the median over lags
(higher = better synced *as generated*; a shifted or foreign track lowers it), `sync_d` = 1 - zero-lag correlation
(lower = better), `sync_offset` the best lag (positive = audio lags video) and `sync_conf_best` the confidence there.
When the pipeline's scorer (`pipeline.models.sync_energy` / `pipeline.stages.sync`) is importable its raw
(offset, conf) is added as `pipeline_sync_offset` / `pipeline_sync_conf` with its name in `pipeline_sync_scorer`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np

SAMPLES_PER_FRAME = 640  # 16 kHz / 25 fps


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """(N, 68, 2) -> (N,) inner-lip gap (points 62-66, 61-67, 63-65) over face height (nose bridge 27 to chin 8)."""
    lm = np.asarray(landmarks, np.float64)
    gap = sum(np.linalg.norm(lm[:, a] - lm[:, b], axis=-1) for a, b in ((61, 67), (62, 66), (63, 65))) / 3.0
    height = np.linalg.norm(lm[:, 27] - lm[:, 8], axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return gap / height


def audio_envelope(audio: np.ndarray, n_frames: int, sr: int = 16000, fps: float = 25.0) -> np.ndarray:
    """(n_frames,) log RMS energy of the audio under each video frame (zero-padded past the end)."""
    spf = int(round(sr / fps))
    a = np.zeros(n_frames * spf, np.float64)
    src = np.asarray(audio, np.float64)[: n_frames * spf]
    a[: len(src)] = src
    rms = np.sqrt(np.mean(a.reshape(n_frames, spf) ** 2, axis=1) + 1e-10)
    return np.log(rms)


def mouth_motion(frames: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(N,) mouth movement: mean abs grey change in a box around the lips + |change| of the inner-lip gap."""
    import cv2

    pts = np.asarray(landmarks, np.float64)[:, 48:68]
    ok = np.isfinite(pts).all(axis=(1, 2))
    if ok.sum() < 2:
        return np.full(len(frames), np.nan)
    width = float(np.median(np.ptp(pts[ok, :, 0], axis=1)))
    centre = np.where(ok[:, None], pts.mean(1), np.median(pts[ok].mean(1), axis=0))
    diff = np.zeros(len(frames))
    prev = None
    for i, frame in enumerate(frames):
        x1, y1 = int(centre[i, 0] - 0.75 * width), int(centre[i, 1] - 0.5 * width)
        grey = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
        roi = grey[max(y1, 0) : max(y1, 0) + int(width), max(x1, 0) : max(x1, 0) + int(1.5 * width)]
        cur = cv2.resize(roi, (48, 32), interpolation=cv2.INTER_AREA).astype(np.float64) if roi.size else None
        diff[i] = np.abs(cur - prev).mean() if cur is not None and prev is not None else np.nan
        prev = cur
    diff[0] = diff[1]
    gap = mouth_opening(landmarks)
    dgap = np.abs(np.diff(gap, prepend=gap[:1]))
    return _zscore(diff) + _zscore(dgap)


def _zscore(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    ok = np.isfinite(x)
    if ok.sum() < 2:
        return np.full_like(x, np.nan)
    x = np.where(ok, x, np.nanmean(x))
    sd = x.std()
    return (x - x.mean()) / sd if sd > 1e-12 else np.zeros_like(x)


def lag_correlation(mouth: np.ndarray, env: np.ndarray, search: int = 15) -> np.ndarray:
    """Pearson correlation of mouth[t] with env[t + k] for k in [-search, search] (positive k = audio lags)."""
    m, e = _zscore(mouth), _zscore(env)
    n = len(m)
    out = np.full(2 * search + 1, np.nan)
    for i, k in enumerate(range(-search, search + 1)):
        a = m[max(0, -k) : n - max(0, k)]
        b = e[max(0, k) : n - max(0, -k)]
        if len(a) >= 10 and a.std() > 0 and b.std() > 0:
            out[i] = float(np.corrcoef(a, b)[0, 1])
    return out


def energy_sync(mouth: np.ndarray, audio: np.ndarray, fps: float = 25.0, sr: int = 16000, search: int = 15) -> dict:
    """Sync-C/D style scores from a mouth-motion signal (mouth_motion) and the audio; see the module docstring."""
    env = audio_envelope(audio, len(mouth), sr, fps)
    env = np.abs(np.diff(env, prepend=env[:1]))
    corr = lag_correlation(mouth, env, search)
    if not np.isfinite(corr).any():
        return {"sync_c": None, "sync_d": None, "sync_offset": None, "sync_conf_best": None}
    med = float(np.nanmedian(corr))
    zero = float(corr[search]) if np.isfinite(corr[search]) else med
    best = int(np.nanargmax(corr))
    return {
        "sync_c": zero - med,
        "sync_d": 1.0 - zero,
        "sync_offset": best - search,
        "sync_conf_best": float(corr[best]) - med,
    }


def load_pipeline_scorer(models_dir: str | None = None) -> tuple[Callable[..., Any] | None, str]:
    """The pipeline's `load_sync_scorer(cfg)` if present -> (scorer, name); (None, reason) otherwise."""
    for mod in ("pipeline.models.sync_energy", "pipeline.stages.sync", "pipeline.models.sync"):
        try:
            m = importlib.import_module(mod)
        except ImportError:
            continue
        loader = getattr(m, "load_sync_scorer", None)
        if loader is None:
            continue
        from pipeline.config import SyncConfig

        try:
            scorer = loader(SyncConfig()) if models_dir is None else loader(SyncConfig(), models_dir)
        except TypeError:
            scorer = loader(SyncConfig())
        except Exception as exc:  # a missing weight must not kill evaluation: fall back to our own score
            return None, f"not_run ({mod}: {exc})"
        return scorer, getattr(scorer, "name", mod)
    return None, "not_run (pipeline sync scorer not available)"


class SyncScorer:
    """Scores (frames, audio) pairs; face landmarks come from a metrics_face.FaceAnalyzer."""

    def __init__(self, face: Any, search: int = 15, use_pipeline: bool = True, models_dir: str | None = None):
        self.face, self.search = face, search
        self.pipeline, self.pipeline_name = (
            load_pipeline_scorer(models_dir) if use_pipeline else (None, "not_run (disabled)")
        )

    def score(self, frames: np.ndarray, audio: np.ndarray, fps: float = 25.0, landmarks: np.ndarray | None = None) -> dict:
        lms = self.face.landmarks(frames) if landmarks is None else landmarks
        out = energy_sync(mouth_motion(frames, lms), audio, fps=fps, search=self.search)
        out["pipeline_sync_scorer"] = self.pipeline_name
        if self.pipeline is not None:
            try:
                offset, conf = self.pipeline(frames, audio, fps=fps)
                out |= {"pipeline_sync_offset": int(offset), "pipeline_sync_conf": float(conf)}
            except Exception as exc:  # scorer failures are recorded, not fatal
                out["pipeline_sync_scorer"] = f"error ({exc})"
        return out
