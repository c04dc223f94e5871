"""The dataset end to end (issue 14), on real footage through every stage (in-process, no Ray):

build 1: a 60-s continuous take of one real speaker (her clip joined to itself by 0.6-s dissolves, so no cut
         is found), a real clip plus three copies of it (re-encoded, rescaled, trimmed by a second), and two more
         real speakers -> one take of 3 gap-free windows, training windows across its boundaries with the
         predecessor's pixels, evaluate --takes joining it back to 60 s, exactly the 3 copies dropped as
         duplicates, no identity in two splits;
build 2: three short real clips, then `pipeline.select` with a loosened soft gate and a tightened hard one,
         compared with a full rebuild under the same thresholds.
Minutes of CPU: marked slow.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import webdataset as wds

from pipeline import media
from pipeline.config import load_config

pytestmark = pytest.mark.slow

OPEN_GATES = {"faces": {"min_face_px": 160}, "sync": {"min_conf": 0.0, "max_offset_frames": 15},
              "quality": {"min_sharpness": 0.0, "min_brightness": 0.0}}  # fmt: skip
COPIES = {"reencoded": ["-c:v", "libx264", "-crf", "32", "-preset", "veryfast", "-c:a", "aac", "-b:a", "64k"],
          "rescaled": ["-vf", "scale=560:560", "-c:v", "libx264", "-crf", "23", "-preset", "veryfast", "-c:a", "aac"],
          "trimmed": ["-ss", "1.0"]}  # fmt: skip
ORIGINAL = "retalking_face4_en.mp4"


def dissolve_take(src: Path, dst: Path, seconds: float = 60.0, fade: float = 0.6) -> Path:
    """`src` joined to itself with dissolves (video xfade + audio acrossfade) up to `seconds`: one continuous take."""
    if dst.exists():
        return dst
    length = media.probe(src)["duration_s"] - 0.1
    n = int(np.ceil((seconds - fade) / (length - fade))) + 1
    chain, v, a = [], "0:v", "0:a"
    for i in range(1, n):
        chain.append(f"[{v}][{i}:v]xfade=transition=fade:duration={fade}:offset={i * (length - fade):.3f}[v{i}];"
                     f"[{a}][{i}:a]acrossfade=d={fade}[a{i}]")  # fmt: skip
        v, a = f"v{i}", f"a{i}"
    inputs = [x for _ in range(n) for x in ("-t", f"{length:.3f}", "-i", str(src))]
    media.ffmpeg(*inputs, "-filter_complex", ";".join(chain), "-map", f"[{v}]", "-map", f"[{a}]", "-t", f"{seconds}",
                 "-r", "25", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p",
                 "-c:a", "aac", "-b:a", "128k", str(dst), timeout=900)  # fmt: skip
    return dst


def _manifest(d: Path, sources: dict[str, Path], cfg: dict) -> tuple[Path, Path]:
    import yaml

    man = d / "manifests"
    man.mkdir(parents=True, exist_ok=True)
    (man / "en.csv").write_text("id,source,license,note\n" + "".join(f"{k},{p},test,\n" for k, p in sources.items()))
    (d / "build.yaml").write_text(yaml.safe_dump(cfg))
    return man, d / "build.yaml"


def _build(d: Path, sources: dict[str, Path], cfg_data: dict):
    from pipeline.build import build

    man, yml = _manifest(d, sources, cfg_data)
    cfg = load_config(yml, out=str(d / "out"), manifests=str(man), langs=["en"])
    build(cfg, use_ray=False)
    return cfg, pd.read_parquet(d / "out" / "index.parquet")


@pytest.fixture(scope="module")
def built(shared_media, media_cache, tmp_path_factory):
    v = shared_media / "video_av"
    sources = {"aoc_take": dissolve_take(v / "hdtf_WDA_AOC_en_8s.mp4", media_cache / "aoc_take_60s.mp4"),
               "ecb": v / ORIGINAL, "mairead": v / "retalking_face5_en.mp4", "katie": v / "hdtf_WDA_KatieHill_en_8s.mp4"}  # fmt: skip
    for name, args in COPIES.items():
        dst = media_cache / f"ecb_{name}.mp4"
        if not dst.exists():
            trim, args = (args, []) if name == "trimmed" else ([], args)
            media.ffmpeg(*trim, "-i", str(v / ORIGINAL), *(args or ["-c:v", "libx264", "-crf", "23", "-preset",
                         "veryfast", "-c:a", "aac"]), str(dst))  # fmt: skip
        sources[f"ecb_{name}"] = dst
    return _build(tmp_path_factory.mktemp("dataset"), sources, OPEN_GATES)


def test_one_take_of_three_gap_free_windows(built):
    _, index = built
    take = index[index["video_key"] == "en-aoc_take"].sort_values("take_index")
    assert len(take) == 3 and (take["status"] == "ok").all(), take[["key", "status", "drop_reason", "drop_detail"]]
    assert take["take_id"].nunique() == 1 and list(take["take_index"]) == [0, 1, 2]
    assert list(take["prev_key"]) == ["", *take["key"][:-1]]
    start, end = take["start_s"].to_numpy(), take["end_s"].to_numpy()
    assert (end[:-1] == start[1:]).all() and start[0] == 0.0 and end[-1] == pytest.approx(60.0, abs=0.05)
    assert take["take_s"].iloc[0] == pytest.approx(end[-1] - start[0]) and (end - start).max() <= 20.0
    assert take["shard"].nunique() == 1  # a take's windows sit next to each other in one shard


def _take_clips(out: Path, index: pd.DataFrame) -> list[dict]:
    from mcdm_model.config import model_config
    from mcdm_model.data import decode_clip

    take = index[index["video_key"] == "en-aoc_take"].sort_values("take_index")
    shard = out / "shards" / take["shard"].iloc[0]
    cfg = model_config("MCDM-T")
    samples = {s["__key__"]: s for s in wds.WebDataset(str(shard), shardshuffle=False)}
    return [decode_clip(samples[k], cfg) for k in take["key"]]


def test_training_windows_at_the_boundaries_hold_the_predecessors_frames(built):
    from mcdm_model.config import TrainConfig, model_config
    from mcdm_model.data import ShardIndex, WindowDataset

    cfg, index = built
    mcfg = model_config("MCDM-T")
    clips = _take_clips(Path(cfg.out), index)
    a = mcfg.archived_frames
    split = index.loc[index["video_key"] == "en-aoc_take", "split"].iloc[0]
    ds = WindowDataset(ShardIndex(Path(cfg.out) / "shards", split), mcfg, TrainConfig(windows_per_clip=300))
    for prev, clip in zip(clips, clips[1:], strict=False):
        wins = ds[(ds.index.keys.index(clip["key"]), 0)]
        crossing = [w for w in wins if w["key"] == clip["key"] and w["start"] < a]
        assert crossing, f"no window of {clip['key']} reached back into {prev['key']}"
        footage, off = np.concatenate([prev["frames"], clip["frames"]]), len(prev["frames"])
        for w in crossing:  # archived frames = the seconds that really came before, pixel for pixel
            s = off + w["start"]
            assert np.array_equal(w["archived"], footage[s - a : s].transpose(0, 3, 1, 2))


def test_evaluate_takes_runs_on_the_whole_take(built):
    from mcdm_model import evaluate
    from mcdm_model.config import model_config

    cfg, index = built
    split = index.loc[index["video_key"] == "en-aoc_take", "split"].iloc[0]
    takes = {t["key"]: t for t in evaluate.iter_takes(str(Path(cfg.out) / "shards"), model_config("MCDM-T"), 0, split)}
    take_id = index.loc[index["video_key"] == "en-aoc_take", "take_id"].iloc[0]
    assert len(takes[take_id]["frames"]) == 1500 and len(takes[take_id]["meta"]["windows"]) == 3  # 60 s, no looping


def test_duplicates_are_exactly_the_copies(built):
    _, index = built
    dups = index[index["drop_reason"] == "duplicate"].set_index("key")
    assert sorted(dups["video_key"]) == sorted(f"en-ecb_{n}" for n in COPIES), dups[["drop_detail"]]
    original = index[index["video_key"] == "en-ecb"]
    assert (original["status"] == "ok").all() and set(dups["duplicate_of"]) <= set(original["key"])
    others = index[~index["video_key"].str.startswith("en-ecb_")]
    assert (others["status"] == "ok").all(), others[["key", "drop_reason", "drop_detail"]]


def test_identities_and_splits(built, tmp_path):
    cfg, index = built
    kept = index[index["status"] == "ok"]
    assert (kept.groupby("identity_id")["split"].nunique() == 1).all()  # no identity in two splits
    person = kept.groupby("video_key")["identity_id"].agg(lambda s: s.unique().tolist())
    assert all(len(ids) == 1 for ids in person)  # one video here is one person, its take one identity
    assert len(set(kept["identity_id"])) == 4  # Ocasio-Cortez, the ECB speaker, McGuinness, Hill
    assert set(kept["split"]) == {"train", "val", "test"}
    for _, r in kept.iterrows():
        assert r["shard"].startswith(f"{r['split']}/en/en-") and (Path(cfg.out) / "shards" / r["shard"]).is_file()
    stats = json.loads((Path(cfg.out) / "stats.json").read_text())
    assert stats["identities"]["by_language"] == {"en": 4} and stats["takes"]["multi_window"] == 1
    assert sum(v["clips"] for by in stats["splits"].values() for v in by.values()) == len(kept)
    from tests.pipeline.test_report import _chromium

    dom, _ = _chromium(Path(cfg.out) / "report.html", tmp_path)
    assert any(r[-1] == "today" for r in dom.tables["sweep"][1:]) and "plot-takes" in dom.images


# ---- select vs rebuild ------------------------------------------------------------------------------------------
SELECT_CLIPS = ("hdtf_WDA_KatieHill_en_8s.mp4", "retalking_face4_en.mp4", "retalking_face1_en.mp4")
SELECT_CFG = {"faces": {"min_face_px": 224}}  # the sample folder's setting for these 480-700 px clips


def _flip(index: pd.DataFrame, col: str, current: float, keep: str) -> float:
    """A threshold for `col` that keeps or drops a different set than `current` among rows that have the score."""
    v = np.sort(pd.to_numeric(index[col], errors="coerce").dropna().unique())
    cands = [(a + b) / 2 for a, b in zip(v, v[1:], strict=False)] + [v[0] - 0.01, v[-1] + 0.01]
    passes = (lambda t: v >= t) if keep == "min" else (lambda t: v <= t)
    return next(t for t in sorted(cands, key=lambda t: abs(t - current)) if (passes(t) != passes(current)).any())


def test_select_reproduces_a_rebuild(shared_media, tmp_path_factory):
    from pipeline.select import run

    v = shared_media / "video_av"
    sources = {Path(c).stem.lower(): v / c for c in SELECT_CLIPS}
    cfg, first = _build(tmp_path_factory.mktemp("select_a"), sources, SELECT_CFG)
    reached = first[first["sync_conf"].notna()]
    conf = _flip(reached, "sync_conf", cfg.sync.min_conf, "min")  # a soft gate, either way
    kept = first[first["status"] == "ok"]
    face = float(kept["face_px"].min()) + 1.0 if len(kept) > 1 else cfg.faces.min_face_px  # a hard gate, tightened
    changed = copy.deepcopy(SELECT_CFG) | {"sync": {"min_conf": float(conf)}}
    changed["faces"] = {"min_face_px": face}
    new = copy.deepcopy(cfg)
    new.sync.min_conf, new.faces.min_face_px = float(conf), face
    summary = run(new)
    selected = pd.read_parquet(Path(cfg.out) / "index.parquet")
    _, rebuilt = _build(tmp_path_factory.mktemp("select_b"), sources, changed)
    pick = lambda df: sorted(df.loc[df["status"] == "ok", "key"])  # noqa: E731
    assert pick(selected) != pick(first), "the changed thresholds keep the same clips: nothing was compared"
    assert pick(selected) == pick(rebuilt) == summary["kept_keys"]
    by_key = lambda df: df.set_index("key").loc[pick(df), ["split", "identity_id", "shard"]]  # noqa: E731
    pd.testing.assert_frame_equal(by_key(selected), by_key(rebuilt))
    reasons = lambda df: df.set_index("key")[["status", "drop_reason"]].sort_index()  # noqa: E731
    pd.testing.assert_frame_equal(reasons(selected), reasons(rebuilt))
