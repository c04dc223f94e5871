"""Fit the fused sync scorer's audio->mouth prior (and its bias and confidence scale) on faces-stage rows.

Used by bench_curation per fold (fit on one half's in-sync clips, score the other half) and, on every in-sync
clip of both halves, to refit the shipped `pipeline/models/sync_prior.npz` (`bench_curation.py --fit-prior`).
"""

from __future__ import annotations

import numpy as np

from pipeline import media
from pipeline.models.sync_energy import HOP
from pipeline.models.sync_fused import FusedSyncScorer
from pipeline.models.sync_prior import AudioMouthPrior, decision_point, fit_prior
from pipeline.stages.sync import read_context_audio
from pipeline.track_io import read_track

LEAD = 15
CONF_RULES = ("balanced", "dub90", "dub95")  # where fit() puts the decision point (RESULTS_sync J)
SIZE = FusedSyncScorer.input_size


def clip_inputs(row: dict, identity: str) -> dict:
    """What the sync stage gives a scorer for this row: crop frames at the scorer's size, landmarks, context audio."""
    frames = media.read_frames(row["crop_path"], size=(SIZE, SIZE))
    full = media.probe(row["crop_path"]).get("width") or SIZE
    lms = read_track(row["track_path"])["landmarks_crop"] * (SIZE / full)
    audio = read_context_audio(row["audio_path"], float(row["start_s"]), len(frames), LEAD)
    return {"frames": frames, "landmarks_crop": lms, "audio": audio, "lead": LEAD, "identity": identity}


def fit_decision_point(pos: list[float], neg: list[float], rule: str = "balanced") -> float:
    """Where the fitted confidence scale puts min_conf: `balanced` = the best balanced accuracy between own audio
    (pos) and dubs (neg); `dubNN` = the NN-th percentile of the dubs (keeps more good clips, lets more dubs by)."""
    if rule == "balanced":
        return decision_point(pos, neg)
    if rule in CONF_RULES:
        return float(np.percentile(neg, float(rule[3:])))
    raise ValueError(f"conf rule {rule!r}: one of {', '.join(CONF_RULES)}")


def fit(clips: list[dict], alpha: float = 100.0, rule: str = "balanced", featurizer=None) -> AudioMouthPrior:
    """Prior on the clips' own audio (log-mel, or `featurizer`'s frames); lag_bias from the fused scorer's in-sync
    readings; conf_scale from the decision point (`rule`, fit_decision_point) between own audio and every other
    identity's audio on the clips."""
    prior = fit_prior(clips, alpha, featurizer)
    scorer = FusedSyncScorer(prior=prior, conf_scale=1.0)
    offsets = [scorer.raw(c, c["audio"], audio_lead_frames=LEAD)[0].offset for c in clips]  # clips carry landmarks
    prior.lag_bias = -int(np.round(np.median(offsets)))
    pos, neg = [], []
    for c in clips:
        pos.append(scorer.raw(c, c["audio"], audio_lead_frames=LEAD)[1])
        for o in clips:
            if o["identity"] != c["identity"]:
                dub = np.resize(o["audio"][LEAD * HOP :], len(c["audio"]))
                neg.append(scorer.raw(c, dub, audio_lead_frames=LEAD)[1])
    prior.conf_scale = 3.0 / max(fit_decision_point(pos, neg, rule), 0.1)
    return prior
