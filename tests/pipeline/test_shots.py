"""ShotSplit: cuts found on a real 4-shot concat, crossfades found, compression pops not cut, one clip for a single
shot, trimming/splitting/too_short rules."""

from __future__ import annotations

import pytest

from pipeline.config import BuildConfig, ShotsConfig
from pipeline.record import drop, make_key, seed_row
from pipeline.stages.normalize import Normalize
from pipeline.stages.shots import ShotSplit, detect_scenes, plan_clips


def _normalized(cfg: BuildConfig, path, sid: str) -> dict:
    row = seed_row("en", sid, str(path))
    row["video_path"] = str(path)
    [row] = Normalize(cfg)(row)
    assert row["status"] == "ok", row
    return row


@pytest.fixture(scope="module")
def concat_norm(concat_clip, tmp_path_factory):
    cfg = BuildConfig(out=str(tmp_path_factory.mktemp("shots")))
    return cfg, _normalized(cfg, concat_clip.path, "concat")


def test_cuts_of_real_concat_found_within_0_2s(concat_norm, concat_clip):
    cfg, row = concat_norm
    scenes = detect_scenes(row["norm_path"], cfg.shots.threshold, round(cfg.shots.min_scene_s * 25),
                           timeline_vf=row.get("norm_vf"), size=(row["width"], row["height"]))
    assert len(scenes) == len(concat_clip.cuts) + 1
    found = [a for a, _ in scenes[1:]]
    for cut, got in zip(concat_clip.cuts, found, strict=True):
        assert abs(cut - got) <= 0.2, (cut, got)


def test_concat_clips_inside_trimmed_bounds(concat_norm, concat_clip):
    cfg, row = concat_norm
    rows = ShotSplit(cfg)(dict(row))
    assert [r["key"] for r in rows] == [make_key("en", "concat", shot=i) for i in range(4)]
    assert all(r["status"] == "ok" and r["n_clips"] == 4 and r["video_key"] == row["video_key"] for r in rows)
    bounds = [0.0, *concat_clip.cuts, concat_clip.duration_s]
    trim = cfg.shots.trim_s
    for i, r in enumerate(rows):
        lo = bounds[i] + (trim if i > 0 else 0.0)
        hi = bounds[i + 1] - (trim if i < 3 else 0.0)
        assert r["shot_index"] == i
        assert lo - 0.2 <= r["start_s"] < r["end_s"] <= hi + 0.2, (i, r["start_s"], r["end_s"])
        assert r["end_s"] - r["start_s"] >= 6.0 - 2 * trim - 0.3
        frames = (r["end_s"] - r["start_s"]) * 25  # whole 25 fps frames
        assert abs(frames - round(frames)) < 1e-6


def test_single_shot_clip_gives_exactly_one_clip(ingested_talking, talking_clip):
    _, rows = ingested_talking
    assert len(rows) == 1
    [r] = rows
    assert r["start_s"] == 0.0 and abs(r["end_s"] - talking_clip.duration_s) < 0.1
    assert r["key"] == make_key("en", "hdtf_wda_aoc", shot=0) and r["n_clips"] == 1


def test_long_scene_split_and_short_scene_dropped(concat_norm):
    cfg, row = concat_norm
    short = BuildConfig(out=cfg.out, shots=ShotsConfig(max_take_s=2.0, min_clip_s=5.2))
    rows = ShotSplit(short)(dict(row))
    ok = [r for r in rows if r["status"] == "ok"]
    dropped = [r for r in rows if r["status"] == "dropped"]
    # shots 0 and 3 keep 5.48 s (one trimmed side) and split into 3 pieces; 1 and 2 keep 4.96 s: too short
    assert len(ok) == 6 and len(dropped) == 2
    assert all(r["drop_reason"] == "too_short" and r["drop_stage"] == "shots" for r in dropped)
    assert all(r["end_s"] - r["start_s"] <= 2.0 + 1e-6 for r in ok)
    assert [r["shot_index"] for r in rows] == list(range(8)) and all(r["n_clips"] == 8 for r in rows)
    assert len({r["key"] for r in rows}) == 8


def test_plan_clips_rules():
    # three scenes: the middle one is 1.4 s after trimming; the last is 45 s long
    clips = plan_clips([(0.0, 10.0), (10.0, 12.4), (12.4, 57.4)], 25.0, 0.5, 2.0, 20.0)
    assert clips[0] == (0.0, 9.48, True)
    assert clips[1][2] is False and clips[1][0] == 10.52
    pieces = clips[2:]
    assert len(pieces) == 3 and pieces[0][0] == 12.92 and pieces[-1][1] == 57.4
    lengths = [b - a for a, b, _ in pieces]
    assert max(lengths) - min(lengths) <= 0.04 + 1e-9 and max(lengths) <= 20.0


def test_no_frames_is_no_shots_and_dropped_rows_pass(tmp_path, talking_clip):
    cfg = BuildConfig(out=str(tmp_path))
    empty = tmp_path / "empty.mkv"
    empty.write_bytes(b"")
    row = seed_row("en", "empty", str(empty)) | {"norm_path": str(empty), "fps": 25.0}
    [out] = ShotSplit(cfg)(row)
    assert out["status"] == "dropped" and out["drop_stage"] == "shots"
    assert out["drop_reason"] == "no_shots"
    gone = drop(seed_row("en", "x", str(talking_clip.path)), "no_audio", "normalize")
    assert ShotSplit(cfg)(dict(gone)) == [gone]


@pytest.fixture(scope="module")
def crossfade(shared_media, media_cache):
    """Three real speakers (4.8 s each, 640x640) joined by 1-s crossfades: cuts at the fades' middles, 4.3 / 8.1 s."""
    from pipeline.media import ffmpeg

    out = media_cache / "shots_xfade.mkv"
    if not out.exists():
        names = ("retalking_face5_en.mp4", "hdtf_WDA_KatieHill_en_8s.mp4", "retalking_face2_en.mp4")
        args = [a for n in names for a in ("-t", "4.8", "-i", str(shared_media / "video_av" / n))]
        graph = ";".join(f"[{i}:v]fps=25,scale=640:640,setsar=1[v{i}]" for i in range(3))
        graph += ";[v0][v1]xfade=transition=fade:duration=1:offset=3.8[x];[x][v2]xfade=transition=fade:duration=1:offset=7.6[v]"
        ffmpeg(*args, "-filter_complex", graph, "-map", "[v]", "-an", "-c:v", "libx264", "-preset", "veryfast",
               "-crf", "18", "-pix_fmt", "yuv420p", str(out), timeout=300)  # fmt: skip
    return out, (4.3, 8.1)


def test_crossfades_found_within_half_a_second(crossfade):
    path, cuts = crossfade
    c = ShotsConfig()
    scenes = detect_scenes(str(path), c.threshold, round(c.min_scene_s * 25), c.same_picture_ncc, c.dissolve_s)
    found = [a for a, _ in scenes[1:]]
    assert len(found) == len(cuts), found
    assert all(abs(f - t) <= 0.2 for f, t in zip(found, cuts, strict=True)), found


def test_crossfades_are_missed_without_the_dissolve_test(crossfade):
    """The dissolve test is what finds them: AdaptiveDetector alone cuts neither fade at its middle."""
    path, cuts = crossfade
    c = ShotsConfig()
    found = [a for a, _ in detect_scenes(str(path), c.threshold, round(c.min_scene_s * 25), c.same_picture_ncc, 0.0)[1:]]
    assert not any(abs(f - t) <= 0.2 for f in found for t in cuts), found


@pytest.mark.parametrize("name", ["hdtf_WDA_KatieHill_en_8s.mp4", "liveportrait_d20_zh.mp4"])
def test_moving_single_shot_has_no_dissolve(shared_media, name):
    """The two clips whose head moves most over a second (1-s thumbnail change up to 34 / 25 per pixel): one shot."""
    c = ShotsConfig()
    assert len(detect_scenes(str(shared_media / "video_av" / name), c.threshold, 15, c.same_picture_ncc, 1.0)) == 1


@pytest.mark.parametrize("name", ["hdtf_WDA_KatieHill_en_8s.mp4", "latentsync_demo3_en_20s.mp4"])
def test_heavy_compression_makes_no_false_cut(shared_media, media_cache, name):
    """x264 CRF 45 pops at every keyframe (AdaptiveDetector cuts there: checked); the same-picture test removes it."""
    from benchmarks.kit.curation_build import degrade

    path = degrade(shared_media / "video_av" / name, media_cache / f"shots_crf45_{name}.mkv", "crf45", 4.0)
    c = ShotsConfig()
    assert len(detect_scenes(str(path), c.threshold, round(c.min_scene_s * 25), 1.01, 0.0)) > 1  # the pop is cut
    assert len(detect_scenes(str(path), c.threshold, round(c.min_scene_s * 25), c.same_picture_ncc, c.dissolve_s)) == 1
