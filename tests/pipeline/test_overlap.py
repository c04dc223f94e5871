"""The overlapped in-process graph (pipeline/overlap.py): same units and order as the sequential one, each stage
on one thread of its own, the last in the caller's, a failure raised in the caller, an early close stops it.

Stage logic only (stand-in stages); the real stages run overlapped in every `--no-ray` build test
(test_resume, test_dataset_build, tests/reliability)."""

from __future__ import annotations

import dataclasses
import itertools
import threading

import pytest

from pipeline.build import group_by_video, run_local
from pipeline.config import load_config
from pipeline.overlap import run_overlapped
from pipeline.stages.base import Stage


class Tag(Stage):
    """Appends its name to every row's `trail` and notes the thread that called it."""

    name = "shots"

    def __init__(self, cfg, tag: str, fan_out: bool = False):
        super().__init__(cfg)
        self.tag, self.fan_out, self.threads = tag, fan_out, set()

    def process(self, row):
        self.threads.add(threading.get_ident())
        row = row | {"trail": row.get("trail", "") + self.tag}
        if self.fan_out:  # two clips, as a shot split makes
            return [row | {"key": f"{row['key']}-{i}"} for i in range(2)]
        return row


def _videos(n: int) -> list[list[dict]]:
    return [[{"key": f"v{i}", "video_key": f"v{i}", "status": "ok"}] for i in range(n)]


@pytest.fixture
def cfg(tmp_path):
    return load_config(None, out=str(tmp_path / "out"))


def test_same_units_in_the_same_order_as_the_sequential_graph(cfg):
    def stages():
        return [Tag(cfg, "a"), Tag(cfg, "b", fan_out=True), Tag(cfg, "c")]

    want = list(run_local(stages(), _videos(6)))
    ours = stages()
    got = list(run_overlapped(ours, _videos(6), group_by_video))
    assert got == want
    assert [r["key"] for u in got for r in u][:4] == ["v0-0", "v0-1", "v1-0", "v1-1"]
    assert all(r["trail"] == "abc" for u in got for r in u)
    assert all(len(s.threads) == 1 for s in ours)  # each stage instance is only ever called from one thread
    assert len({next(iter(s.threads)) for s in ours}) == 3
    assert ours[-1].threads == {threading.get_ident()}  # the last stage (Commit) runs in the caller's thread


def test_a_stage_works_on_the_next_video_while_a_later_stage_holds_the_one_before(cfg):
    second_started = threading.Event()

    class First(Tag):
        def process(self, row):
            if row["key"] == "v1":
                second_started.set()
            return super().process(row)

    class Second(Tag):
        def process(self, row):
            if row["key"] == "v0":  # sequentially, v1 could not reach First before v0 left this stage
                assert second_started.wait(timeout=60), "First never took v1 while Second held v0"
            return super().process(row)

    got = list(run_overlapped([First(cfg, "a"), Second(cfg, "b"), Tag(cfg, "c")], _videos(3), group_by_video))
    assert [u[0]["key"] for u in got] == ["v0", "v1", "v2"]
    assert second_started.is_set()


def test_a_failure_in_a_stage_thread_is_raised_in_the_caller_after_the_units_before_it(cfg):
    class Boom(Tag):
        def run_video(self, rows):  # outside Stage.__call__'s guard, as a bug in the stage plumbing would be
            if rows[0]["key"] == "v2":
                raise KeyboardInterrupt
            return super().run_video(rows)

    seen = []
    with pytest.raises(KeyboardInterrupt):
        for unit in run_overlapped([Tag(cfg, "a"), Boom(cfg, "b"), Tag(cfg, "c")], _videos(5), group_by_video):
            seen.append(unit[0]["key"])
    assert seen == ["v0", "v1"]


def test_closing_early_stops_every_thread(cfg):
    endless = ([{"key": f"v{i}", "video_key": f"v{i}", "status": "ok"}] for i in itertools.count())
    before = set(threading.enumerate())
    stream = run_overlapped([Tag(cfg, "a"), Tag(cfg, "b"), Tag(cfg, "c")], endless, group_by_video)
    assert next(stream)[0]["key"] == "v0"
    stream.close()
    for t in set(threading.enumerate()) - before:
        t.join(timeout=30)
        assert not t.is_alive(), t.name


def test_closing_stops_a_stage_between_the_rows_of_the_unit_in_hand(cfg):
    """A Ctrl-C must not wait for a whole many-clip video to go through a stage (pipeline/overlap.py, JOIN_S)."""
    done: list[str] = []
    reached = threading.Event()

    class Slow(Tag):
        def process(self, row):
            done.append(row["key"])
            if row["key"] == "v1-1":  # held until the run stops: the close happens while this unit is in hand
                reached.set()
                assert self.stopping.wait(timeout=60)
            return super().process(row)

    v1 = [{"key": f"v1-{i}", "video_key": "v1", "status": "ok"} for i in range(50)]
    slow = Slow(cfg, "a")
    stream = run_overlapped([slow, Tag(cfg, "b"), Tag(cfg, "c")], [_videos(1)[0], v1], group_by_video)
    assert next(stream)[0]["key"] == "v0"
    before = set(threading.enumerate())
    assert reached.wait(timeout=60)
    stream.close()  # returns once the threads are joined
    assert done == ["v0", "v1-0", "v1-1"]  # v1-2 .. v1-49 never started
    assert not [t for t in before if t.name.startswith("overlap-") and t.is_alive()]
    assert slow.stopping is None


def test_a_stopping_stage_does_not_retry(cfg):
    """A Ctrl-C also kills the ffmpeg a stage is running, which reads as a transient failure: once the run is
    stopping, the stage must not sleep and try again (each retry would hold up the way out)."""
    from pipeline.faults import Transient
    from pipeline.stages.base import Stopped

    tries: list[int] = []

    class Flaky(Tag):
        def process(self, row):
            tries.append(1)
            self.stopping.set()  # the run stops while this try is in hand
            raise Transient("ffmpeg exit -2")

    slow_retries = dataclasses.replace(cfg, retry=dataclasses.replace(cfg.retry, attempts=3, backoff_s=600.0))
    flaky = Flaky(slow_retries, "a")
    flaky.stopping = threading.Event()
    with pytest.raises(Stopped):  # without the stop: 600 s of sleep, then a second try
        flaky.run_video(_videos(1)[0])
    assert tries == [1]


@pytest.mark.slow  # one more real build beside the session's reference build
def test_a_real_build_gives_the_same_clips_overlapped_and_one_video_at_a_time(tmp_path, tmp_path_factory,
                                                                              shared_media):
    import subprocess

    import numpy as np
    import pyarrow.parquet as pq

    from tests.helpers.resume_stages import ROOT, build_cmd, reference_run, run_env, shard_keys

    overlapped, manifests, cfg_yaml, _ = reference_run(tmp_path_factory, shared_media, 2)  # `--no-ray`
    one_at_a_time = tmp_path / "sequential"
    proc = subprocess.run([*build_cmd(one_at_a_time, manifests, cfg_yaml), "--sequential"], cwd=ROOT, env=run_env(),
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert shard_keys(overlapped) and sorted(shard_keys(overlapped)) == sorted(shard_keys(one_at_a_time))
    a, b = (pq.read_table(out / "index.parquet").to_pandas().sort_values("key") for out in (overlapped, one_at_a_time))
    assert a["key"].tolist() == b["key"].tolist()
    numeric = [c for c in a.columns if a[c].dtype.kind in "fiu"]
    assert numeric  # the scores every gate read
    for c in numeric:  # the same work on the same frames: the same scores
        assert np.allclose(a[c].to_numpy(float), b[c].to_numpy(float), atol=1e-4, equal_nan=True), c
