"""Build the A/V sync scorer a configuration names (the sync stage, benchmarks and mcdm_model's metrics share it)."""

from __future__ import annotations

from pathlib import Path

from ..config import CHOICES, BuildConfig

# here, not in syncnet.py: finding the weights must not import torch (a sync worker without them never needs it)
WEIGHTS_REL = Path("syncnet") / "syncnet_v2.model"


def syncnet_weights(models_dir: str | Path) -> Path:
    """Where SyncNet's upstream weights go: <models_dir>/syncnet/syncnet_v2.model."""
    return Path(models_dir).expanduser() / WEIGHTS_REL


def load_sync_scorer(cfg: BuildConfig):
    """cfg.sync.scorer: "auto" (SyncNet weights at <models_dir>/syncnet/syncnet_v2.model if present, else the
    weight-free fused scorer), "syncnet" (weights required), "fused" (energy offset + audio->mouth prior
    confidence, models/sync_fused.py) or "energy" (the energy correlation alone)."""
    from .sync_energy import EnergySyncScorer
    from .sync_fused import FusedSyncScorer
    from .sync_prior import PRIOR_PATH

    choice = cfg.sync.scorer
    weights = syncnet_weights(cfg.models_dir)
    if choice == "syncnet" or (choice == "auto" and weights.is_file()):
        # torch only here: a sync worker without SyncNet weights never imports it (~1-3 CPU-s per Ray worker)
        from .syncnet import SyncNetScorer, load_syncnet

        return SyncNetScorer(load_syncnet(weights), cfg.sync.search_frames)
    if choice == "energy":
        return EnergySyncScorer(cfg.sync.search_frames)
    if choice in ("auto", "fused"):
        return FusedSyncScorer(cfg.sync.search_frames, prior=cfg.sync.prior or PRIOR_PATH)
    raise ValueError(
        f"sync.scorer must be {' | '.join(CHOICES[('sync', 'scorer')])}, got {choice!r} (Light-ASD is not a sync scorer: it detects "
        "speech activity, but its score over audio shifts is nearly flat; see pipeline/models/lightasd.py)"
    )
