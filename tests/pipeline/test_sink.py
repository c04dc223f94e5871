"""ShardSink: webdataset shards with 4 members per key, temp-then-rename, ledger resume, crash safety, index."""

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
from pipeline.sink import ShardSink
from pipeline.track_io import read_track
from tests.helpers.sink_media import dropped_video, make_media, video


@pytest.fixture(scope="session")
def m(shared_media, media_cache) -> dict[str, Path]:
    return make_media(shared_media, media_cache)


def _cfg(out: Path, max_count: int = 1000, max_bytes: int = 10**9) -> BuildConfig:
    cfg = BuildConfig(out=str(out))
    cfg.sink.shard_max_count = max_count
    cfg.sink.shard_max_bytes = max_bytes
    return cfg


def _shard_keys(out: Path) -> list[str]:
    """Every sample key in every committed shard, read back with webdataset."""
    urls = sorted(str(p) for p in (out / "shards").glob("*/*.tar"))
    if not urls:
        return []
    return [s["__key__"] for s in wds.WebDataset(urls, shardshuffle=False, empty_check=False)]


def test_shards_readable_with_four_members_and_index(tmp_path, m):
    s = ShardSink(_cfg(tmp_path))
    s.add_video(video(m, "en", "vid_a", kept=2, dropped=1, reason="out_of_sync"))
    s.add_video(video(m, "zh", "vid_b", kept=1))
    s.add_video(dropped_video("en", "https://example.com/watch?v=x.y"))
    assert (s.n_kept, s.n_dropped) == (3, 2)
    s.close()

    assert sorted(p.name for p in (tmp_path / "shards").rglob("*")) == ["en", "en-000000.tar", "zh", "zh-000000.tar"]
    samples = list(wds.WebDataset(str(tmp_path / "shards" / "en" / "en-000000.tar"), shardshuffle=False))
    assert [x["__key__"] for x in samples] == ["en-vid_a-s0000", "en-vid_a-s0001"]
    for x in samples:
        assert "." not in x["__key__"]
        assert {k for k in x if not k.startswith("__")} == {"mp4", "wav", "json", "npz"}
        assert x["mp4"] == m["crop"].read_bytes() and x["wav"] == m["wav"].read_bytes()
        track = read_track(x["npz"])
        assert track["boxes"].shape == (25, 4) and track["landmarks"].shape == (25, 68, 2)
        meta = json.loads(x["json"])
        assert meta["key"] == x["__key__"] and meta["sync_conf"] == 6.5 and meta["shard"] == "en-000000.tar"
        assert meta["title"] == "a title; with 'quotes' & $(stuff)"
        assert "info" not in meta and "boxes_inline" not in meta  # scalars only

    index = pq.read_table(tmp_path / "index.parquet").to_pandas().set_index("key")
    assert len(index) == 5
    assert index.loc["en-vid_a-s0002", "drop_reason"] == "out_of_sync"
    assert index.loc["en-vid_a-s0002", "shard"] == ""
    assert index.loc["zh-vid_b-s0000", "shard"] == "zh-000000.tar"
    dropped_key = next(k for k in index.index if k.startswith("en-https"))
    assert "." not in dropped_key and index.loc[dropped_key, "drop_stage"] == "download"
    assert np.isnan(index.loc[dropped_key, "sync_conf"])  # union of columns, null where a row lacks one
    assert sorted(p.name for p in (tmp_path / "ledger").iterdir()) == sorted(
        f"{k}.json" for k in index["video_key"].unique()
    )


def test_unreadable_files_become_write_failed(tmp_path, m):
    s = ShardSink(_cfg(tmp_path))
    rows = video(m, "en", "vid_c", kept=3)
    rows[1]["crop_path"] = str(tmp_path / "missing.mp4")
    rows[2]["track_path"] = str(tmp_path)  # a directory: unreadable as a file
    s.add_video(rows)
    s.add_video([r | {"clip_wav_path": None} for r in video(m, "en", "vid_d", kept=1)])
    s.close()
    assert _shard_keys(tmp_path) == ["en-vid_c-s0000"]
    index = pq.read_table(tmp_path / "index.parquet").to_pandas().set_index("key")
    for key in ("en-vid_c-s0001", "en-vid_c-s0002", "en-vid_d-s0000"):
        assert (index.loc[key, "drop_stage"], index.loc[key, "drop_reason"]) == ("sink", "write_failed")
    assert "missing.mp4" in index.loc["en-vid_c-s0001", "drop_detail"]
    assert (s.n_kept, s.n_dropped) == (1, 3)

    s = ShardSink(_cfg(tmp_path / "none"))  # the only video's files are all unreadable: no empty shard appears
    s.add_video([r | {"track_path": str(tmp_path / "gone.npz")} for r in video(m, "en", "vid_e", kept=2)])
    s.close()
    assert not list((tmp_path / "none" / "shards").rglob("*.tar*")) and s.is_done("en-vid_e")


def test_temp_then_rename_and_dropped_videos_commit_at_once(tmp_path, m):
    s = ShardSink(_cfg(tmp_path))
    s.add_video(video(m, "en", "vid_e", kept=1))
    s.add_video(dropped_video("en", "vid_f"))
    shard_dir = tmp_path / "shards" / "en"
    assert [p.name for p in shard_dir.iterdir()] == ["en-000000.tar.tmp"]  # a reader never sees half a shard
    assert not s.is_done("en-vid_e") and s.is_done("en-vid_f")
    assert [p.name for p in (tmp_path / "ledger").iterdir()] == ["en-vid_f.json"]
    s.close()
    assert [p.name for p in shard_dir.iterdir()] == ["en-000000.tar"]
    assert s.is_done("en-vid_e")


def test_shards_close_between_videos(tmp_path, m):
    s = ShardSink(_cfg(tmp_path, max_count=2))
    for i, kept in enumerate([1, 2, 1, 3]):
        s.add_video(video(m, "en", f"v{i}", kept=kept))
    s.close()
    per_shard = {
        p.name: Counter(k.split("-s")[0] for k in _keys_of(p)) for p in sorted((tmp_path / "shards" / "en").glob("*.tar"))
    }
    # v0 alone (v1 would overflow), v1 fills one, v2 alone, v3 bigger than the limit stays whole in its own shard
    assert per_shard == {
        "en-000000.tar": {"en-v0": 1}, "en-000001.tar": {"en-v1": 2},
        "en-000002.tar": {"en-v2": 1}, "en-000003.tar": {"en-v3": 3},
    }  # fmt: skip

    size = m["crop"].stat().st_size + m["wav"].stat().st_size + m["npz"].stat().st_size
    out2 = tmp_path / "bytes"
    s = ShardSink(_cfg(out2, max_bytes=int(size * 2.5)))
    for i in range(3):
        s.add_video(video(m, "en", f"b{i}", kept=1))
    s.close()
    assert [len(_keys_of(p)) for p in sorted((out2 / "shards" / "en").glob("*.tar"))] == [2, 1]


def _keys_of(path: Path) -> list[str]:
    return [x["__key__"] for x in wds.WebDataset(str(path), shardshuffle=False)]


def test_resume_skips_done_videos_and_numbers_after_existing(tmp_path, m):
    s = ShardSink(_cfg(tmp_path))
    s.add_video(video(m, "en", "r1", kept=2))
    s.add_video(dropped_video("en", "r2"))
    s.close()

    s = ShardSink(_cfg(tmp_path))
    assert s.is_done("en-r1") and s.is_done("en-r2") and not s.is_done("en-r3")
    s.add_video(video(m, "en", "r1", kept=2))  # arriving again (e.g. a search re-found it): ignored
    s.add_video(video(m, "en", "r3", kept=1))
    s.close()
    assert sorted(p.name for p in (tmp_path / "shards" / "en").iterdir()) == ["en-000000.tar", "en-000001.tar"]
    keys = _shard_keys(tmp_path)
    assert sorted(keys) == ["en-r1-s0000", "en-r1-s0001", "en-r3-s0000"]
    index = pq.read_table(tmp_path / "index.parquet").to_pandas()
    assert sorted(index["key"]) == ["en-r1-s0000", "en-r1-s0001", "en-r2", "en-r3-s0000"]


def _all_videos(m):
    return [video(m, "en", "c1", kept=2, dropped=1), video(m, "en", "c2", kept=1), video(m, "ja", "c3", kept=2),
            dropped_video("en", "c4"), video(m, "en", "c5", kept=1)]  # fmt: skip


_SINKS: list[ShardSink] = []


def _run(out: Path, videos: list[list[dict]]) -> None:
    s = ShardSink(_cfg(out, max_count=2))
    _SINKS.append(s)
    for rows in videos:
        if not s.is_done(rows[0]["video_key"]):
            s.add_video(rows)
    s.close()


class Killed(BaseException):
    """Stands in for SIGKILL: not an Exception, so nothing in the sink can swallow it."""


def test_crash_between_ledger_and_rename_resumes_without_loss_or_duplicates(tmp_path, m, monkeypatch):
    _run(tmp_path / "clean", _all_videos(m))
    expected = sorted(_shard_keys(tmp_path / "clean"))
    expected_index = sorted(pq.read_table(tmp_path / "clean" / "index.parquet").column("key").to_pylist())

    out = tmp_path / "crashed"
    real_replace = sink_mod.os.replace
    calls = Counter()

    def replace_then_die(src, dst):
        if str(src).endswith(".tar.tmp"):
            calls["shard"] += 1
            if calls["shard"] == 2:  # second shard commit: its ledger files are written, the rename never happens
                raise Killed
        return real_replace(src, dst)

    monkeypatch.setattr(sink_mod.os, "replace", replace_then_die)
    with pytest.raises(Killed):
        _run(out, _all_videos(m))
    monkeypatch.setattr(sink_mod.os, "replace", real_replace)
    _SINKS[-1]._lock.close()  # what the OS does for a killed process
    leftovers = list((out / "shards").rglob("*.tar.tmp"))
    assert len(leftovers) == 2 and (out / "ledger" / "ja-c3.json").exists()  # ja shard: ledger written, no rename

    s = ShardSink(_cfg(out))
    assert not list((out / "shards").rglob("*.tar.tmp"))
    assert s.is_done("en-c1") and not s.is_done("en-c4")  # c4 never arrived
    assert not s.is_done("ja-c3")  # its ledger pointed at a shard that never appeared: removed
    assert not s.is_done("en-c2")  # in the open en shard when killed
    s.close()
    _run(out, _all_videos(m))
    keys = _shard_keys(out)
    assert sorted(keys) == expected and len(keys) == len(set(keys))
    assert sorted(pq.read_table(out / "index.parquet").column("key").to_pylist()) == expected_index


def test_killed_with_open_shard_redoes_its_videos(tmp_path, m):
    s = ShardSink(_cfg(tmp_path))
    s.add_video(video(m, "en", "k1", kept=1))
    s._lock.close()  # the process dies here: no close(), the .tmp shard stays behind, the OS drops its lock
    (tmp_path / "ledger" / "junk.json.tmp").write_text("{")
    s2 = ShardSink(_cfg(tmp_path))
    assert not s2.is_done("en-k1")
    assert not list(tmp_path.rglob("*.tmp"))
    s2.add_video(video(m, "en", "k1", kept=1))
    s2.close()
    assert _shard_keys(tmp_path) == ["en-k1-s0000"]


def test_index_unions_columns_with_mixed_types(tmp_path):
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    rows = [{"key": "en-a", "video_key": "en-a", "x": 1, "y": "s"}, {"key": "en-b", "video_key": "en-b", "x": 2.5, "y": 3}]
    for r in rows:
        (ledger / f"{r['key']}.json").write_text(json.dumps({"video_key": r["key"], "rows": [r]}))
    table = pq.read_table(sink_mod.write_index(ledger, tmp_path / "index.parquet"))
    assert table.column("x").to_pylist() == [1.0, 2.5]
    assert table.column("y").to_pylist() == ["s", "3"]
    assert table.column("drop_reason").to_pylist() == [None, None]


def test_rows_of_two_videos_in_one_call_are_committed_separately(tmp_path, m):
    s = ShardSink(_cfg(tmp_path))
    s.add_video(video(m, "en", "mix1", kept=1) + video(m, "en", "mix2", kept=1, dropped=1))
    s.close()
    assert sorted(p.name for p in (tmp_path / "ledger").iterdir()) == ["en-mix1.json", "en-mix2.json"]
    rows = json.loads((tmp_path / "ledger" / "en-mix2.json").read_text())["rows"]
    assert [r["key"] for r in rows] == ["en-mix2-s0000", "en-mix2-s0001"]
    assert sorted(_shard_keys(tmp_path)) == ["en-mix1-s0000", "en-mix2-s0000"]


def test_one_writer_per_output_dir(tmp_path, m):
    s = ShardSink(_cfg(tmp_path))
    s.add_video(video(m, "en", "l1", kept=1))
    with pytest.raises(RuntimeError, match="another build is writing"):
        ShardSink(_cfg(tmp_path))  # would otherwise delete s's open .tar.tmp
    assert list((tmp_path / "shards" / "en").glob("*.tar.tmp"))
    s.close()
    s2 = ShardSink(_cfg(tmp_path))  # lock released by close()
    assert s2.is_done("en-l1")
    s2.close()
