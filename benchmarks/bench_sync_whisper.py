"""Whisper-encoder frames as the sync prior's audio features, against log-mel, held out by half: one table.

    OMP_NUM_THREADS=1 python benchmarks/bench_sync_whisper.py [--cache /tmp/curation-bench] [--misses]

Clips and protocol as bench_sync_selfcal.py (the curation benchmark's in-sync bases cut by the real shot and faces
stages; per clip its own audio, the audio delayed by k = +-3, 5, 8 frames, two other speakers' audio of the same
half): every prior is fitted on the other half. Rows: the log-mel fused scorer (offset and confidence from one
log-mel prior); a Whisper-frame prior for both; the default, the log-mel offset with the confidence from a
Whisper-frame prior (sync.conf_prior), at +-0..2 frames of context and three ridge strengths; and the default
with the Whisper prior's lag curve added to the offset's (energy + log-mel) at two weights.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_sync_selfcal import TABLE_HEAD, clips_from_args, table_rows  # noqa: E402
from benchmarks.kit.sync_fit import LEAD, fit  # noqa: E402
from pipeline.config import BuildConfig  # noqa: E402
from pipeline.models import sync_prior  # noqa: E402
from pipeline.models.sync_energy import load_frames, smooth_curve  # noqa: E402
from pipeline.models.sync_fused import FusedSyncScorer, _z  # noqa: E402
from pipeline.models.sync_prior import prior_curve  # noqa: E402
from pipeline.models.sync_whisper import WhisperFrames  # noqa: E402


class ThreeCurveOffset(FusedSyncScorer):
    """The default scorer with `weight` x the Whisper prior's lag curve added to the offset's curve (tried, worse)."""

    def __init__(self, prior, conf_prior, weight: float):
        super().__init__(15, prior=prior, conf_prior=conf_prior)
        self.weight = weight

    def score(self, c, audio, fps: float = 25, audio_lead_frames: int = 0):
        cv = self.curve(c, audio, fps, audio_lead_frames)
        frames, lms, _ = load_frames(c)
        w = smooth_curve(prior_curve(self.conf_prior, frames, lms, audio, audio_lead_frames, self.search + 1)[0])[1:-1]
        off = int(np.argmax(cv.values + self.weight * _z(w))) - self.search + self.prior.lag_bias
        return int(np.clip(off, -self.search, self.search)), cv.conf


def scoring(scorer: FusedSyncScorer):
    return lambda c, audio: scorer.score(c, audio, audio_lead_frames=LEAD)


@contextmanager
def context(frames: int):
    """The Whisper features' +-context (sync_prior.FEATURIZER_CONTEXT, read at call time) for one variant."""
    old, sync_prior.FEATURIZER_CONTEXT = sync_prior.FEATURIZER_CONTEXT, frames
    try:
        yield
    finally:
        sync_prior.FEATURIZER_CONTEXT = old


def main(argv: list[str] | None = None) -> int:
    args, clips = clips_from_args(__doc__, argv)
    frames = WhisperFrames(BuildConfig().models_dir)
    train = {h: [c for c in clips if c["half"] != h] for h in "AB"}
    mel = {h: fit(train[h]) for h in "AB"}

    def whisper_conf(alpha: float):  # its context is the variant's (`context` below)
        return lambda h: FusedSyncScorer(15, prior=mel[h], conf_prior=fit(train[h], alpha, featurizer=frames))

    variants = [
        ("log-mel prior, offset and confidence (before)", 2, lambda h: FusedSyncScorer(15, prior=mel[h])),
        ("Whisper-frame prior, offset and confidence (+-1)", 1, lambda h: FusedSyncScorer(15, prior=fit(train[h], featurizer=frames))),
        ("log-mel offset, Whisper confidence +-0", 0, whisper_conf(100.0)),
        ("log-mel offset, Whisper confidence +-1 (default)", 1, whisper_conf(100.0)),
        ("log-mel offset, Whisper confidence +-2", 2, whisper_conf(100.0)),
        ("log-mel offset, Whisper confidence +-1, ridge alpha 10", 1, whisper_conf(10.0)),
        ("log-mel offset, Whisper confidence +-1, ridge alpha 1000", 1, whisper_conf(1000.0)),
        *[(f"energy + log-mel + {wt} x Whisper curves for the offset", 1,
           lambda h, wt=wt: ThreeCurveOffset(mel[h], fit(train[h], featurizer=frames), wt)) for wt in (0.5, 1.0)],
    ]
    print(TABLE_HEAD)
    notes = []
    for name, ctx, make in variants:
        with context(ctx):
            notes += table_rows(name, lambda h, make=make: scoring(make(h)), clips, args.misses)
    print("\n".join(notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
