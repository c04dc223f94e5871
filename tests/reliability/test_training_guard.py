"""Case 2: training on shards that yield no complete sample (a 0-byte tar, a tar cut at 5 %) stops at once with an
error naming the shards, instead of spinning on webdataset's swallowed tar errors forever."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mcdm_model.config import TrainConfig, model_config
from mcdm_model.data import make_loader

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def good_shard(shared_media, tmp_path_factory) -> Path:
    """One real 3-s talking clip in the pipeline's shard format."""
    from benchmarks.kit.fixture_shards import write_shards

    out = tmp_path_factory.mktemp("guard_shards")
    write_shards(out, [(shared_media / "video_av" / "hdtf_WDA_AOC_en_8s.mp4", 1.0, 4.0)])
    [tar] = sorted((out / "shards").rglob("*.tar"))
    return tar


@pytest.fixture()
def bad_shards(tmp_path, good_shard) -> Path:
    d = tmp_path / "bad" / "en"
    d.mkdir(parents=True)
    (d / "en-000000.tar").write_bytes(b"")
    data = good_shard.read_bytes()
    (d / "en-000001.tar").write_bytes(data[: len(data) // 20])
    return tmp_path / "bad"


def test_train_command_fails_fast_naming_the_shards(bad_shards, tmp_path):
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "mcdm_model.train", "--shards", str(bad_shards), "--size", "MCDM-T",
                           "--steps", "2", "--out", str(tmp_path / "run")], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)  # fmt: skip  (a hang fails here)
    elapsed = time.monotonic() - t0
    assert proc.returncode != 0
    assert "in 2 shard(s)" in proc.stderr and "no usable sample" in proc.stderr, proc.stderr[-2000:]
    assert "en-000000.tar" in proc.stderr and "en-000001.tar" in proc.stderr
    print(f"train gave up after {elapsed:.1f} s")


def test_loader_guard_raises_in_process_and_spares_good_shards(bad_shards, good_shard, tmp_path):
    cfg, tcfg = model_config("MCDM-T"), TrainConfig(batch_size=1, num_workers=0)
    with pytest.raises(RuntimeError, match=r"no usable sample .* in 2 shard\(s\): en-000000.tar, en-000001.tar"):
        make_loader(str(bad_shards), cfg, tcfg)
    # one good shard among the bad ones: training goes on (the guard only fires when nothing is usable)
    shutil.copy(good_shard, bad_shards / "en" / "en-000002.tar")
    batch = next(iter(make_loader(str(bad_shards), cfg, tcfg, epochs=1)))
    assert batch["present"].shape[0] == 1
