"""Build the A/V sync scorer a configuration names (the sync stage, benchmarks and mcdm_model's metrics share it)."""

from __future__ import annotations

from pathlib import Path

from ..config import CHOICES, BuildConfig


def load_sync_scorer(cfg: BuildConfig):
    """cfg.sync.scorer: "auto" (SyncNet weights at <models_dir>/syncnet/syncnet_v2.model if present, else the
    weight-free energy scorer), "syncnet" (weights required) or "energy"."""
    from .sync_energy import EnergySyncScorer
    from .syncnet import WEIGHTS_REL, SyncNetScorer, load_syncnet

    choice = cfg.sync.scorer
    weights = Path(cfg.models_dir).expanduser() / WEIGHTS_REL
    if choice == "syncnet" or (choice == "auto" and weights.is_file()):
        return SyncNetScorer(load_syncnet(weights), cfg.sync.search_frames)
    if choice in ("auto", "energy"):
        return EnergySyncScorer(cfg.sync.search_frames)
    raise ValueError(
        f"sync.scorer must be {' | '.join(CHOICES[('sync', 'scorer')])}, got {choice!r} (Light-ASD is not a sync scorer: it detects "
        "speech activity, but its score over audio shifts is nearly flat; see pipeline/models/lightasd.py)"
    )
