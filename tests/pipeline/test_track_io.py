"""The track .npz contract as code: write_track / read_track check keys, dtypes and per-frame shapes."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.record import ALL_ROW_KEYS, ROW_KEYS
from pipeline.track_io import TRACK_KEYS, TrackError, read_track, track_bytes, write_track


def _arrays(n: int = 7) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "boxes": rng.random((n, 4)), "crop_boxes": rng.random((n, 4)), "landmarks": rng.random((n, 68, 2)),
        "landmarks_crop": rng.random((n, 68, 2)), "pose": rng.random((n, 3)), "mouth_open": rng.random(n),
        "det_score": rng.random(n), "detected": rng.random(n) > 0.5, "id_embedding": rng.random(128),
        "fps": 25.0, "crop_size": 512,
    }  # fmt: skip


def test_roundtrip_file_and_bytes(tmp_path):
    a = _arrays()
    write_track(tmp_path / "t.npz", **a)
    for got in (read_track(tmp_path / "t.npz"), read_track(track_bytes(**a))):
        assert tuple(got) == TRACK_KEYS
        np.testing.assert_allclose(got["landmarks"], a["landmarks"].astype(np.float32))
        assert got["detected"].dtype == bool and got["boxes"].dtype == np.float32 and got["crop_size"].dtype == np.int32
        assert float(got["fps"]) == 25.0 and int(got["crop_size"]) == 512


def test_missing_extra_key_and_bad_shape_are_named(tmp_path):
    a = _arrays()
    with pytest.raises(TrackError, match="missing \\['pose'\\]"):
        write_track(tmp_path / "t.npz", **{k: v for k, v in a.items() if k != "pose"})
    with pytest.raises(TrackError, match="unexpected \\['frames'\\]"):
        write_track(tmp_path / "t.npz", **a, frames=np.zeros(7))
    with pytest.raises(TrackError, match="mouth_open has shape \\(6,\\), expected \\(7,\\)"):
        write_track(tmp_path / "t.npz", **a | {"mouth_open": np.zeros(6)})
    # a reader rejects a file some other writer made without the contract's keys
    np.savez(tmp_path / "old.npz", boxes=np.zeros((3, 4)))
    with pytest.raises(TrackError, match="old.npz"):
        read_track(tmp_path / "old.npz")


def test_row_keys_are_unique_across_stages():
    keys = [k for stage in ROW_KEYS.values() for k in stage]
    assert len(keys) == len(set(keys)) == len(ALL_ROW_KEYS)
    assert "track_path" in ROW_KEYS["faces"] and "frames" not in keys
