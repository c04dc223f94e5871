"""Resume: SIGKILL the real `python -m pipeline.build` at random points, rerun to completion, compare keys.

The reference is an uninterrupted run on the same manifest; after 2 kills (whole process group, as a crashed
node would lose it) and a final rerun, the shards must hold exactly the reference's keys, none twice, and the
index must list every clip once. Runs in-process (--no-ray) to stay fast; test_cluster covers Ray.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
from collections import Counter

import pytest

from tests.helpers.resume_stages import (
    ROOT,
    build_cmd,
    index_keys,
    reference_run,
    run_build,
    run_env,
    shard_keys,
)

N_VIDEOS = 2
KILLS = 2


@pytest.mark.slow  # a reference build, then builds killed and resumed
def test_kill9_and_resume_gives_the_same_keys(tmp_path, tmp_path_factory, shared_media):
    clean, manifests, cfg_yaml, t_clean = reference_run(tmp_path_factory, shared_media, N_VIDEOS)
    want_shards, want_index = sorted(shard_keys(clean)), sorted(index_keys(clean))
    assert want_shards, "the reference run kept no clip: nothing to compare"

    seed = int(os.environ.get("TFW_RESUME_SEED", random.randrange(10**6)))
    rng = random.Random(seed)
    out = tmp_path / "resumed"
    history = []
    for _ in range(KILLS):
        delay = rng.uniform(0.25, 0.75) * t_clean
        proc = subprocess.Popen(build_cmd(out, manifests, cfg_yaml), cwd=ROOT, env=run_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        try:
            proc.wait(timeout=delay)
            history.append(f"finished before the kill at {delay:.1f}s")
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the build and everything it started
            proc.wait()
            ledgers = len(list((out / "ledger").glob("*.json"))) if (out / "ledger").exists() else 0
            history.append(f"killed at {delay:.1f}s with {ledgers} videos committed")
    run_build(out, manifests, cfg_yaml)

    got = shard_keys(out)
    why = f"seed={seed} (rerun with TFW_RESUME_SEED), t_clean={t_clean:.1f}s, {history}"
    assert [k for k, n in Counter(got).items() if n > 1] == [], why
    assert sorted(got) == want_shards, why
    assert sorted(index_keys(out)) == want_index, why
    assert not list(out.rglob("*.tmp")), why
    ledgers = sorted(p.name for p in (out / "ledger").glob("*.json"))
    assert ledgers == sorted(p.name for p in (clean / "ledger").glob("*.json")), why


def _ledger_rows(out) -> dict[str, list[tuple]]:
    from pipeline.index import read_ledger

    return {e["video_key"]: [(r["key"], r["status"], r.get("drop_reason", "")) for r in e["rows"]]
            for e in read_ledger(out)}  # fmt: skip


@pytest.mark.slow  # a reference build, then a build interrupted and resumed
def test_ctrl_c_commits_only_whole_videos_and_a_rerun_completes(tmp_path, tmp_path_factory, shared_media):
    """Ctrl-C to the whole process group, as a terminal sends it: the build's ffmpeg children die with it, and in
    the overlapped `--no-ray` graph a stage thread sees its decode fail; no such video may be committed (as an
    `error` drop or anything else the uninterrupted run did not commit), and the rerun gives the reference."""
    clean, manifests, cfg_yaml, t_clean = reference_run(tmp_path_factory, shared_media, N_VIDEOS)
    seed = int(os.environ.get("TFW_RESUME_SEED", random.randrange(10**6)))
    delay = random.Random(seed).uniform(0.3, 0.7) * t_clean
    out = tmp_path / "interrupted"
    proc = subprocess.Popen(build_cmd(out, manifests, cfg_yaml), cwd=ROOT, env=run_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    why = f"seed={seed}, t_clean={t_clean:.1f}s, SIGINT at {delay:.1f}s, exit {proc.returncode}: {err[-1500:]}"
    assert proc.returncode in (0, 130), why
    if proc.returncode == 130:
        assert "interrupted: finished videos are committed" in err, why
    want = _ledger_rows(clean)
    got = _ledger_rows(out)
    assert {vk: want.get(vk) for vk in got} == got, why  # each committed video exactly as the reference has it
    run_build(out, manifests, cfg_yaml)
    assert sorted(shard_keys(out)) == sorted(shard_keys(clean)), why
    assert _ledger_rows(out) == want, why


def test_interrupt_commits_the_videos_already_finished(tmp_path, shared_media, media_cache, monkeypatch):
    """Ctrl-C (or a Ray error) mid-run: build() still closes the sink, so finished videos need no redo."""
    from pipeline import build
    from pipeline.config import load_config
    from pipeline.stages.base import Stage
    from pipeline.stages.download import Download
    from tests.helpers.resume_stages import setup_inputs
    from tests.helpers.sink_media import make_media

    m = make_media(shared_media, media_cache)
    seen: list[str] = []

    class ClipOrInterrupt(Stage):
        name = "faces"

        def process(self, row):
            seen.append(row["video_key"])
            if len(seen) == 2:
                raise KeyboardInterrupt  # not an Exception: the stage cannot turn it into a drop
            return row | {"key": row["key"] + "-s0000", "start_s": 0.0, "end_s": 3.0, "crop_path": str(m["crop"]),
                          "clip_wav_path": str(m["wav"]), "track_path": str(m["npz"])}  # fmt: skip

    manifests, _ = setup_inputs(tmp_path, shared_media, n_videos=2)
    cfg = load_config(None, out=str(tmp_path / "out"), manifests=str(manifests), langs=["en"])
    with pytest.raises(KeyboardInterrupt):
        build.build(cfg, use_ray=False, stages=[Download, ClipOrInterrupt])
    out = tmp_path / "out"
    assert shard_keys(out) == [f"{seen[0]}-s0000"]  # committed although shard_max_count was not reached
    assert sorted(p.stem for p in (out / "ledger").glob("*.json")) == [seen[0]]
    assert not list(out.rglob("*.tar.tmp"))
