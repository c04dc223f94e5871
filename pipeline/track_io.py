"""The per-frame track `.npz`: the contract between the faces stage, the later stages, the sink and mcdm_model.

One file per clip (`track_path` in the row, `<key>.npz` in a shard). N = the clip's frames at the record's FPS;
pixel coordinates are in the normalised source frame unless the key says `_crop` (the square crop, crop_size px).

  boxes           (N, 4) float32   smoothed face box x1, y1, x2, y2
  crop_boxes      (N, 4) float32   the square crop window in the source frame
  landmarks       (N, 68, 2) float32  iBUG-68 points
  landmarks_crop  (N, 68, 2) float32  the same points in crop pixels
  pose            (N, 3) float32   yaw, pitch, roll degrees (pipeline.track.head_pose)
  mouth_open      (N,) float32     inner-lip gap / face height (pipeline.track.mouth_open)
  det_score       (N,) float32     detector score (interpolated between detections)
  detected        (N,) bool        frames with a real detection
  id_embedding    (D,) float32     L2-normalised identity embedding of the clip
  fps             () float32       frame rate of the arrays
  crop_size       () int32         side of the crop video in px

Every writer goes through `write_track` (which checks keys and shapes) and every reader through `read_track`.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import IO

import numpy as np

# key -> (dtype, per-frame trailing shape, or None for a per-clip array)
TRACK_SPEC: dict[str, tuple[type, tuple[int, ...] | None]] = {
    "boxes": (np.float32, (4,)),
    "crop_boxes": (np.float32, (4,)),
    "landmarks": (np.float32, (68, 2)),
    "landmarks_crop": (np.float32, (68, 2)),
    "pose": (np.float32, (3,)),
    "mouth_open": (np.float32, ()),
    "det_score": (np.float32, ()),
    "detected": (np.bool_, ()),
    "id_embedding": (np.float32, None),
    "fps": (np.float32, None),
    "crop_size": (np.int32, None),
}
TRACK_KEYS: tuple[str, ...] = tuple(TRACK_SPEC)
PER_FRAME_KEYS: tuple[str, ...] = tuple(k for k, (_, shape) in TRACK_SPEC.items() if shape is not None)


class TrackError(ValueError):
    """A track does not follow the contract (missing or extra keys, wrong shapes)."""


def check_track(arrays: dict[str, np.ndarray], where: str = "track") -> dict[str, np.ndarray]:
    """The arrays cast to the contract's dtypes; raises TrackError on missing/extra keys or mismatched shapes."""
    missing, extra = set(TRACK_KEYS) - arrays.keys(), arrays.keys() - set(TRACK_KEYS)
    if missing or extra:
        raise TrackError(f"{where}: missing {sorted(missing)}, unexpected {sorted(extra)} (see pipeline/track_io.py)")
    out = {k: np.asarray(arrays[k], dtype=TRACK_SPEC[k][0]) for k in TRACK_KEYS}
    n = len(out["boxes"])
    for k in PER_FRAME_KEYS:
        want = (n, *TRACK_SPEC[k][1])
        if out[k].shape != want:
            raise TrackError(f"{where}: {k} has shape {out[k].shape}, expected {want}")
    if out["id_embedding"].ndim != 1:
        raise TrackError(f"{where}: id_embedding must be 1-D, got {out['id_embedding'].shape}")
    return out


def write_track(dst: str | Path | IO[bytes], **arrays: np.ndarray) -> None:
    """Write a contract track (all TRACK_KEYS, checked) to a path or a binary file object, compressed."""
    np.savez_compressed(dst, **check_track(arrays, str(dst) if isinstance(dst, (str, Path)) else "track"))


def track_bytes(**arrays: np.ndarray) -> bytes:
    """The `.npz` bytes of a contract track (what a shard holds as `<key>.npz`)."""
    buf = io.BytesIO()
    write_track(buf, **arrays)
    return buf.getvalue()


def read_track(src: str | Path | bytes) -> dict[str, np.ndarray]:
    """A contract track from a path or from `.npz` bytes; raises TrackError if it does not follow the contract."""
    where = "track bytes" if isinstance(src, bytes) else str(src)
    with np.load(io.BytesIO(src) if isinstance(src, bytes) else src) as z:
        return check_track({k: z[k] for k in z.files}, where)
