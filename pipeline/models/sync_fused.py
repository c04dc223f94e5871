"""The weight-free default sync scorer: the energy correlation fused with the audio->mouth prior.

Why this split (benchmarks/RESULTS_sync.md, section E, measured with one half of the sources fitted and the other
scored): the energy correlation places offsets well but its in-sync reading sits about one frame early on the
faces stage's crops on some speakers and several frames off on others, and its confidence confuses short in-sync
clips with dubs; the prior (sync_prior.py) separates own audio from dubs better, and its curve disagrees with
the energy curve's misreadings more often than with its hits. So:

- offset = best lag of the sum of the two lag curves in standard units (energy correlation; prior prediction vs
  mouth), + the prior's `lag_bias` (minus the median in-sync reading on its training clips);
- conf = conf_scale * (energy conf + PRIOR_WEIGHT * prior conf) / (1 + PRIOR_WEIGHT), both "sigmas above
  chance"; `conf_scale` puts the fitted decision point at 3.0, the field's min_conf (SyncNet's scale);
- with a `conf_prior` (a prior on other audio features: Whisper's encoder, sync_whisper.py), the confidence is
  taken with it in place of the offset prior, at its own best lag, and scaled by its own conf_scale; the offset
  is unchanged (RESULTS_sync K: Whisper frames separate dubs better, log-mel places lags as well or better);
- without landmarks (a crop video alone) the prior cannot run and the energy scorer's reading is used as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .sync_energy import EnergySyncScorer, SyncCurve, load_frames, smooth_curve
from .sync_prior import PRIOR_PATH, AudioMouthPrior, prior_conf, prior_curve, prior_signals

PRIOR_WEIGHT = 2.0


def _z(curve: np.ndarray) -> np.ndarray:
    """A lag curve in standard units over its finite lags; missing lags get a value that never wins."""
    v = np.asarray(curve, np.float64)
    ok = np.isfinite(v)
    out = np.full(len(v), -1e3)
    if ok.sum() > 2:
        out[ok] = (v[ok] - v[ok].mean()) / (v[ok].std() + 1e-9)
    return out


class FusedSyncScorer:
    name = "fused"
    input_size = EnergySyncScorer.input_size
    offset_reliable = True  # realign by it (DESIGN); in-sync reading within +-1 on 62-77 % of held-out clips

    def __init__(self, search_frames: int = 15, prior: AudioMouthPrior | str | Path = PRIOR_PATH,
                 conf_scale: float | None = None, conf_prior: AudioMouthPrior | None = None):
        self.search = search_frames
        self.energy = EnergySyncScorer(search_frames)
        self.prior = prior if isinstance(prior, AudioMouthPrior) else AudioMouthPrior.load(prior)
        self.conf_prior = conf_prior or self.prior
        self.conf_scale = self.conf_prior.conf_scale if conf_scale is None else conf_scale
        if conf_prior is not None:
            self.name = f"fused+{conf_prior.features}"

    def raw(self, frames_or_track: Any, audio_16k: np.ndarray, fps: float = 25, audio_lead_frames: int = 0) -> tuple[SyncCurve, float | None]:
        """(fused curve with the bias-corrected offset, unscaled fused confidence); (energy curve, None) when the
        prior cannot run (no landmarks), so the energy scorer's own reading stands."""
        c = self.energy.curve(frames_or_track, audio_16k, fps, audio_lead_frames)
        frames, lms, _ = load_frames(frames_or_track)
        if frames is None or lms is None or len(lms) != len(frames):
            return c, None
        signals = mouth, _ = prior_signals(self.prior, frames, lms, audio_16k)  # the mouth is read once for both priors
        mean_r, _ = prior_curve(self.prior, frames, lms, audio_16k, audio_lead_frames, self.search + 1, signals)
        sm = smooth_curve(mean_r)[1:-1]
        if not np.isfinite(sm).any():
            return c, None
        fused = _z(c.values) + _z(sm)
        c.values = fused
        c.offset = int(np.clip(int(np.argmax(fused)) - self.search + self.prior.lag_bias, -self.search, self.search))
        if self.conf_prior is not self.prior:
            signals = (mouth, self.conf_prior.predict(audio_16k))
            mean_r, _ = prior_curve(self.conf_prior, frames, lms, audio_16k, audio_lead_frames, self.search + 1, signals)
            sm = smooth_curve(mean_r)[1:-1]
            if not np.isfinite(sm).any():
                return c, None
        lag = int(np.nanargmax(sm)) - self.search
        z = prior_conf(self.conf_prior, frames, lms, audio_16k, audio_lead_frames, lag, self.search, signals)
        return c, (float(c.conf) + PRIOR_WEIGHT * z) / (1 + PRIOR_WEIGHT)

    def curve(self, frames_or_track: Any, audio_16k: np.ndarray, fps: float = 25, audio_lead_frames: int = 0) -> SyncCurve:
        c, conf = self.raw(frames_or_track, audio_16k, fps, audio_lead_frames)
        if conf is not None:
            c.conf = conf * self.conf_scale
        return c

    def score(self, frames_or_track: Any, audio_16k: np.ndarray, fps: float = 25, audio_lead_frames: int = 0) -> tuple[int, float]:
        c = self.curve(frames_or_track, audio_16k, fps, audio_lead_frames)
        return c.offset, c.conf
