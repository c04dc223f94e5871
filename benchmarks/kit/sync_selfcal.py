"""A per-clip self-calibrated audio->mouth scorer, kept as a measured alternative (not a pipeline scorer).

The idea (issue on curation accuracy): fit the audio->mouth map on the clip itself at every candidate lag and take
the lag whose map predicts the mouth best on frames it was not fitted on, so no speaker-independent prior is
needed. Measured in benchmarks/RESULTS_sync.md section F (`benchmarks/bench_sync_selfcal.py`): it places held-out
offsets worse than the fused scorer, so the pipeline does not use it.

- audio: the fused prior's per-clip standardised log-mel (pipeline/models/sync_prior.py), reduced to `n_pca`
  principal components on the clip, frames t-ctx..t+ctx stacked;
- mouth: the prior's four mouth signals (lip opening, width, motion energy, opening speed);
- per lag: ridge regression (lambda = alpha * n) in `folds` contiguous folds; the lag's value is the mean over the
  mouth signals of the correlation between each signal and its out-of-fold prediction.
"""

from __future__ import annotations

import numpy as np

from pipeline.models.sync_energy import HOP, audio_frames_present, load_frames, mouth_roi
from pipeline.models.sync_prior import _standardise, log_mel, mouth_features, stack_context


def _pca(x: np.ndarray, k: int) -> np.ndarray:
    xc = x - x.mean(0)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    z = xc @ vt[:k].T
    return z / (z.std(0) + 1e-6)


def cv_fit(x: np.ndarray, y: np.ndarray, alpha: float, folds: int) -> float:
    """Mean over y's columns of corr(y, out-of-fold ridge prediction), contiguous folds (speech is not i.i.d.)."""
    n = len(x)
    edges = np.linspace(0, n, folds + 1).astype(int)
    pred = np.zeros_like(y)
    for i in range(folds):
        te = np.zeros(n, bool)
        te[edges[i] : edges[i + 1]] = True
        mx, my = x[~te].mean(0), y[~te].mean(0)
        xt, yt = x[~te] - mx, y[~te] - my
        w = np.linalg.solve(xt.T @ xt + alpha * len(xt) * np.eye(x.shape[1]), xt.T @ yt)
        pred[te] = (x[te] - mx) @ w + my
    yc, pc = y - y.mean(0), pred - pred.mean(0)
    r = (yc * pc).sum(0) / (np.sqrt((yc**2).sum(0) * (pc**2).sum(0)) + 1e-12)
    return float(np.mean(r))


class SelfCalSyncScorer:
    name = "selfcal"

    def __init__(self, search_frames: int = 15, n_pca: int = 20, ctx: int = 2, alpha: float = 1.0, folds: int = 5,
                 mouth_pca: int = 0):
        self.search, self.n_pca, self.ctx, self.alpha, self.folds = search_frames, n_pca, ctx, alpha, folds
        self.mouth_pca = mouth_pca

    def lag_values(self, video, audio_16k: np.ndarray, audio_lead_frames: int = 0) -> np.ndarray:
        """(2 * search + 1,) out-of-fold fit per lag -search..search (nan where under 40 frames overlap)."""
        frames, lms, _ = load_frames(video)
        if lms is None:
            raise ValueError("the self-calibrated scorer needs the track's landmarks_crop")
        y = mouth_features(frames, lms)
        if self.mouth_pca:
            y = np.concatenate([y, _pca(mouth_roi(frames, lms).reshape(len(y), -1), self.mouth_pca)], axis=1)
        na = len(audio_16k) // HOP
        a = stack_context(_pca(_standardise(log_mel(audio_16k, na)), self.n_pca), self.ctx)
        valid = audio_frames_present(audio_16k, na)
        vals = np.full(2 * self.search + 1, np.nan)
        t = np.arange(len(y))
        for i, s in enumerate(range(-self.search, self.search + 1)):
            j = t + audio_lead_frames + s
            ok = (j >= 0) & (j < len(a))
            ok[ok] &= valid[j[ok]]
            if ok.sum() >= 40:
                vals[i] = cv_fit(a[j[ok]], y[t[ok]], self.alpha, self.folds)
        return vals

    def score(self, video, audio_16k: np.ndarray, fps: float = 25, audio_lead_frames: int = 0) -> tuple[int, float]:
        """(offset, conf): the best lag, and its out-of-fold correlation (0 = the audio predicts nothing)."""
        vals = self.lag_values(video, audio_16k, audio_lead_frames)
        best = int(np.nanargmax(vals))
        return best - self.search, float(vals[best])
