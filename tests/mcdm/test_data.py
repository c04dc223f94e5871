"""mcdm_model.data on real-media shards in the pipeline's format: decoding, windows, chains across a predecessor,
a real shuffle, resume by position, rank splitting, workers, bad samples."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds

from mcdm_model.config import TrainConfig, model_config
from mcdm_model.data import (
    ShardIndex,
    decode_clip,
    join_predecessor,
    list_shards,
    make_loader,
    sample_windows,
    to_model,
)
from mcdm_model.motion import LIP, MOTION_DIM, motion_tokens
from pipeline.track_io import read_track


def _samples(shards: Path) -> list[dict]:
    return list(wds.WebDataset(list_shards(shards), shardshuffle=False, empty_check=False))


def test_decode_clip_matches_track(mcdm_shards: Path) -> None:
    cfg = model_config("MCDM-T")
    sample = _samples(mcdm_shards)[0]
    clip = decode_clip(sample, cfg)
    n = len(clip["frames"])
    assert n == 75 and clip["frames"].shape == (75, 64, 64, 3) and clip["frames"].dtype == np.uint8
    assert clip["audio"].shape == (75 * 640,) and np.abs(clip["audio"]).max() > 0.05  # real speech
    assert clip["motion"].shape == (75, MOTION_DIM) and np.isfinite(clip["motion"]).all()
    # the lip tokens carry the mouth opening measured by the track (inner lip gap: points 62 (top) / 66 (bottom))
    mouth = read_track(sample["npz"])["mouth_open"]
    lip = clip["motion"][:, LIP].reshape(n, 20, 2)
    gap = lip[:, 66 - 48, 1] - lip[:, 62 - 48, 1]
    assert np.corrcoef(gap, mouth)[0, 1] > 0.9
    # a real talking face: the mouth opens and closes
    assert mouth.max() - mouth.min() > 0.05


def test_resize_to_model_size(mcdm_shards: Path) -> None:
    clip = decode_clip(_samples(mcdm_shards)[0], model_config("MCDM-T", image_size=32))
    assert clip["frames"].shape[1:] == (32, 32, 3)


def test_windows_are_aligned(mcdm_shards: Path) -> None:
    cfg = model_config("MCDM-T")
    clip = decode_clip(_samples(mcdm_shards)[1], cfg)
    a, f = cfg.archived_frames, cfg.present_frames
    for w in sample_windows(clip, cfg, random.Random(0), 8):
        s = w["start"]
        assert a <= s <= len(clip["frames"]) - f
        np.testing.assert_array_equal(w["present"], clip["frames"][s : s + f].transpose(0, 3, 1, 2))
        np.testing.assert_array_equal(w["archived"], clip["frames"][s - a : s].transpose(0, 3, 1, 2))
        np.testing.assert_array_equal(w["audio"], clip["audio"][s * 640 : (s + f) * 640])
        np.testing.assert_array_equal(w["motion"], clip["motion"][s : s + f])
        np.testing.assert_array_equal(w["ref"], clip["frames"][w["ref_index"]].transpose(2, 0, 1))
    short = {**clip, "frames": clip["frames"][: a + f - 1], "motion": clip["motion"][: a + f - 1]}
    assert sample_windows(short, cfg, random.Random(0), 4) == []


def test_motion_tokens_invariant_to_crop_placement(mcdm_shards: Path) -> None:
    track = read_track(_samples(mcdm_shards)[0]["npz"])
    lm, pose = track["landmarks_crop"], track["pose"]
    base = motion_tokens(lm, pose)
    moved = motion_tokens(lm * 3.0 + np.array([17.0, -5.0], np.float32), pose)  # bigger crop, shifted face
    np.testing.assert_allclose(base, moved, atol=1e-4)
    np.testing.assert_allclose(base[:, :3], pose / 90.0, atol=1e-6)
    with pytest.raises(ValueError, match="68, 2"):
        motion_tokens(lm[:, :60], pose)


def _keys_starts(loader, n: int) -> list:
    it = iter(loader)
    return [(tuple(b["key"]), tuple(b["start"].tolist())) for b in (next(it) for _ in range(n))]


def test_stream_is_reproducible_and_differs_per_rank(mcdm_shards: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, tcfg = model_config("MCDM-T"), TrainConfig(batch_size=2, seed=3, num_workers=0)
    first = _keys_starts(make_loader(mcdm_shards, cfg, tcfg), 4)
    assert first == _keys_starts(make_loader(mcdm_shards, cfg, tcfg), 4)
    workers = TrainConfig(batch_size=2, seed=3, num_workers=2)  # the batches do not depend on the workers
    assert first == _keys_starts(make_loader(mcdm_shards, cfg, workers), 4)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert _keys_starts(make_loader(mcdm_shards, cfg, tcfg), 4) != first
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.delenv("RANK")
    batch = to_model(next(iter(make_loader(mcdm_shards, cfg, tcfg))), "cpu")
    f = cfg.present_frames * tcfg.chain_clips
    assert batch["present"].shape == (2, f, 3, 64, 64) and batch["present"].min() >= -1.0
    assert batch["present"].max() <= 1.0 and batch["motion_archived"].shape == (2, 2, MOTION_DIM)
    assert batch["audio"].shape == (2, f * 640) and batch["motion"].shape == (2, f, MOTION_DIM)


def test_resume_starts_at_the_saved_batch_without_decoding_the_past(mcdm_shards: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The loader restarted at batch s yields exactly batches s, s+1, ... of a straight run, and decodes only
    what those batches need (nothing of the s batches before)."""
    import mcdm_model.data as data

    cfg, tcfg = model_config("MCDM-T"), TrainConfig(batch_size=1, seed=5, num_workers=0)
    straight = _keys_starts(make_loader(mcdm_shards, cfg, tcfg), 7)
    decoded: list[str] = []
    real = data.decode_clip
    monkeypatch.setattr(data, "decode_clip", lambda s, c: decoded.append(s["__key__"]) or real(s, c))
    assert _keys_starts(make_loader(mcdm_shards, cfg, tcfg, start=5), 2) == straight[5:]
    assert len(decoded) == 2  # one clip per batch here: the 5 earlier batches were never read


def test_shuffle_is_a_permutation_per_epoch(mcdm_shards: Path, tmp_path: Path) -> None:
    """Every epoch visits every clip once in a new random order: a real shuffle, not a small buffer."""
    good = _samples(mcdm_shards)[0]
    with wds.TarWriter(str(tmp_path / "en-000000.tar"), encoder=False) as w:
        for i in range(12):
            w.write({**{k: v for k, v in good.items() if not k.startswith("__")}, "__key__": f"en-c{i:02d}"})
    cfg, tcfg = model_config("MCDM-T"), TrainConfig(batch_size=1, seed=0, num_workers=0)
    keys = [b["key"][0] for b in make_loader(tmp_path, cfg, tcfg, epochs=3)]
    epochs = [keys[i : i + 12] for i in range(0, 36, 12)]
    shard_order = [f"en-c{i:02d}" for i in range(12)]
    assert all(sorted(e) == shard_order for e in epochs)
    assert len({tuple(e) for e in epochs}) == 3 and all(e != shard_order for e in epochs)


def test_epoch_splits_clips_across_ranks(mcdm_shards: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, tcfg = model_config("MCDM-T"), TrainConfig(batch_size=1, num_workers=0)
    expected = sorted(s["__key__"] for s in _samples(mcdm_shards))
    monkeypatch.setenv("WORLD_SIZE", "2")
    per_rank = []
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        per_rank.append([k for b in make_loader(mcdm_shards, cfg, tcfg, epochs=1) for k in b["key"]])
    assert sorted(per_rank[0] + per_rank[1]) == expected


def test_chain_reaches_back_into_the_predecessor_clip(shared_media: Path, media_cache: Path, tmp_path: Path) -> None:
    """Two consecutive cuts of one take, the second naming the first as `prev_key`: windows of the second may
    start in the first, and their frames are the concatenated footage."""
    from benchmarks.kit.fixture_shards import write_shards

    src = shared_media / "video_av" / "hdtf_WDA_AOC_en_8s.mp4"
    write_shards(media_cache / "mcdm_take", [(src, 1.0, 1.4), (src, 1.4, 1.8)])
    raw = _samples(media_cache / "mcdm_take" / "shards")
    first, second = raw[0], dict(raw[1])
    meta = json.loads(second["json"])
    second["json"] = json.dumps({**meta, "prev_key": first["__key__"]}).encode()
    with wds.TarWriter(str(tmp_path / "en-000000.tar"), encoder=False) as w:
        for smp in (first, second):
            w.write({k: v for k, v in smp.items() if not k.startswith("__") or k == "__key__"})
    cfg = model_config("MCDM-T")
    from mcdm_model.data import WindowDataset

    ds = WindowDataset(ShardIndex(tmp_path), cfg, TrainConfig(windows_per_clip=40, chain_clips=2))
    joined = ds.load(second["__key__"])
    a, b = decode_clip(first, cfg), decode_clip(second, cfg)
    assert joined["offset"] == len(a["frames"]) == 10
    np.testing.assert_array_equal(joined["frames"], join_predecessor(a, b)["frames"])
    wins = sample_windows(joined, cfg, random.Random(0), 40, chain=2)
    assert min(w["start"] for w in wins) < 0  # the chain starts inside the predecessor
    for w in wins:
        s = w["start"] + 10
        np.testing.assert_array_equal(w["present"], joined["frames"][s : s + 8].transpose(0, 3, 1, 2))
    assert ds.load(first["__key__"])["offset"] == 0  # no predecessor named: the clip alone


def test_bad_sample_is_skipped(mcdm_shards: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = _samples(mcdm_shards)[0]
    bad_path = tmp_path / "en-000000.tar"
    with wds.TarWriter(str(bad_path), encoder=False) as w:
        w.write({"__key__": "en-broken-s0000", "mp4": b"not a video", "wav": good["wav"], "npz": good["npz"]})
        w.write({"__key__": "en-nonpz-s0001", "mp4": good["mp4"], "wav": good["wav"]})
        w.write({k: v for k, v in good.items() if not k.startswith("__") or k == "__key__"})
    cfg, tcfg = model_config("MCDM-T"), TrainConfig(batch_size=1, num_workers=0)
    assert ShardIndex(tmp_path).keys == ["en-broken-s0000", good["__key__"]]  # a sample without .npz is not indexed
    with caplog.at_level(logging.WARNING, logger="mcdm_model.data"):
        keys = [k for b in make_loader(tmp_path, cfg, tcfg, epochs=1) for k in b["key"]]
    assert keys == [good["__key__"]] * 2  # the broken clip's turn is served by the next clip
    assert "en-broken-s0000" in caplog.text


def test_only_bad_samples_is_a_clear_error(mcdm_shards: Path, tmp_path: Path) -> None:
    good = _samples(mcdm_shards)[0]
    with wds.TarWriter(str(tmp_path / "en-000000.tar"), encoder=False) as w:
        w.write({"__key__": "en-broken-s0000", "mp4": b"not a video", "wav": good["wav"], "npz": good["npz"]})
    cfg, tcfg = model_config("MCDM-T"), TrainConfig(batch_size=1, num_workers=0)
    with pytest.raises(RuntimeError, match="50 samples in a row"):
        next(iter(make_loader(tmp_path, cfg, tcfg)))
    with wds.TarWriter(str(tmp_path / "en-000000.tar"), encoder=False) as w:
        w.write({"__key__": "en-nompd-s0000", "wav": good["wav"]})
    with pytest.raises(RuntimeError, match="no usable sample"):
        make_loader(tmp_path, cfg, tcfg)


def test_missing_shards_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no .tar shards"):
        list_shards(tmp_path)


def test_decode_without_pyav_matches(mcdm_shards: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mcdm_model.data import decode_mp4

    data = _samples(mcdm_shards)[0]["mp4"]
    with_av = decode_mp4(data, 32)
    monkeypatch.setitem(__import__("sys").modules, "av", None)  # `import av` now raises ImportError
    without = decode_mp4(data, 32)
    assert without.shape == with_av.shape == (75, 32, 32, 3)
    assert np.abs(without.astype(int) - with_av).mean() < 8  # same frames, different resize filter
