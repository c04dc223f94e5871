"""Case 1 under Ray: a worker killed by SIGKILL (what the OOM killer does) mid-task is rerun by Ray and the build
ends like a fault-free one; a video that kills every worker it touches ends the run with exit 3 and every
unfinished video pending (retry.worker_crashes bounds Ray's reruns, which would otherwise go on forever)."""

from __future__ import annotations

import json

import pytest

from tests.reliability.runner import (
    CLIPS,
    assert_same_result,
    build,
    clip_manifest,
    fast_config,
    last_line,
    pending,
    reference,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, shared_media):
    tmp = tmp_path_factory.mktemp("rayworkers")
    return clip_manifest(tmp / "manifests", shared_media, CLIPS[:2]), fast_config(tmp, "retry: {attempts: 2, "
                                                                                 "backoff_s: 0.05, worker_crashes: 2}\n")


def test_a_killed_worker_is_rerun_by_ray(tmp_path, tmp_path_factory, inputs):
    manifests, config = inputs
    out, state = tmp_path / "out", tmp_path / "faults"
    proc = build(out, manifests, config=config, ray=True,
                 extra_env={"TFW_FAULTS": "faces:sigkill:1", "TFW_FAULTS_DIR": str(state)})  # fmt: skip
    assert len(list(state.iterdir())) == 1  # the worker really died once
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_result(out, reference(tmp_path_factory, manifests, config))


def test_a_worker_killer_ends_the_run_with_everything_pending(tmp_path, tmp_path_factory, inputs):
    manifests, config = inputs
    out, state = tmp_path / "out", tmp_path / "faults"
    faults = {"TFW_FAULTS": "faces:sigkill:50", "TFW_FAULTS_DIR": str(state)}
    proc = build(out, manifests, config=config, ray=True, extra_env=faults)
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "videos left for the next run" in last_line(proc)
    assert sorted(pending(out)) == ["en-retalking_face5_en", "en-vexpress_aoc_en_4s"]
    assert "WorkerCrashedError" in json.dumps(json.loads((out / "pending.json").read_text()))
    rerun = build(out, manifests, config=config, ray=True)  # the killer gone
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert_same_result(out, reference(tmp_path_factory, manifests, config))
