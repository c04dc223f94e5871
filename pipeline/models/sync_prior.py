"""An audio -> mouth prior: a linear (ridge) map from log-mel speech to mouth geometry, fitted on in-sync clips.

Why: the energy scorer's confidence asks "does this mouth move when this sound changes?", which another person's
speech also answers by chance on short clips. A map learned from real in-sync speakers predicts *how* the mouth
moves (opening, width, motion) from the sound, and how well a clip's mouth follows that prediction separates its
own audio from a dub better (benchmarks/RESULTS_sync.md, section E). Linear on per-clip standardised features,
so it carries over to unseen speakers and languages; small (a few thousand numbers, shipped as `sync_prior.npz`,
refit with `python benchmarks/bench_curation.py --fit-prior --conf-prior none --conf-rule balanced`).

- audio: 40 log-mel bands (60 Hz-7.6 kHz) of four 25-ms windows per 40-ms video frame, standardised per clip,
  frames t-2..t+2 stacked (800 numbers); or, for the prior the fused scorer takes its confidence from
  (`sync_prior_whisper.npz`, `features` = "whisper-base"), Whisper base's encoder frames (sync_whisper.py),
  standardised per clip, t-1..t+1 stacked (1536 numbers);
- mouth: inner-lip opening and mouth width over face height (68 landmarks in the crop), mouth-box motion energy
  and the opening's speed, each standardised per clip;
- score: per mouth signal, Pearson r of prediction and mouth over lags; conf = (r at the chosen lag - mean of the
  circular-shift null) / its std, averaged over the signals ("sigmas above chance", like the energy scorer's).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .mfcc import mel_filterbank
from .sync_energy import HOP, SR, audio_frames_present, lag_curve, mouth_motion_energy, null_z

PRIOR_PATH = Path(__file__).with_name("sync_prior.npz")
WHISPER_PRIOR_PATH = Path(__file__).with_name("sync_prior_whisper.npz")  # on Whisper frames (sync_whisper.py)
N_MEL, SUB, CONTEXT = 40, 4, 2
FEATURIZER_CONTEXT = 1  # Whisper frames already see their neighbours (RESULTS_sync K: +-0, 1, 2 alike)
_WIN = 400  # 25 ms
_FB: np.ndarray | None = None


def log_mel(audio_16k: np.ndarray, n_frames: int) -> np.ndarray:
    """(n_frames, SUB * N_MEL) log-mel energies, SUB windows per 640-sample video frame."""
    global _FB
    if _FB is None:
        _FB = mel_filterbank(N_MEL, 512, SR, 60.0, 7600.0)
    step = HOP // SUB
    a = np.asarray(audio_16k, np.float32)
    a = np.concatenate([a, np.zeros(max(0, n_frames * HOP + _WIN - len(a)), np.float32)])
    idx = np.arange(_WIN)[None, :] + step * np.arange(n_frames * SUB)[:, None]
    spec = np.abs(np.fft.rfft(a[idx] * np.hanning(_WIN).astype(np.float32), 512, axis=1)) ** 2
    return np.log(spec @ _FB.T + 1e-8).reshape(n_frames, SUB * N_MEL).astype(np.float32)


def _standardise(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(0)) / (x.std(0) + 1e-6)


def stack_context(f: np.ndarray, ctx: int) -> np.ndarray:
    """(n, (2 * ctx + 1) * d): each row with the rows t-ctx..t+ctx beside it (edges repeated)."""
    p = np.pad(f, ((ctx, ctx), (0, 0)), mode="edge")
    return np.concatenate([p[i : i + len(f)] for i in range(2 * ctx + 1)], axis=1)


def audio_features(audio_16k: np.ndarray, featurizer: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """(n_audio_frames, d): standardised log-mel with +-CONTEXT frames stacked, or the featurizer's frames (e.g.
    sync_whisper.WhisperFrames) standardised with +-FEATURIZER_CONTEXT."""
    if featurizer is None:
        return stack_context(_standardise(log_mel(audio_16k, len(audio_16k) // HOP)), CONTEXT)
    return stack_context(_standardise(featurizer(audio_16k)), FEATURIZER_CONTEXT)


def mouth_features(frames: np.ndarray, landmarks_crop: np.ndarray) -> np.ndarray:
    """(n, 4): lip opening, mouth width (over face height), mouth-box motion energy, opening speed; standardised."""
    lm = np.asarray(landmarks_crop, np.float64)
    face_h = np.linalg.norm(lm[:, 8] - lm[:, 27], axis=1) + 1e-6
    opening = np.linalg.norm(lm[:, 66] - lm[:, 62], axis=1) / face_h
    width = np.linalg.norm(lm[:, 54] - lm[:, 48], axis=1) / face_h
    return mouth_signals(frames, opening, width)


def mouth_signals(frames: np.ndarray, opening: np.ndarray, width: np.ndarray) -> np.ndarray:
    """(n, 4) standardised: the given lip opening and width, the mouth box's motion energy, the opening's speed
    (any landmark set can feed it; benchmarks/bench_sync_bias.py gives it FaceMesh's)."""
    v = np.stack([opening, width, mouth_motion_energy(frames), np.r_[0.0, np.abs(np.diff(opening))]], axis=1)
    return _standardise(v)


@dataclass
class AudioMouthPrior:
    weights: np.ndarray  # (audio feature dim, 4)
    lag_bias: int = 0  # added to the fused curve's best lag: minus the median in-sync reading on the training clips
    n_clips: int = 0
    conf_scale: float = 1.0  # maps the fused confidence's fitted decision point to 3.0 (see sync_fused.py)
    features: str = "log-mel"  # or a featurizer's name (sync_whisper.NAME): what the weights were fitted on
    featurizer: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False)  # None for log-mel

    def predict(self, audio_16k: np.ndarray) -> np.ndarray:
        if self.features != "log-mel" and self.featurizer is None:
            raise RuntimeError(f"this sync prior was fitted on {self.features} features: attach its featurizer")
        return audio_features(audio_16k, self.featurizer) @ self.weights

    def save(self, path: str | Path) -> None:
        np.savez(path, weights=self.weights.astype(np.float32), lag_bias=np.int32(self.lag_bias),
                 n_clips=np.int32(self.n_clips), conf_scale=np.float32(self.conf_scale), features=np.str_(self.features))

    @classmethod
    def load(cls, path: str | Path = PRIOR_PATH) -> AudioMouthPrior:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"sync prior not found at {path}: refit it with python benchmarks/bench_curation.py --fit-prior")
        with np.load(path) as z:
            features = str(z["features"]) if "features" in z.files else "log-mel"
            return cls(z["weights"].astype(np.float64), int(z["lag_bias"]), int(z["n_clips"]), float(z["conf_scale"]),
                       features)  # fmt: skip


def fit_prior(clips: list[dict], alpha: float = 100.0,
              featurizer: Callable[[np.ndarray], np.ndarray] | None = None) -> AudioMouthPrior:
    """Ridge fit on in-sync clips: each a dict with frames, landmarks_crop and audio (starting `lead` frames before
    the first video frame), on log-mel or on `featurizer`'s frames. lag_bias and conf_scale are set by the caller
    (benchmarks/kit/sync_fit.py)."""
    xs, ys = [], []
    for c in clips:
        v = mouth_features(c["frames"], c["landmarks_crop"])
        a = audio_features(c["audio"], featurizer)[c["lead"] : c["lead"] + len(v)]
        xs.append(a[: len(v)])
        ys.append(v[: len(a)])
    x, y = np.concatenate(xs), np.concatenate(ys)
    w = np.linalg.solve(x.T @ x + alpha * len(x) * np.eye(x.shape[1]), x.T @ y)
    if featurizer is None:
        return AudioMouthPrior(w, 0, len(clips))
    return AudioMouthPrior(w, 0, len(clips), features=featurizer.name, featurizer=featurizer)


def decision_point(pos: list[float], neg: list[float]) -> float:
    """The threshold between in-sync (pos) and dubbed (neg) confidences with the best balanced accuracy (the
    midpoint of the two neighbouring values; ties go to the lower threshold, which keeps more good clips)."""
    vals = np.sort(np.r_[pos, neg])
    cands = (vals[:-1] + vals[1:]) / 2 if len(vals) > 1 else vals
    acc = [np.mean(np.asarray(pos) >= t) + np.mean(np.asarray(neg) < t) for t in cands]
    return float(cands[int(np.argmax(acc))])


Signals = tuple[np.ndarray, np.ndarray]  # (mouth signals, the prior's prediction from the audio)


def prior_signals(prior: AudioMouthPrior, frames: np.ndarray, landmarks_crop: np.ndarray, audio_16k: np.ndarray) -> Signals:
    """What prior_curve and prior_conf compare: computed once per clip and prior by a caller that needs both."""
    return mouth_features(frames, landmarks_crop), prior.predict(audio_16k)


def prior_curve(prior: AudioMouthPrior, frames: np.ndarray, landmarks_crop: np.ndarray, audio_16k: np.ndarray,
                lead: int, search: int, signals: Signals | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(mean r over the mouth signals per lag -search..search, (n_signals, n_lags) per signal)."""
    v, p = signals or prior_signals(prior, frames, landmarks_crop, audio_16k)
    valid = audio_frames_present(audio_16k, len(p))
    per = np.stack([lag_curve(v[:, j], p[:, j], lead, search, valid=valid) for j in range(v.shape[1])])
    with np.errstate(all="ignore"):
        return np.nanmean(per, axis=0), per


def prior_conf(prior: AudioMouthPrior, frames: np.ndarray, landmarks_crop: np.ndarray, audio_16k: np.ndarray,
               lead: int, lag: int, search: int, signals: Signals | None = None) -> float:
    """Sigmas above chance at `lag`, averaged over the mouth signals (circular-shift null per signal)."""
    v, p = signals = signals or prior_signals(prior, frames, landmarks_crop, audio_16k)
    _, per = prior_curve(prior, frames, landmarks_crop, audio_16k, lead, search, signals)
    i = lag + search
    zs = [null_z(v[:, j], p[:, j], lead, float(per[j, i])) for j in range(v.shape[1]) if np.isfinite(per[j, i])]
    return float(np.mean(zs)) if zs else 0.0
