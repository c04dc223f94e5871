"""What the pipeline shares with its consumers (mcdm_model, benchmarks): the one door into `pipeline` for them.

The record's constants and track arrays, media decode/encode, config merging and the models dir, the face-model
paths, the ArcFace embedder and the per-frame measures the faces stage uses, and the sync scorer loader.
mcdm_model imports `pipeline` only through this module (tests/test_boundaries.py checks it), so stage files can
change without breaking it.
"""

from __future__ import annotations

from typing import Any

from . import media
from .config import BuildConfig, default_models_dir, merge_dataclass
from .media import (
    MediaError,
    decode_video_bytes,
    read_audio,
    read_frames,
    require_ffmpeg,
    write_video,
    write_wav,
)
from .models.face_dlib import RESNET as DLIB_RECOGNITION
from .models.face_dlib import SHAPE_68 as DLIB_LANDMARKS_68
from .models.face_insightface import ArcFaceEmbedder
from .models.face_weights import PACK_ROLES as INSIGHTFACE_PACK_ROLES
from .models.face_weights import (
    MissingWeightsError,
    dlib_model_path,
    find_insightface_model,
    find_insightface_pack,
)
from .models.sync_loader import load_sync_scorer, syncnet_weights
from .record import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from .track import head_pose, mouth_open
from .track_io import TRACK_KEYS, TrackError, read_track, track_bytes, write_track

__all__ = [
    "DLIB_LANDMARKS_68", "DLIB_RECOGNITION", "FPS", "INSIGHTFACE_PACK_ROLES", "SAMPLES_PER_FRAME", "SAMPLE_RATE",
    "TRACK_KEYS", "ArcFaceEmbedder", "MediaError", "MissingWeightsError", "TrackError", "decode_video_bytes",
    "default_models_dir", "dlib_model_path", "find_insightface_model", "find_insightface_pack", "head_pose",
    "media", "merge_dataclass", "mouth_open", "read_audio", "read_frames", "read_track", "require_ffmpeg",
    "sync_scorer", "syncnet_weights", "track_bytes", "write_track", "write_video", "write_wav",
]  # fmt: skip


def sync_scorer(models_dir: str | None = None, search_frames: int = 15, scorer: str = "auto") -> Any:
    """A sync stage scorer for a models dir: `scorer` as sync.scorer takes it ("auto": SyncNet when its weights
    are there, else the fused scorer; "syncnet", "fused", "energy"); None = the default models dir."""
    cfg = BuildConfig() if models_dir is None else BuildConfig(models_dir=str(models_dir))
    cfg.sync.search_frames, cfg.sync.scorer = search_frames, scorer
    return load_sync_scorer(cfg)
