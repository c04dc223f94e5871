"""Takes on the model side: a window at a take's window boundary draws its archived frames from the predecessor
clip (pixels compared), `evaluate --takes` joins a take's windows, `list_shards` reads one split."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds

from benchmarks.kit.fixture_shards import clip_sample
from mcdm_model import evaluate
from mcdm_model.config import TrainConfig, model_config
from mcdm_model.data import (
    ShardIndex,
    WindowDataset,
    decode_clip,
    join_predecessor,
    list_shards,
    sample_windows,
)

KEYS = ("en-aoc-s0000-w000", "en-aoc-s0000-w001")


@pytest.fixture(scope="module")
def take_shard(shared_media: Path, media_cache: Path, have_ffmpeg) -> Path:
    """One shard under test/en/ holding a real 2-s take as two consecutive 1-s windows, in the pipeline's format."""
    path = media_cache / "take_shards" / "test" / "en" / "en-000000.tar"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        src = shared_media / "video_av" / "hdtf_WDA_AOC_en_8s.mp4"
        with wds.TarWriter(str(path), encoder=False) as w:
            for k, key in enumerate(KEYS):
                s = clip_sample(src, key, 1.0 + k, 2.0 + k, 64)
                meta = json.loads(s["json"]) | {"take_id": "en-aoc-s0000", "take_index": k, "take_windows": 2,
                                                "prev_key": KEYS[k - 1] if k else "", "take_s": 2.0}  # fmt: skip
                w.write(s | {"json": json.dumps(meta).encode()})
    return path.parents[2]


def _clips(root: Path, split: str = "test") -> list[dict]:
    cfg = model_config("MCDM-T")
    return [decode_clip(x, cfg) for x in wds.WebDataset(list_shards(root, split), shardshuffle=False)]


def test_window_at_the_boundary_takes_archived_frames_from_the_predecessor(take_shard):
    cfg = model_config("MCDM-T")
    first, second = _clips(take_shard)
    a, f, off = cfg.archived_frames, cfg.present_frames, len(first["frames"])
    joined = join_predecessor(first, second)
    wins = sample_windows(joined, cfg, random.Random(0), 400)
    by_start = {w["start"]: w for w in wins}
    w = by_start[0]  # the present clip starts at the window's first frame
    assert np.array_equal(w["archived"], first["frames"][-a:].transpose(0, 3, 1, 2))  # the seconds before, pixel for pixel
    assert np.array_equal(w["present"], second["frames"][:f].transpose(0, 3, 1, 2))
    assert np.array_equal(w["motion_archived"], first["motion"][-a:])
    w1 = by_start[1]  # one frame in: archived = predecessor's last a-1 frames + own first
    assert np.array_equal(w1["archived"][-1], second["frames"][0].transpose(2, 0, 1))
    assert np.array_equal(w1["archived"][: a - 1], first["frames"][off - (a - 1) :].transpose(0, 3, 1, 2))
    # every window ends inside the clip itself; with the predecessor it may begin before the clip
    starts = sorted(by_start)
    assert starts[0] == -(f - 1) and starts[-1] == len(second["frames"]) - f
    assert min(x["start"] for x in sample_windows(second, cfg, random.Random(0), 200)) == a  # alone: never before a


def test_training_windows_link_consecutive_windows(take_shard):
    cfg, tcfg = model_config("MCDM-T"), TrainConfig(windows_per_clip=64)
    first, second = _clips(take_shard)
    index = ShardIndex(take_shard, "test")
    assert index.keys == list(KEYS)
    ds = WindowDataset(index, cfg, tcfg)
    footage = np.concatenate([first["frames"], second["frames"]])
    off = len(first["frames"])
    wins = ds[(1, 0)]  # the second window of the take: its predecessor is joined in front
    boundary = [w for w in wins if w["key"] == KEYS[1] and w["start"] < cfg.archived_frames]
    assert boundary, "no window of the second clip started inside its first archived_frames frames"
    for w in boundary:
        s = off + w["start"]
        assert np.array_equal(w["archived"], footage[s - cfg.archived_frames : s].transpose(0, 3, 1, 2))
        present = tcfg.chain_clips * cfg.present_frames  # the chain of present clips stage 3 trains on
        assert np.array_equal(w["present"], footage[s : s + present].transpose(0, 3, 1, 2))
    assert all(w["start"] >= cfg.archived_frames for w in ds[(0, 0)])  # its predecessor is absent


def test_iter_takes_joins_windows_in_order(take_shard):
    cfg = model_config("MCDM-T")
    first, second = _clips(take_shard)
    [take] = list(evaluate.iter_takes(str(take_shard), cfg, 0, "test"))
    assert take["key"] == "en-aoc-s0000" and take["meta"]["windows"] == list(KEYS)
    assert np.array_equal(take["frames"], np.concatenate([first["frames"], second["frames"]]))
    assert len(take["audio"]) == len(take["frames"]) * cfg.samples_per_frame


def test_list_shards_by_split(take_shard, tmp_path):
    assert list_shards(take_shard, "test") == list_shards(take_shard, "all")
    with pytest.raises(FileNotFoundError, match="no 'train' split"):
        list_shards(take_shard, "train")
