"""Commit + finalize: per-video ledger, shards/<split>/<lang>/ with 4 members per key, temp-then-rename,
unchanged shards left alone, stale shards removed, kill during packing, the lock, the index."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from pipeline import sink as sink_mod
from pipeline.config import BuildConfig
from pipeline.finalize import finalize
from pipeline.stages.commit import Commit
from pipeline.track_io import read_track
from tests.helpers.sink_media import build_out, commit, dropped_video, make_media, track_for, video


@pytest.fixture(scope="session")
def m(shared_media, media_cache) -> dict[str, Path]:
    return make_media(shared_media, media_cache)


def _cfg(out: Path, max_count: int = 1000, max_bytes: int = 10**9, one_split: bool = False) -> BuildConfig:
    cfg = BuildConfig(out=str(out))
    cfg.sink.shard_max_count = max_count
    cfg.sink.shard_max_bytes = max_bytes
    if one_split:  # every identity in train: shard numbering over all videos
        cfg.splits.val = cfg.splits.test = 0.0
    return cfg


def _tars(out: Path) -> list[Path]:
    return sorted((out / "shards").rglob("*.tar"))


def _shard_keys(out: Path) -> list[str]:
    urls = [str(p) for p in _tars(out)]
    return [s["__key__"] for s in wds.WebDataset(urls, shardshuffle=False, empty_check=False)] if urls else []


def _index(out: Path):
    return pq.read_table(out / "index.parquet").to_pandas().set_index("key")


def test_shards_by_split_and_language_with_four_members_and_index(tmp_path, m):
    build_out(_cfg(tmp_path), video(m, "en", "vid_a", kept=2, dropped=1, reason="out_of_sync"),
              video(m, "zh", "vid_b", kept=1), dropped_video("en", "https://example.com/watch?v=x.y"))  # fmt: skip
    index = _index(tmp_path)
    kept = index[index["status"] == "ok"]
    assert sorted(kept.index) == ["en-vid_a-s0000", "en-vid_a-s0001", "zh-vid_b-s0000"]
    assert kept["split"].isin(["train", "val", "test"]).all() and kept["identity_id"].str.startswith("id-").all()
    assert kept.loc["en-vid_a-s0000", "identity_id"] == kept.loc["en-vid_a-s0001", "identity_id"]  # one person
    rels = sorted(str(p.relative_to(tmp_path / "shards")) for p in _tars(tmp_path))
    assert rels == sorted({f"{r.split}/{k.split('-')[0]}/{k.split('-')[0]}-000000.tar" for k, r in kept.iterrows()})
    assert set(kept["shard"]) == set(rels) and index.loc["en-vid_a-s0002", "shard"] == ""
    samples = list(wds.WebDataset(str(tmp_path / "shards" / kept.loc["en-vid_a-s0000", "shard"]), shardshuffle=False))
    assert [x["__key__"] for x in samples] == ["en-vid_a-s0000", "en-vid_a-s0001"]
    for x in samples:
        assert {k for k in x if not k.startswith("__")} == {"mp4", "wav", "json", "npz"}
        assert x["mp4"] == m["crop"].read_bytes() and x["wav"] == m["wav"].read_bytes()
        track = read_track(x["npz"])
        assert track["boxes"].shape == (25, 4) and track["landmarks"].shape == (25, 68, 2)
        meta = json.loads(x["json"])
        assert meta["key"] == x["__key__"] and meta["sync_conf"] == 6.5 and meta["shard"] == kept.loc[x["__key__"], "shard"]
        assert meta["split"] == kept.loc[x["__key__"], "split"] and meta["identity_id"].startswith("id-")
        assert meta["title"] == "a title; with 'quotes' & $(stuff)"
        assert "info" not in meta and not any(k.endswith("_path") for k in meta)  # scalars only, no host paths
    assert index.loc["en-vid_a-s0002", "drop_reason"] == "out_of_sync"
    dropped_key = next(k for k in index.index if k.startswith("en-https"))
    assert "." not in dropped_key and index.loc[dropped_key, "drop_stage"] == "download"
    assert np.isnan(index.loc[dropped_key, "sync_conf"])  # union of columns, null where a row lacks one
    assert sorted(p.name for p in (tmp_path / "ledger").iterdir()) == sorted(f"{k}.json" for k in index["video_key"].unique())
    entry = json.loads((tmp_path / "ledger" / "en-vid_a.json").read_text())
    # kept clips are fingerprinted, and so is the one a soft gate (sync) dropped: select may keep it later
    assert set(entry["prints"]) == {"en-vid_a-s0000", "en-vid_a-s0001", "en-vid_a-s0002"}


def test_unreadable_files_become_write_failed(tmp_path, m):
    rows = video(m, "en", "vid_c", kept=3)
    rows[1]["crop_path"] = str(tmp_path / "missing.mp4")
    rows[2]["track_path"] = str(tmp_path)  # a directory: unreadable as a file
    build_out(_cfg(tmp_path), rows, [r | {"clip_wav_path": None} for r in video(m, "en", "vid_d", kept=1)])
    assert _shard_keys(tmp_path) == ["en-vid_c-s0000"]
    index = _index(tmp_path)
    for key in ("en-vid_c-s0001", "en-vid_c-s0002", "en-vid_d-s0000"):
        assert (index.loc[key, "drop_stage"], index.loc[key, "drop_reason"]) == ("sink", "write_failed")
    assert "missing.mp4" in index.loc["en-vid_c-s0001", "drop_detail"]

    out = tmp_path / "none"  # the only video's files are all unreadable: no empty shard appears
    build_out(_cfg(out), [r | {"track_path": str(tmp_path / "gone.npz")} for r in video(m, "en", "vid_e", kept=2)])
    assert not list((out / "shards").rglob("*.tar*")) and sink_mod.done_videos(out) == {"en-vid_e"}


def test_member_vanishing_after_commit_is_write_failed_at_packing(tmp_path, m):
    gone = tmp_path / "crop_copy.mp4"
    gone.write_bytes(m["crop"].read_bytes())
    cfg = _cfg(tmp_path)
    commit(cfg, [r | {"crop_path": str(gone)} for r in video(m, "en", "v1", kept=1)], video(m, "en", "v2", kept=1))
    gone.unlink()
    finalize(cfg)
    index = _index(tmp_path)
    assert index.loc["en-v1-s0000", "drop_reason"] == "write_failed" and _shard_keys(tmp_path) == ["en-v2-s0000"]


def test_unchanged_shards_are_not_rewritten_and_stale_ones_removed(tmp_path, m):
    cfg = _cfg(tmp_path, max_count=2)
    build_out(cfg, *[video(m, "en", f"u{i}", kept=2) for i in range(3)])
    tars = {str(p): p.stat().st_mtime_ns for p in _tars(tmp_path)}
    assert len(tars) == 3
    again = finalize(cfg)
    assert again["rewritten"] == 0 and {str(p): p.stat().st_mtime_ns for p in _tars(tmp_path)} == tars
    cfg.quality.min_sharpness = 500.0  # every clip fails: the selection empties, every shard goes
    assert finalize(cfg)["removed"] == 3 and not _tars(tmp_path) and not list((tmp_path / "shard_state").rglob("*.json"))


def test_shards_close_between_videos(tmp_path, m):
    build_out(_cfg(tmp_path, max_count=2, one_split=True), *[video(m, "en", f"v{i}", kept=k) for i, k in enumerate([1, 2, 1, 3])])
    per_shard = {p.name: Counter(k.split("-s")[0] for k in _keys_of(p)) for p in _tars(tmp_path)}
    # v0 alone (v1 would overflow), v1 fills one, v2 alone, v3 bigger than the limit stays whole in its own shard
    assert per_shard == {
        "en-000000.tar": {"en-v0": 1}, "en-000001.tar": {"en-v1": 2},
        "en-000002.tar": {"en-v2": 1}, "en-000003.tar": {"en-v3": 3},
    }  # fmt: skip
    size = m["crop"].stat().st_size + m["wav"].stat().st_size + track_for(m, "b0").stat().st_size  # each video's own track
    out2 = tmp_path / "bytes"
    build_out(_cfg(out2, max_bytes=int(size * 2.5), one_split=True), *[video(m, "en", f"b{i}", kept=1) for i in range(3)])
    assert [len(_keys_of(p)) for p in _tars(out2)] == [2, 1]


def _keys_of(path: Path) -> list[str]:
    return [x["__key__"] for x in wds.WebDataset(str(path), shardshuffle=False)]


class Killed(BaseException):
    """Stands in for SIGKILL: not an Exception, so nothing can swallow it."""


def test_kill_while_packing_resumes_to_the_same_shards(tmp_path, m, monkeypatch):
    videos = [video(m, "en", "c1", kept=2, dropped=1), video(m, "en", "c2", kept=1), video(m, "ja", "c3", kept=2),
              dropped_video("en", "c4"), video(m, "en", "c5", kept=1)]  # fmt: skip
    build_out(_cfg(tmp_path / "clean", max_count=2), *videos)
    want = {str(p.relative_to(tmp_path / "clean")): p.read_bytes() for p in _tars(tmp_path / "clean")}
    assert len(want) >= 3

    out = tmp_path / "crashed"
    commit(_cfg(out, max_count=2), *videos)
    real_replace, calls = sink_mod.os.replace, Counter()

    def replace_then_die(src, dst):
        if str(src).endswith(".tar.tmp"):
            calls["shard"] += 1
            if calls["shard"] == 2:
                raise Killed
        return real_replace(src, dst)

    monkeypatch.setattr(sink_mod.os, "replace", replace_then_die)
    with pytest.raises(Killed):
        finalize(_cfg(out, max_count=2))
    monkeypatch.setattr(sink_mod.os, "replace", real_replace)
    assert list((out / "shards").rglob("*.tar.tmp"))
    sink_mod.recover(out)  # what the next run does first
    assert not list(out.rglob("*.tmp"))
    summary = finalize(_cfg(out, max_count=2))
    assert summary["rewritten"] == len(want) - 1  # the one shard committed before the kill is left as it is
    got = {str(p.relative_to(out)): p.read_bytes() for p in _tars(out)}
    assert got == want  # byte for byte: shards are a pure function of the ledger and the config
    keys = _shard_keys(out)
    assert len(keys) == len(set(keys)) == 6


def test_rows_of_two_videos_in_one_call_are_committed_separately(tmp_path, m):
    cfg = _cfg(tmp_path)
    Commit(cfg).run_video(video(m, "en", "mix1", kept=1) + video(m, "en", "mix2", kept=1, dropped=1))
    assert sorted(p.name for p in (tmp_path / "ledger").iterdir()) == ["en-mix1.json", "en-mix2.json"]
    rows = json.loads((tmp_path / "ledger" / "en-mix2.json").read_text())["rows"]
    assert [r["key"] for r in rows] == ["en-mix2-s0000", "en-mix2-s0001"]
    finalize(cfg)
    assert sorted(_shard_keys(tmp_path)) == ["en-mix1-s0000", "en-mix2-s0000"]


def test_one_writer_per_output_dir_and_recover(tmp_path):
    lock = sink_mod.take_lock(tmp_path)
    with pytest.raises(RuntimeError, match="another build or select"):
        sink_mod.take_lock(tmp_path)
    lock.close()
    sink_mod.take_lock(tmp_path).close()  # released
    (tmp_path / "ledger").mkdir()
    (tmp_path / "ledger" / "junk.json.tmp").write_text("{")
    (tmp_path / "ledger" / "en-bad.json").write_text("{not json")
    sink_mod.recover(tmp_path)
    assert not list((tmp_path / "ledger").iterdir())


def test_index_unions_columns_with_mixed_types(tmp_path):
    rows = [{"key": "en-a", "video_key": "en-a", "x": 1, "y": "s"}, {"key": "en-b", "video_key": "en-b", "x": 2.5, "y": 3}]
    table = pq.read_table(sink_mod.write_index(rows, tmp_path / "index.parquet"))
    assert table.column("x").to_pylist() == [1.0, 2.5]
    assert table.column("y").to_pylist() == ["s", "3"]
    assert table.column("drop_reason").to_pylist() == [None, None]
