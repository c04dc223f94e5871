"""Quality gates on a real face crop (HDTF clip, dlib-cropped) and blurred / darkened / extreme-pose copies; the
lip-motion gate on a real still photo and a real talking clip, both through the real faces stage."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from benchmarks.kit import sync_media
from benchmarks.kit.face_rows import shot_row
from pipeline import media
from pipeline.config import BuildConfig
from pipeline.stages.faces import FaceTrack
from pipeline.stages.quality import QualityFilter
from pipeline.track_io import read_track, write_track


@pytest.fixture(scope="module")
def crops(shared_media, media_store, media_cache):
    [row] = sync_media.prepare(shared_media, media_store / "sync", ("hdtf_WDA_AOC_en_8s.mp4",))
    src, out = row["crop_path"], media_cache / "quality"
    out.mkdir(exist_ok=True)
    variants = {"blur": "gblur=sigma=4", "dark": "lutyuv=y=val*0.2"}
    paths = {"real": src}
    for name, vf in variants.items():
        dst = out / f"{name}.mp4"
        if not dst.exists():
            media.ffmpeg("-i", src, "-t", "2", "-vf", vf, "-c:v", "libx264", "-crf", "18", "-pix_fmt", "yuv420p", str(dst))
        paths[name] = str(dst)
    pose_track = out / "pose_track.npz"
    t = read_track(row["track_path"])
    t["pose"][:, 0] = np.linspace(-10, 70, len(t["pose"]))  # the head turns to 70 degrees yaw
    write_track(pose_track, **t)
    return paths, row["track_path"], str(pose_track)


def _row(crop: str, track: str) -> dict:
    return {"key": "en-q", "video_key": "en-q", "status": "ok", "drop_reason": "", "drop_stage": "",
            "crop_path": crop, "track_path": track}  # fmt: skip


def test_real_crop_kept_with_scores(crops):
    paths, track, _ = crops
    [row] = QualityFilter(BuildConfig())(_row(paths["real"], track))
    assert row["status"] == "ok", row
    assert row["sharpness"] > 100 and 60 < row["brightness"] < 200
    assert row["yaw_abs_max"] == 0.0 and row["pitch_abs_max"] == 0.0  # the test track has zero pose


def test_blurred_and_dark_copies_dropped(crops):
    paths, track, _ = crops
    stage = QualityFilter(BuildConfig())
    [real] = stage(_row(paths["real"], track))
    [blur] = stage(_row(paths["blur"], track))
    [dark] = stage(_row(paths["dark"], track))
    assert blur["drop_reason"] == "blurry" and blur["drop_stage"] == "quality"
    assert blur["sharpness"] < real["sharpness"] / 10
    assert dark["drop_reason"] == "too_dark" and dark["brightness"] < real["brightness"] / 3


def test_extreme_pose_dropped_and_thresholds_configurable(crops):
    paths, _, pose_track = crops
    [row] = QualityFilter(BuildConfig())(_row(paths["real"], pose_track))
    assert row["drop_reason"] == "extreme_pose" and row["yaw_abs_max"] == pytest.approx(70, abs=0.5)
    cfg = BuildConfig()
    cfg.quality.max_abs_yaw = 80.0
    [ok] = QualityFilter(cfg)(_row(paths["real"], pose_track))
    assert ok["status"] == "ok"


def test_no_track_uses_central_box_and_bad_input_is_a_drop(crops, tmp_path):
    paths, _, _ = crops
    stage = QualityFilter(BuildConfig())
    [row] = stage(_row(paths["real"], ""))
    assert row["status"] == "ok" and np.isnan(row["yaw_abs_max"])
    [bad] = stage(_row(str(tmp_path / "missing.mp4"), ""))
    assert bad["drop_reason"] == "error" and bad["drop_stage"] == "quality"
    dropped = {"key": "en-x", "status": "dropped", "drop_reason": "out_of_sync", "drop_stage": "sync"}
    assert stage(dict(dropped)) == [dropped]


@pytest.fixture(scope="module")
def lip_rows(shared_media, media_cache, tmp_path_factory) -> dict[str, dict]:
    """3 s of a face photo held still (as a slideshow or a podcast cover over speech) and 3 s of a real talking
    clip, each through FaceTrack (MTCNN, as tests/pipeline/test_faces.py) into a faces row with its track."""
    out = media_cache / "lip_motion"
    out.mkdir(exist_ok=True)
    enc = ["-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", "-r", "25"]
    sources = {
        "still": ["-loop", "1", "-framerate", "25", "-i", str(shared_media / "faces" / "facenet_paul_rudd.jpg"),
                  "-t", "3", "-vf", "scale=-2:720"],
        "talk": ["-t", "3", "-i", str(shared_media / "video_av" / "hdtf_WDA_AOC_en_8s.mp4")],
    }  # fmt: skip
    cfg = BuildConfig(out=str(tmp_path_factory.mktemp("lip_out")), langs=["en"])
    cfg.faces = dataclasses.replace(cfg.faces, backend="mtcnn", min_face_px=160, crop_size=128)
    stage, rows = FaceTrack(cfg), {}
    for name, args in sources.items():
        path = out / f"{name}.mkv"
        if not path.exists():
            media.ffmpeg(*args, *enc, str(path))
        [rows[name]] = stage(shot_row(path, f"lip_{name}", 0.0, 3.0))
        assert rows[name]["status"] == "ok", rows[name]  # both are one clear face: the faces stage keeps them
    return rows


def test_still_photo_over_speech_dropped_for_lip_motion_talking_clip_kept(lip_rows):
    cfg = BuildConfig()
    [still] = QualityFilter(cfg)(dict(lip_rows["still"]))
    [talk] = QualityFilter(cfg)(dict(lip_rows["talk"]))
    assert (still["status"], still["drop_stage"], still["drop_reason"]) == ("dropped", "quality", "no_lip_motion"), still
    assert "min_mouth_range" in still["drop_detail"]
    assert talk["status"] == "ok", talk
    assert talk["mouth_range"] > 5 * still["mouth_range"]  # speech opens the mouth; a photo's range is jitter
    cfg.quality.min_mouth_range = 0.0  # the gate is a setting: off, the still photo passes quality
    [loose] = QualityFilter(cfg)(dict(lip_rows["still"]))
    assert loose["status"] == "ok", loose
