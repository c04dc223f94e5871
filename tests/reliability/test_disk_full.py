"""Case 1: a temporary fault (out of disk space, an ffmpeg timeout, ffmpeg killed, memory) never loses a good clip.

The faulty run leaves the failed videos out of the ledger (exit 3, pending.json, the final line says how many);
the rerun, with the fault gone, ends with exactly the kept keys of a fault-free run, none twice.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.reliability.runner import (
    CLIPS,
    assert_same_result,
    build,
    can_mount_tmpfs,
    clip_manifest,
    fast_config,
    index_rows,
    last_line,
    on_tmpfs,
    pending,
    reference,
)

VICTIM = Path(CLIPS[1]).stem.lower()  # the video whose work dir fills up


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, shared_media):
    tmp = tmp_path_factory.mktemp("diskfull")
    return clip_manifest(tmp / "manifests", shared_media, CLIPS[:2]), fast_config(tmp)


@pytest.mark.skipif(not can_mount_tmpfs(), reason="no unprivileged tmpfs mounts on this machine")
def test_real_full_disk_during_normalize_is_retried_by_the_next_run(tmp_path, tmp_path_factory, inputs):
    """One video's work dir on a 100 KiB tmpfs: ffmpeg itself fails with ENOSPC (not an injected error). Only that
    video's dir: the work dir holds every committed clip's members, which finalize (and select) pack from, so the
    rest of it must outlive the run, as a real disk does."""
    manifests, config = inputs
    out = tmp_path / "out"
    first = build(out, manifests, config=config, prefix=on_tmpfs(out / "work" / "en" / f"en-{VICTIM}", "100k"))
    assert first.returncode == 3, first.stderr[-3000:]
    left = pending(out)
    assert left == [f"en-{VICTIM}"], "a 100 KiB work dir cannot hold a normalised video"
    assert f"{len(left)} videos left for the next run" in last_line(first)
    details = json.loads((out / "pending.json").read_text())["pending"]
    assert all("No space left on device" in d["detail"] for d in details), details
    # nothing of a pending video is ledgered or indexed: no drop recorded for media that was fine
    assert not {r["video_key"] for r in index_rows(out)} & set(left)
    assert all(r["drop_reason"] != "corrupt_video" for r in index_rows(out))

    second = build(out, manifests, config=config)  # space freed: the work dir is the real disk again
    assert second.returncode == 0, second.stderr[-3000:]
    assert_same_result(out, reference(tmp_path_factory, manifests, config))


def _faulty_then_clean(tmp_path, tmp_path_factory, inputs, plan: str, n_faults: int) -> None:
    manifests, config = inputs
    out, state = tmp_path / "out", tmp_path / "faults"
    faults = {"TFW_FAULTS": plan, "TFW_FAULTS_DIR": str(state)}
    first = build(out, manifests, config=config, extra_env=faults)
    assert len(list(state.iterdir())) == n_faults, "every injected fault fires in the first run"
    # 2 tries per video: two faults in a row leave one video pending, a single one is absorbed by the retry
    assert first.returncode == 3 and len(pending(out)) == 1, first.stderr[-3000:]
    assert "1 videos left for the next run" in last_line(first)
    assert json.loads((out / "stats.json").read_text())["pending"]["videos"] == 1
    assert not {r["video_key"] for r in index_rows(out)} & set(pending(out))

    second = build(out, manifests, config=config, extra_env=faults)  # the same plan: its budget is spent
    assert second.returncode == 0, second.stderr[-3000:]
    assert "left for the next run" not in last_line(second)
    assert_same_result(out, reference(tmp_path_factory, manifests, config))


def test_injected_enospc_in_normalize_and_oom_in_a_clip_stage(tmp_path, tmp_path_factory, inputs):
    """ENOSPC as ffmpeg reports it, twice on one video (left for the next run), then a MemoryError in the clip
    stage of the other video (absorbed by its retry)."""
    _faulty_then_clean(tmp_path, tmp_path_factory, inputs, "normalize:enospc:2,faces:oom:1", 3)


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["normalize:timeout:3", "normalize:killed:3", "*:diskfull:3", "faces:oom:3"])
def test_each_injected_fault_kind(tmp_path, tmp_path_factory, inputs, fault):
    """An ffmpeg timeout, ffmpeg killed by SIGKILL, ENOSPC raised in Python (any stage), MemoryError."""
    _faulty_then_clean(tmp_path, tmp_path_factory, inputs, fault, 3)
