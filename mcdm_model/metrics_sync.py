"""Lip-sync metrics LSE-C / LSE-D at the best offset, computed with the pipeline's own sync scorer.

The scorer is one of the sync stage's (`pipeline.common.sync_scorer`): SyncNet when its weights are in
`<models_dir>/syncnet/`, else the weight-free energy scorer (mouth-motion energy vs audio spectral flux), not the
stage's fused default, whose lag curve is a sum of standard scores, not a correlation LSE-D can be read from.
From the per-lag curve (lags -search..search frames), as SyncNet's LSE-C/D are defined (Prajwal et al. 2020, syncnet_python):
- SyncNet (mean embedding distance per lag): LSE-D = the minimum over lags, LSE-C = median - minimum;
- energy (correlation per lag): LSE-D = 1 - maximum r; LSE-C = the scorer's own confidence at its best lag (a
  z-score of the peak against shuffled audio): the raw max - median of r is not comparable across audio tracks
  (it scales with the audio's own autocorrelation) and ranked a foreign voice above the true one on a real clip;
`sync_offset` = the best lag (positive = audio lags video), `sync_conf` = the scorer's own confidence. A clip with a
face in fewer than MIN_FACE_RATE of its frames gets None: lip sync is not measured where there is no mouth.
Only the scorer's public interface is used (`name`, `curve(...)` -> offsets, values, offset, conf).
"""

from __future__ import annotations

from typing import Any

import numpy as np

MIN_FACE_RATE = 0.5


def load_pipeline_scorer(models_dir: str | None = None, search: int = 15) -> Any:
    """The pipeline's sync scorer for `models_dir` (SyncNet if its weights are there, else energy)."""
    from pipeline.common import default_models_dir, sync_scorer, syncnet_weights

    has_syncnet = syncnet_weights(models_dir or default_models_dir()).is_file()
    return sync_scorer(models_dir, search, "syncnet" if has_syncnet else "energy")


def lse_scores(offsets: np.ndarray, values: np.ndarray, lower_is_better: bool, conf: float | None = None) -> dict:
    """LSE-C / LSE-D and the best lag from a per-lag curve (distances when lower_is_better, else correlations,
    whose LSE-C is the scorer's `conf` when given, else (max - median) / std over lags)."""
    values = np.asarray(values, np.float64)
    ok = np.isfinite(values)
    if ok.sum() < 3:
        return {"lse_c": None, "lse_d": None, "sync_offset": None}
    med = float(np.median(values[ok]))
    if lower_is_better:
        i = int(np.nanargmin(np.where(ok, values, np.inf)))
        return {"lse_c": med - float(values[i]), "lse_d": float(values[i]), "sync_offset": int(offsets[i])}
    i = int(np.nanargmax(np.where(ok, values, -np.inf)))
    sd = float(np.std(values[ok]))
    c = conf if conf is not None and np.isfinite(conf) else ((float(values[i]) - med) / sd if sd > 1e-12 else 0.0)
    return {"lse_c": float(c), "lse_d": 1.0 - float(values[i]), "sync_offset": int(offsets[i])}


class SyncScorer:
    """Scores (frames, audio) pairs of one video; landmarks (N, 68, 2) in frame px place the mouth box."""

    def __init__(self, face: Any = None, search: int = 15, models_dir: str | None = None) -> None:
        self.face = face
        self.scorer = load_pipeline_scorer(models_dir, search)
        self.name = getattr(self.scorer, "name", type(self.scorer).__name__)
        self.lower_is_better = self.name == "syncnet"

    def score(self, frames: np.ndarray, audio: np.ndarray, fps: float = 25.0, landmarks: np.ndarray | None = None) -> dict:
        """{lse_c, lse_d, sync_offset, sync_conf, sync_scorer}; None values when the clip is too short or has
        too few faces (landmarks (N, 68, 2) decide, detected here when not given)."""
        from mcdm_model.metrics_face import face_rate

        if landmarks is None and self.face is not None:
            landmarks = self.face.landmarks(frames)
        out: dict[str, Any] = {"sync_scorer": self.name, "lse_c": None, "lse_d": None, "sync_offset": None,
                               "sync_conf": None}
        if landmarks is not None and not face_rate(landmarks) >= MIN_FACE_RATE:
            return out | {"sync_error": f"face in {face_rate(landmarks):.0%} of frames (< {MIN_FACE_RATE:.0%})"}
        lm = landmarks
        if lm is not None and not np.isfinite(lm).all():  # fill frames without a face from the nearest with one
            ok = np.flatnonzero(np.isfinite(lm.reshape(len(lm), -1)).all(1))
            lm = lm[ok[np.abs(np.arange(len(lm))[:, None] - ok[None]).argmin(1)]]
        video: Any = frames if lm is None else {"frames": frames, "landmarks_crop": lm}
        try:
            curve = self.scorer.curve(video, audio, fps=fps)
        except Exception as exc:  # a clip the scorer cannot measure is recorded, not fatal
            return out | {"sync_error": str(exc)}
        out |= lse_scores(curve.offsets, curve.values, self.lower_is_better, None if self.lower_is_better else curve.conf)
        if out["lse_c"] is not None:
            out["sync_conf"] = float(curve.conf)
        return out
