"""Lip-sync metrics (Sync-C / Sync-D style) computed with the pipeline's own sync scorer.

The scorer is whatever `pipeline.stages.sync.load_sync_scorer` picks: SyncNet when its weights are in
`<models_dir>/syncnet/`, else the weight-free energy scorer (mouth-motion energy vs audio spectral flux). Its
per-lag curve gives two views:
- as generated (zero lag): `sync_c` = how much better lag 0 is than the median lag (SyncNet: median distance -
  distance at 0, the LSE-C idea; energy: (r0 - median r) / std of r over lags, scale-free) and `sync_d`
  (SyncNet: distance at lag 0, LSE-D; energy: 1 - r0). A shifted or foreign audio track lowers sync_c.
- best lag: `sync_offset` (positive = audio lags video) and `sync_conf`, the scorer's own decision, exactly as the
  pipeline's sync stage records it (the standard Sync-C is a confidence measured at the best lag).
Only the scorer's public interface is used (`name`, `curve(...)` -> offsets, values, offset, conf).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def load_pipeline_scorer(models_dir: str | None = None, search: int = 15) -> Any:
    """The pipeline's sync scorer for `models_dir` (SyncNet if its weights are there, else energy)."""
    from pipeline.common import sync_scorer

    return sync_scorer(models_dir, search)


def zero_lag_scores(offsets: np.ndarray, values: np.ndarray, lower_is_better: bool) -> dict:
    """sync_c / sync_d at lag 0 from a per-lag curve (correlations, or distances when lower_is_better)."""
    values = np.asarray(values, np.float64)
    ok = np.isfinite(values)
    zero = np.flatnonzero(np.asarray(offsets) == 0)
    if ok.sum() < 3 or not zero.size or not ok[zero[0]]:
        return {"sync_c": None, "sync_d": None}
    v0, med = float(values[zero[0]]), float(np.median(values[ok]))
    if lower_is_better:  # SyncNet embedding distances
        return {"sync_c": med - v0, "sync_d": v0}
    sd = float(np.std(values[ok]))
    return {"sync_c": (v0 - med) / sd if sd > 1e-12 else 0.0, "sync_d": 1.0 - v0}


class SyncScorer:
    """Scores (frames, audio) pairs of one video; landmarks (N, 68, 2) in frame px place the mouth box."""

    def __init__(self, face: Any = None, search: int = 15, models_dir: str | None = None) -> None:
        self.face = face
        self.scorer = load_pipeline_scorer(models_dir, search)
        self.name = getattr(self.scorer, "name", type(self.scorer).__name__)
        self.lower_is_better = self.name == "syncnet"

    def score(self, frames: np.ndarray, audio: np.ndarray, fps: float = 25.0, landmarks: np.ndarray | None = None) -> dict:
        """{sync_c, sync_d, sync_offset, sync_conf, sync_scorer}; None values when the clip is too short."""
        if landmarks is None and self.face is not None:
            landmarks = self.face.landmarks(frames)
        video: Any = frames if landmarks is None else {"frames": frames, "landmarks_crop": landmarks}
        out: dict[str, Any] = {"sync_scorer": self.name}
        try:
            curve = self.scorer.curve(video, audio, fps=fps)
        except Exception as exc:  # a clip the scorer cannot measure is recorded, not fatal
            return out | {"sync_c": None, "sync_d": None, "sync_offset": None, "sync_conf": None, "sync_error": str(exc)}
        out |= zero_lag_scores(curve.offsets, curve.values, self.lower_is_better)
        measured = np.isfinite(np.asarray(curve.values, np.float64)).sum() >= 3
        out |= {"sync_offset": int(curve.offset) if measured else None, "sync_conf": float(curve.conf) if measured else None}
        return out
