"""Takes: one tracked speaker in one shot, cut into consecutive windows with take_id / take_index / prev_key.

The real-footage case runs FaceTrack on an 8-s real talking clip with max_clip_s = 3: three gap-free windows
whose crops hold exactly their frames and continue each other across the boundary.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pipeline import media
from pipeline.config import BuildConfig
from pipeline.record import make_key, seed_row
from pipeline.takes import plan_windows, take_windows


def test_plan_windows_even_gap_free_and_bounded():
    wins = plan_windows(10, 10 + 1500, 25.0, 20.0)  # a 60-s take -> 3 windows of 20 s
    assert wins == [(10, 510), (510, 1010), (1010, 1510)]
    wins = plan_windows(0, 1501, 25.0, 20.0)  # one frame more than 3 x 20 s -> 4 windows
    assert len(wins) == 4 and all(b - a <= 500 for a, b in wins)
    assert all(w1[1] == w2[0] for w1, w2 in zip(wins, wins[1:], strict=False))
    assert plan_windows(0, 200, 25.0, 20.0) == [(0, 200)]


def test_take_windows_fields_and_keys():
    row = seed_row("en", "vid", "/x.mp4") | {"key": make_key("en", "vid", shot=3), "start_s": 2.0, "end_s": 62.0}
    n = 1500
    [(r, seg)] = take_windows(row, [("track", 0, n // 2)], n, 25.0, 40.0, lambda j: f"{row['key']}-t{j:02d}")
    assert r["key"] == "en-vid-s0003-t00" == r["take_id"] and r["take_windows"] == 1 and r["prev_key"] == ""
    assert (r["start_s"], r["end_s"], r["take_s"]) == (2.0, 32.0, 30.0) and seg == ("track", 0, 750)

    wins = take_windows(row, [("track", 0, n)], n, 25.0, 20.0, lambda j: "unused")
    rows = [r for r, _ in wins]
    assert [r["key"] for r in rows] == ["en-vid-s0003-w000", "en-vid-s0003-w001", "en-vid-s0003-w002"]
    assert [r["prev_key"] for r in rows] == ["", "en-vid-s0003-w000", "en-vid-s0003-w001"]
    assert {r["take_id"] for r in rows} == {"en-vid-s0003"} and [r["take_index"] for r in rows] == [0, 1, 2]
    assert all(r["take_s"] == 60.0 and r["take_windows"] == 3 for r in rows)
    assert rows[0]["start_s"] == 2.0 and rows[-1]["end_s"] == 62.0
    assert all(a["end_s"] == b["start_s"] for a, b in zip(rows, rows[1:], strict=False))  # no gap, exactly

    two = take_windows(row, [("a", 0, 400), ("b", 700, 1500)], n, 25.0, 20.0, lambda j: f"{row['key']}-t{j:02d}")
    assert [r["key"] for r, _ in two] == ["en-vid-s0003-t00", "en-vid-s0003-t01-w000", "en-vid-s0003-t01-w001"]
    assert [r["take_id"] for r, _ in two] == ["en-vid-s0003-t00", "en-vid-s0003-t01", "en-vid-s0003-t01"]


@pytest.fixture(scope="module")
def windows(shared_media, media_cache, tmp_path_factory):
    from pipeline.stages.faces import FaceTrack

    src = media_cache / "takes_aoc_8s.mkv"
    if not src.exists():
        media.ffmpeg("-i", str(shared_media / "video_av" / "hdtf_WDA_AOC_en_8s.mp4"), "-an", "-r", "25", "-c:v", "libx264",
                     "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", str(src))  # fmt: skip
    cfg = BuildConfig(out=str(tmp_path_factory.mktemp("takes")), langs=["en"])
    cfg.faces = dataclasses.replace(cfg.faces, backend="mtcnn", min_face_px=160, crop_size=128)
    cfg.shots = dataclasses.replace(cfg.shots, max_clip_s=3.0)
    row = seed_row("en", "takes_aoc", str(src)) | {"norm_path": str(src), "start_s": 0.0, "end_s": 8.0, "fps": 25.0,
                                                     "shot_index": 0, "key": make_key("en", "takes_aoc", shot=0)}  # fmt: skip
    return FaceTrack(cfg)(row)


def test_faces_cuts_a_real_take_into_consecutive_windows(windows):
    assert [r["status"] for r in windows] == ["ok"] * 3, [r.get("drop_detail") for r in windows]
    assert [r["key"] for r in windows] == [f"en-takes_aoc-s0000-w{k:03d}" for k in range(3)]
    assert [round(r["start_s"] * 25) for r in windows] == [0, 67, 133] and windows[-1]["end_s"] == 8.0
    assert all(a["end_s"] == b["start_s"] for a, b in zip(windows, windows[1:], strict=False))
    assert [r["prev_key"] for r in windows] == ["", windows[0]["key"], windows[1]["key"]]
    assert all(r["take_id"] == "en-takes_aoc-s0000" and r["take_s"] == 8.0 for r in windows)
    for r in windows:
        n = round((r["end_s"] - r["start_s"]) * 25)
        assert len(media.read_frames(r["crop_path"])) == n and len(np.load(r["track_path"])["boxes"]) == n


def test_crops_continue_across_the_window_boundary(windows):
    """The last frame of window 0 and the first of window 1 are neighbouring source frames in the same crop
    geometry: closer to each other than window 0's last frame is to a frame a second earlier in it."""
    a = media.read_frames(windows[0]["crop_path"]).astype(np.float32)
    b = media.read_frames(windows[1]["crop_path"]).astype(np.float32)
    across = np.abs(a[-1] - b[0]).mean()
    within = np.abs(a[-1] - a[-26]).mean()
    assert across < within, (across, within)
    box0, box1 = np.load(windows[0]["track_path"])["crop_boxes"][-1], np.load(windows[1]["track_path"])["crop_boxes"][0]
    assert np.abs(box0 - box1).max() < 0.05 * (box0[2] - box0[0])
