"""The contract between the two halves: `pipeline.build` under a local Ray writes shards, index and report that
`mcdm_model.train` streams straight into training, and that a rerun of the build adds nothing.

Runs the real commands as a researcher would (subprocesses), on real talking clips from ../shared/media.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.record import ALL_ROW_KEYS
from pipeline.track_io import TRACK_KEYS, read_track

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}

pytestmark = pytest.mark.slow  # a real build, training, evaluation and generation: minutes

# Two short real clips: one English HDTF crop, one Mandarin portrait clip (the languages differ on purpose).
CLIPS = {"en": "hdtf_WDA_AOC_en_8s.mp4", "zh": "liveportrait_d20_zh.mp4"}


def _run(args: list[str], timeout: int) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"{args[:2]} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def _shard_keys(shards: Path) -> list[str]:
    import webdataset as wds

    keys = []
    for tar in sorted(shards.rglob("*.tar")):
        for sample in wds.WebDataset(str(tar), shardshuffle=False):
            assert {"mp4", "wav", "json", "npz"} <= set(sample), sample.keys()
            assert tuple(read_track(sample["npz"])) == TRACK_KEYS  # read_track also rejects extra keys
            keys.append(sample["__key__"])
    return keys


@pytest.fixture(scope="module")
def built(tmp_path_factory, shared_media) -> Path:
    tmp = tmp_path_factory.mktemp("contract")
    man = tmp / "manifests"
    man.mkdir()
    for lang, name in CLIPS.items():
        (man / f"{lang}.csv").write_text(f"id,source,license,note\nclip1,{shared_media / 'video_av' / name},test,\n")
    out = tmp / "out"
    proc = _run(["-m", "pipeline.build", "--lang", "en,zh", "--manifests", str(man), "--out", str(out)], 1200)
    assert "progress: 2/2 videos" in proc.stderr  # a log line for runs whose stderr is a file, not a terminal
    return out


def test_build_writes_shards_index_and_report(built: Path) -> None:
    import pandas as pd

    index = pd.read_parquet(built / "index.parquet")
    assert set(index["lang_expected"]) == {"en", "zh"}
    assert index["key"].is_unique
    assert set(index.columns) <= ALL_ROW_KEYS, set(index.columns) - ALL_ROW_KEYS  # documented in record.ROW_KEYS
    kept = index[index["status"] == "ok"]
    dropped = index[index["status"] == "dropped"]
    assert (dropped["drop_reason"] != "").all()
    assert len(kept) >= 1, index[["key", "status", "drop_reason"]].to_string()
    # every kept row is in a shard, and nothing else is
    keys = _shard_keys(built / "shards")
    assert sorted(keys) == sorted(kept["key"])
    assert all("." not in k for k in keys)
    stats = json.loads((built / "stats.json").read_text())
    assert stats["totals"]["kept"] == len(kept)
    assert (built / "report.html").stat().st_size > 1000
    assert (built / "config.yaml").exists()
    assert len(list((built / "ledger").glob("*.json"))) == 2


def test_rerun_is_a_no_op(built: Path) -> None:
    before = sorted(_shard_keys(built / "shards"))
    man = built.parent / "manifests"
    proc = _run(["-m", "pipeline.build", "--lang", "en,zh", "--manifests", str(man), "--out", str(built)], 600)
    assert "2 already done" in proc.stderr
    assert sorted(_shard_keys(built / "shards")) == before


@pytest.fixture(scope="module")
def trained(built: Path, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    _run(
        ["-m", "mcdm_model.train", "--shards", str(built / "shards"), "--size", "MCDM-T", "--steps", "2",
         "--batch-size", "1", "--out", str(run), "--device", "cpu"],
        timeout=900,
    )  # fmt: skip
    return run / "last.pt"


def test_train_streams_the_shards(trained: Path) -> None:
    import torch

    ckpt = torch.load(trained, map_location="cpu", weights_only=False)
    # --stage all: stages 1, 2, 3 with 2 steps each; the last checkpoint is stage 3's end
    assert (str(ckpt["stage"]), ckpt["stage_step"]) == ("3", 2)
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_evaluate_and_generate_on_the_build(built: Path, trained: Path, tmp_path: Path, shared_media: Path) -> None:
    ev = tmp_path / "eval"
    _run(
        ["-m", "mcdm_model.evaluate", "--shards", str(built / "shards"), "--split", "all", "--checkpoint", str(trained),
         "--clips", "2", "--max-samples", "1", "--steps", "2", "--out", str(ev), "--no-progress"],
        timeout=900,
    )  # fmt: skip
    metrics = json.loads((ev / "metrics.json").read_text())
    assert metrics and (ev / "drift.png").stat().st_size > 0
    video = tmp_path / "gen.mp4"
    _run(
        ["-m", "mcdm_model.generate", "--image", str(shared_media / "faces" / "facenet_kate_siegel.jpg"),
         "--audio", str(shared_media / "audio" / "en" / "obama_5s.wav"), "--checkpoint", str(trained),
         "--max-seconds", "1", "--steps", "2", "--out", str(video)],
        timeout=900,
    )  # fmt: skip
    from pipeline.media import probe

    info = probe(video)
    assert info["has_video"] and info["has_audio"] and info["duration_s"] > 0.5
