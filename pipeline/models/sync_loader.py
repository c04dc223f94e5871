"""Build the A/V sync scorer a configuration names (the sync stage, benchmarks and mcdm_model's metrics share it)."""

from __future__ import annotations

from pathlib import Path

from ..config import CHOICES, BuildConfig

# here, not in syncnet.py: finding the weights must not import torch (a sync worker without them never needs it)
WEIGHTS_REL = Path("syncnet") / "syncnet_v2.model"


def syncnet_weights(models_dir: str | Path) -> Path:
    """Where SyncNet's upstream weights go: <models_dir>/syncnet/syncnet_v2.model."""
    return Path(models_dir).expanduser() / WEIGHTS_REL


def load_prior(path: str | Path, models_dir: str | Path):
    """An audio->mouth prior (.npz) with the featurizer its weights were fitted on (log-mel needs none)."""
    from .sync_prior import AudioMouthPrior

    prior = AudioMouthPrior.load(path)
    if prior.features == "log-mel":
        return prior
    from .sync_whisper import NAME, WhisperFrames

    if prior.features != NAME:
        raise ValueError(f"{path}: sync prior on unknown features {prior.features!r} (log-mel or {NAME})")
    prior.featurizer = WhisperFrames(models_dir)
    return prior


def load_sync_scorer(cfg: BuildConfig):
    """cfg.sync.scorer: "auto" (SyncNet weights at <models_dir>/syncnet/syncnet_v2.model if present, else the
    weight-free fused scorer), "syncnet" (weights required), "fused" (energy + log-mel audio->mouth prior offset,
    confidence from sync.conf_prior: the Whisper-frame prior by default; models/sync_fused.py) or "energy" (the
    energy correlation alone)."""
    from .sync_energy import EnergySyncScorer
    from .sync_fused import FusedSyncScorer
    from .sync_prior import PRIOR_PATH, WHISPER_PRIOR_PATH

    choice = cfg.sync.scorer
    weights = syncnet_weights(cfg.models_dir)
    if choice == "syncnet" or (choice == "auto" and weights.is_file()):
        # torch only here: a sync worker without SyncNet weights never imports it (~1-3 CPU-s per Ray worker)
        from .syncnet import SyncNetScorer, load_syncnet

        return SyncNetScorer(load_syncnet(weights), cfg.sync.search_frames)
    if choice == "energy":
        return EnergySyncScorer(cfg.sync.search_frames)
    if choice in ("auto", "fused"):
        cp = cfg.sync.conf_prior
        conf_prior = None if cp == "none" else load_prior(cp or WHISPER_PRIOR_PATH, cfg.models_dir)
        return FusedSyncScorer(cfg.sync.search_frames, prior=load_prior(cfg.sync.prior or PRIOR_PATH, cfg.models_dir),
                               conf_prior=conf_prior)  # fmt: skip
    raise ValueError(
        f"sync.scorer must be {' | '.join(CHOICES[('sync', 'scorer')])}, got {choice!r} (Light-ASD is not a sync scorer: it detects "
        "speech activity, but its score over audio shifts is nearly flat; see pipeline/models/lightasd.py)"
    )
