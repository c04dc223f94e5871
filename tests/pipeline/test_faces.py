"""FaceTrack on real talking clips from ../shared/media (normalised to 25 fps with ffmpeg into the session cache).

Kept clips: the track covers every frame and overlaps an independent detector (dlib HOG) run on the raw frames;
the crop has exactly N frames at crop_size. Drops: multi_face (two real clips side by side), no_face (a real
shot of a body without a face), small_face (the real clip shrunk in a big frame), track_broken (the face leaves
for longer than max_missed_frames and neither piece is long enough); and a clip whose face track breaks into
two long pieces is split into two rows with narrowed times.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from benchmarks.kit.cache import built, recipe_key
from benchmarks.kit.face_rows import shot_row
from benchmarks.kit.yunet import link_yunet
from pipeline.config import BuildConfig
from pipeline.media import ffmpeg, probe, read_frames
from pipeline.models.face_detectors import DlibHogDetector
from pipeline.record import ALL_ROW_KEYS, drop, make_key, seed_row
from pipeline.stages.faces import FaceTrack, repeated_frames
from pipeline.track import iou
from pipeline.track_io import read_track

FPS = 25
CROP = 256  # configurable; smaller than the 512 default to keep the tests fast
ENC = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", "-r", "25"]


def _norm(out: Path, args: list[str], vf: str | None = None, filter_complex: str | None = None) -> Path:
    """ffmpeg into a normalised-looking .mkv (25 fps CFR H.264, no audio needed by this stage)."""
    if not out.exists():
        flt = ["-filter_complex", filter_complex, "-map", "[v]"] if filter_complex else ["-vf", f"{vf},fps=25"]
        ffmpeg(*args, *flt, "-an", *ENC, str(out), timeout=300)
    return out


@pytest.fixture(scope="session")
def clips(shared_media, media_store, have_ffmpeg) -> dict[str, Path]:
    v = shared_media / "video_av"
    aoc, katie, demo1 = v / "hdtf_WDA_AOC_en_8s.mp4", v / "hdtf_WDA_KatieHill_en_8s.mp4", v / "latentsync_demo1_ru_10s.mp4"
    body = "[2:v]crop=1080:700:0:1220,scale=512:512,setsar=1,fps=25"  # latentsync demo1 below the face: no face
    recipes = {  # name: (ffmpeg input args, -vf, -filter_complex)
        "aoc": (["-t", "3", "-i", str(aoc)], "setsar=1", None),
        "portrait": (["-t", "3", "-i", str(demo1)], "setsar=1", None),
        "noface": (["-t", "3", "-i", str(demo1)], "crop=1080:700:0:1220", None),
        "multi": (["-t", "3", "-i", str(aoc), "-t", "3", "-i", str(katie)], None, "[0:v][1:v]hstack=inputs=2,fps=25[v]"),
        "small": (["-t", "3", "-i", str(aoc)], "scale=160:160,pad=512:512:300:40", None),
        # a woman talking with clasped hands that MTCNN takes for a face in most frames, sized like Normalize does
        "hands": (["-ss", "4.4", "-t", "3", "-i", str(demo1)], "scale=608:1080,setsar=1", None),
        # AOC 2.4 s | no face 1.6 s | Katie Hill 2.4 s: the track breaks into two >= 2 s pieces
        "split": (["-t", "2.4", "-i", str(aoc), "-t", "1.6", "-i", str(demo1), "-ss", "3", "-t", "2.4", "-i", str(katie)],
                  None, f"[0:v]fps=25,setsar=1[a];{body.replace('[2:v]', '[1:v]')}[b];"
                  "[2:v]fps=25,setsar=1[c];[a][b][c]concat=n=3:v=1:a=0[v]"),
        # AOC | Katie Hill | AOC | Katie Hill, 2.6 s each, hard cuts at the same place in the frame (a missed cut)
        "alternate": (["-t", "2.6", "-i", str(aoc), "-t", "2.6", "-i", str(katie), "-ss", "3", "-t", "2.6", "-i", str(aoc),
                       "-ss", "3", "-t", "2.6", "-i", str(katie)],
                      None, "".join(f"[{i}:v]fps=25,setsar=1[p{i}];" for i in range(4)) + "[p0][p1][p2][p3]concat=n=4:v=1:a=0[v]"),
        # AOC 1.2 s | no face 1.4 s | AOC 1.2 s: pieces shorter than min_clip_s -> track_broken
        "broken": (["-t", "1.2", "-i", str(aoc), "-t", "1.4", "-i", str(demo1), "-ss", "1.2", "-t", "1.2", "-i", str(aoc)],
                   None, f"[0:v]fps=25,setsar=1[a];{body.replace('[2:v]', '[1:v]')}[b];"
                   "[2:v]fps=25,setsar=1[c];[a][b][c]concat=n=3:v=1:a=0[v]"),
    }  # fmt: skip

    def build(tmp: Path) -> None:
        for name, (args, vf, fc) in recipes.items():
            _norm(tmp / f"f_{name}.mkv", args, vf, fc)

    d = built(media_store / "faces" / f"clips-{recipe_key((_norm, ENC, recipes), (aoc, katie, demo1))}", build)
    return {name: d / f"f_{name}.mkv" for name in recipes}


@pytest.fixture(scope="session")
def stage(tmp_path_factory) -> FaceTrack:
    cfg = BuildConfig(out=str(tmp_path_factory.mktemp("faces_out")), langs=["en"])
    cfg.faces = dataclasses.replace(cfg.faces, backend="mtcnn", detect_fps=5.0, min_face_px=160, crop_size=CROP)
    return FaceTrack(cfg)


def with_faces(stage: FaceTrack, **changes) -> FaceTrack:
    """The same loaded models under other thresholds (no second model load)."""
    other = copy.copy(stage)
    other.fc = dataclasses.replace(stage.fc, **changes)
    return other


def clip_row(name: str, path: Path, start: float = 0.0, end: float | None = None) -> dict:
    return shot_row(path, f"faces_{name}", start, end)


@pytest.fixture(scope="session")
def kept(stage, clips) -> dict[str, dict]:
    out = {}
    for name in ("aoc", "portrait"):
        rows = stage(clip_row(name, clips[name], 0.0, 3.0))
        assert len(rows) == 1, rows
        out[name] = rows[0]
    return out


@pytest.mark.parametrize("name", ["aoc", "portrait"])
def test_keeps_one_speaker_with_track_on_every_frame(kept, clips, name):
    row = kept[name]
    assert row["status"] == "ok", row
    assert row["key"] == make_key("en", f"faces_{name}", shot=0) and (row["start_s"], row["end_s"]) == (0.0, 3.0)
    n = 75
    z = read_track(row["track_path"])
    assert z["boxes"].shape == (n, 4) and z["landmarks"].shape == (n, 68, 2) and z["pose"].shape == (n, 3)
    assert z["landmarks_crop"].shape == (n, 68, 2) and z["mouth_open"].shape == (n,) and z["detected"].dtype == bool
    assert np.isfinite(z["boxes"]).all() and np.isfinite(z["pose"]).all()
    assert int(z["crop_size"]) == CROP and float(z["fps"]) == 25.0
    assert z["detected"][::5].all() and not z["detected"][1::5].any()  # sampled at 5 fps, interpolated between
    assert abs(np.linalg.norm(z["id_embedding"]) - 1.0) < 1e-4
    # landmarks sit inside their face box (source px) and inside the crop (crop px)
    lm, b = z["landmarks"], z["boxes"]
    inside = (lm[..., 0] >= b[:, None, 0] - 20) & (lm[..., 0] <= b[:, None, 2] + 20) & (lm[..., 1] >= b[:, None, 1] - 20)
    assert inside.mean() > 0.97
    assert (z["landmarks_crop"] > 0).all() and (z["landmarks_crop"] < CROP).all()
    # the crop: exactly one frame per 25 fps frame of [start_s, end_s), crop_size square, silent
    info = probe(row["crop_path"])
    assert (info["width"], info["height"], info["has_audio"]) == (CROP, CROP, False)
    assert len(read_frames(row["crop_path"])) == n
    assert row["face_coverage"] >= 0.9 and row["n_faces"] == 1 and row["face_px"] >= 160
    assert row["detector"] == "mtcnn" and "yaw_abs_max" not in row  # the pose gate is quality's (max over frames)
    assert set(row) <= ALL_ROW_KEYS, set(row) - ALL_ROW_KEYS  # every key is documented in record.ROW_KEYS


@pytest.mark.parametrize("name", ["aoc", "portrait"])
def test_track_overlaps_independent_detector_on_raw_frames(kept, clips, name):
    """dlib HOG on the raw frames between MTCNN's samples (frames 2, 7, ...): the interpolated box must match."""
    z = read_track(kept[name]["track_path"])
    frames = read_frames(clips[name], 0.0, 3.0)
    hog = DlibHogDetector(max_side=640)
    checked = []
    for i in range(2, 75, 5):
        d = hog.detect(frames[i])
        if len(d):
            checked.append(float(iou(z["boxes"][i], d.boxes).max()))
    assert len(checked) >= 10, checked
    assert min(checked) >= 0.5, checked
    # the crop shows the face: HOG finds it in the cropped frame too
    crop = read_frames(kept[name]["crop_path"])
    assert sum(len(hog.detect(crop[i])) > 0 for i in (0, 37, 74)) >= 2


def test_mouth_moves_while_talking(kept):
    m = read_track(kept["aoc"]["track_path"])["mouth_open"]
    assert m.min() >= 0 and m.max() - m.min() > 0.05  # real speech opens and closes the mouth


def test_multi_face_dropped(stage, clips):
    [row] = stage(clip_row("multi", clips["multi"]))
    assert (row["status"], row["drop_reason"], row["drop_stage"]) == ("dropped", "multi_face", "faces")
    assert row["n_faces"] == 2 and "crop_path" not in row


def test_hands_detected_as_a_face_do_not_make_multi_face(stage, clips):
    """Real false positives: MTCNN boxes the clasped hands below the face in most frames; the clip is kept.

    Measured (2026-12-01): the hands fire in 14 of 15 sampled frames at up to 0.979, just under MTCNN's
    confident_score 0.98, so what is asserted is the stage's own rule (a second face must be confident in more
    than 10 % of the sampled frames), not the score's distance to the cut. The face is 132 px: kept at 112."""
    frames = read_frames(clips["hands"], 0.0, 3.0, fps=5)
    dets = [stage.models.detector.detect(f, 64) for f in frames]
    below = [d.scores[d.boxes[:, 1] > 400] for d in dets]
    assert sum(len(x) > 0 for x in below) >= len(frames) // 2  # the hands fire in most sampled frames
    confident = sum(float(x.max()) >= stage.models.detector.confident_score for x in below if len(x))
    assert confident <= 0.1 * len(frames), confident
    [row] = with_faces(stage, min_face_px=112)(clip_row("hands", clips["hands"], 0.0, 3.0))
    assert row["status"] == "ok", row
    assert 100 < row["face_px"] < 160  # the face's box, not one around face and hands


def test_no_face_dropped(stage, clips):
    [row] = stage(clip_row("noface", clips["noface"]))
    assert (row["status"], row["drop_reason"]) == ("dropped", "no_face") and row["n_faces"] == 0


def test_small_face_dropped(stage, clips):
    [row] = stage(clip_row("small", clips["small"]))
    assert (row["status"], row["drop_reason"]) == ("dropped", "small_face")
    assert 60 < row["face_px"] < 160


def test_track_break_splits_clip_into_rows(stage, clips):
    rows = stage(clip_row("split", clips["split"], 0.0, 6.4))
    assert [r["key"] for r in rows] == [make_key("en", "faces_split", shot=0, track=j) for j in (0, 1)]
    assert all(r["status"] == "ok" for r in rows), rows
    (a, b) = rows
    assert a["start_s"] == 0.0 and 2.0 <= a["end_s"] - a["start_s"] <= 2.4
    assert 4.0 <= b["start_s"] <= 4.2 and b["end_s"] == pytest.approx(6.4, abs=0.2)
    for r in rows:
        n = round((r["end_s"] - r["start_s"]) * FPS)
        assert len(read_track(r["track_path"])["boxes"]) == n == len(read_frames(r["crop_path"]))
    ea, eb = (read_track(r["track_path"])["id_embedding"] for r in rows)
    assert np.linalg.norm(ea - eb) > stage.models.embedder.max_same_dist  # two different people


def test_alternating_speakers_are_split_never_mixed(stage, clips):
    """Two people taking turns in the same place of the frame, with no cut detected before the faces stage:
    every kept row holds one person (it ends within 0.3 s of a turn), and the turns become their own rows."""
    rows = stage(clip_row("alternate", clips["alternate"], 0.0, 10.4))
    turns = [0.0, 2.6, 5.2, 7.8, 10.4]
    kept = [r for r in rows if r["status"] == "ok"]
    for r in kept:
        inside = [min(r["end_s"], b) - max(r["start_s"], a) for a, b in zip(turns, turns[1:], strict=False)]
        assert sorted(inside)[-2] <= 0.3, (r["start_s"], r["end_s"])  # at most a sliver of a second person
    assert len(kept) >= 2, rows
    embs = [read_track(r["track_path"])["id_embedding"] for r in kept]
    firsts = [min(range(4), key=lambda j, r=r: abs(turns[j] - r["start_s"])) % 2 for r in kept]
    for e, who in zip(embs, firsts, strict=True):  # each row's identity is its turn's speaker
        same_turn = [x for x, w in zip(embs, firsts, strict=True) if w == who]
        other = [x for x, w in zip(embs, firsts, strict=True) if w != who]
        assert all(np.linalg.norm(e - x) <= stage.models.embedder.max_same_dist for x in same_turn)
        assert all(np.linalg.norm(e - x) > stage.models.embedder.max_same_dist for x in other)


def test_short_pieces_dropped_track_broken(stage, clips):
    [row] = stage(clip_row("broken", clips["broken"], 0.0, 3.8))
    assert (row["status"], row["drop_reason"]) == ("dropped", "track_broken"), row


def test_dropped_rows_pass_through_untouched(stage, clips):
    row = drop(clip_row("aoc", clips["aoc"]), "too_short", "shots")
    before = dict(row)
    assert stage(row) == [before]


def test_bad_media_is_a_recorded_error_not_a_crash(stage, tmp_path):
    bad = tmp_path / "broken.mkv"
    bad.write_bytes(b"not a video")
    row = seed_row("en", "faces_bad", str(bad))
    row.update(norm_path=str(bad), start_s=0.0, end_s=2.0, shot_index=0, fps=25.0)
    [out] = stage(row)
    assert out["status"] == "dropped" and out["drop_reason"] == "error" and out["drop_stage"] == "faces"


def test_rows_from_the_real_ingest_stages(ingested_talking, stage):
    """Contract with ShotSplit: its clip rows (norm.mkv, start_s/end_s) go through FaceTrack unchanged in meaning."""
    cfg, rows = ingested_talking
    row = dict(rows[0], end_s=min(rows[0]["end_s"], rows[0]["start_s"] + 2.4))  # keep the test short
    out = stage(row)
    assert out and all(r["status"] == "ok" for r in out), out
    r = out[0]
    n = round((r["end_s"] - r["start_s"]) * FPS)
    assert len(read_track(r["track_path"])["boxes"]) == n
    assert Path(r["crop_path"]).parent == Path(stage.cfg.work_dir) / "en" / r["video_key"]


# ---- tracker logic with fake identities (the real-clip tests above cover it end to end) --------------------------
def _same(a, b) -> bool:
    return float(np.linalg.norm(a - b)) < 0.5


def test_tracker_links_by_iou_and_ends_on_identity_swap():
    from pipeline.track import IouTracker

    alice, bob = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    who = {0: alice, 5: alice, 10: alice, 15: bob, 20: bob}  # same place, another person from frame 15
    tr = IouTracker(0.5, max_missed=25, verify_every=5, same=_same)
    for f in (0, 5, 10, 15, 20):
        tr.update(f, np.array([[100 + f, 100, 300 + f, 300]], np.float32), lambda j, f=f: who[f])
    tracks = tr.tracks()
    assert sorted(t.frames for t in tracks) == [[0, 5, 10], [15, 20]]


def test_tracker_finds_the_swap_between_two_checks_by_bisection():
    """Checks every 25 frames, detections every 5: the other person's first sampled frame (35) is still where
    the track ends, as with a check on every frame, and only log2 of the unchecked links are embedded."""
    from pipeline.track import IouTracker

    alice, bob = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    calls: list[int] = []

    def who(f: int):
        calls.append(f)
        return alice if f < 35 else bob

    tr = IouTracker(0.5, max_missed=25, verify_every=25, same=_same)
    for f in range(0, 80, 5):
        tr.update(f, np.array([[100 + f, 100, 300 + f, 300]], np.float32), lambda j, f=f: who(f))
    assert sorted(t.frames for t in tr.tracks()) == [list(range(0, 35, 5)), list(range(35, 80, 5))]
    assert len(calls) <= 8, calls  # 16 detections: a check at 0, 25, 50 (fails), 75 and a bisection of 4 links


def test_tracker_relinks_same_face_after_a_jump_and_expires_lost_tracks():
    from pipeline.track import IouTracker

    alice = np.array([1.0, 0.0])
    tr = IouTracker(0.5, max_missed=10, verify_every=100, same=_same)
    tr.update(0, np.array([[0, 0, 100, 100]], np.float32), lambda j: alice)
    tr.update(5, np.zeros((0, 4), np.float32), lambda j: alice)  # missed
    tr.update(10, np.array([[300, 0, 400, 100]], np.float32), lambda j: alice)  # no overlap, same person
    assert [t.frames for t in tr.tracks()] == [[0, 10]]
    tr.update(30, np.array([[300, 0, 400, 100]], np.float32), lambda j: alice)  # gap 20 > max_missed
    assert sorted(t.frames for t in tr.tracks()) == [[0, 10], [30]]


def test_interpolate_and_smooth_fill_every_frame():
    from pipeline.track import crop_windows, interpolate, smooth

    boxes, detected = interpolate([0, 10], [np.array([0, 0, 10, 10]), np.array([10, 0, 20, 10])], 0, 12)
    assert boxes.shape == (12, 4) and detected.tolist() == [True] + [False] * 9 + [True, False]
    np.testing.assert_allclose(boxes[5], [5, 0, 15, 10])
    np.testing.assert_allclose(boxes[11], boxes[10])  # held after the last detection
    jitter = boxes.copy()
    jitter[4] += 50  # one-frame detector glitch
    assert np.abs(smooth(jitter, 5)[4] - boxes[4]).max() < 2
    win = crop_windows(np.array([[90, 0, 110, 40]], np.float32), 0.4, (100, 100))
    side = win[0, 2] - win[0, 0]
    assert side == pytest.approx(56) and win[0, 2] <= 100 and win[0, 1] >= 0  # square, shifted inside the frame


@pytest.fixture(scope="session")
def yunet_stage(stage, shared_media, tmp_path_factory) -> FaceTrack:
    """FaceTrack with backend auto and YuNet's upstream ONNX in the models dir (what auto then picks)."""
    models = tmp_path_factory.mktemp("models_yunet")
    if link_yunet(models, shared_media / "weights") is None:
        pytest.skip(f"no face_detection_yunet_*.onnx in {shared_media / 'weights'}")
    cfg = dataclasses.replace(stage.cfg, models_dir=str(models), out=str(tmp_path_factory.mktemp("faces_yunet")))
    cfg.faces = dataclasses.replace(stage.fc, backend="auto")
    return FaceTrack(cfg)


def test_yunet_default_makes_the_same_decisions(yunet_stage, clips):
    """The fast detector behind the same stage: one speaker kept with a full track, a second person dropped as
    multi_face, no face / a small face dropped, the clasped hands no second face, alternating speakers split."""
    assert yunet_stage.models.detector.name == "yunet"
    [row] = yunet_stage(clip_row("aoc", clips["aoc"], 0.0, 3.0))
    assert row["status"] == "ok" and row["detector"] == "yunet" and row["n_faces"] == 1, row
    assert len(read_track(row["track_path"])["boxes"]) == 75 == len(read_frames(row["crop_path"]))
    expect = {"multi": "multi_face", "noface": "no_face", "small": "small_face"}
    for name, reason in expect.items():
        [r] = yunet_stage(clip_row(name, clips[name]))
        assert (r["status"], r["drop_reason"]) == ("dropped", reason), (name, r)
    [r] = with_faces(yunet_stage, min_face_px=112)(clip_row("hands", clips["hands"], 0.0, 3.0))
    assert r["status"] == "ok" and 100 < r["face_px"] < 160, r
    rows = yunet_stage(clip_row("alternate", clips["alternate"], 0.0, 10.4))
    turns = [0.0, 2.6, 5.2, 7.8, 10.4]
    kept = [r for r in rows if r["status"] == "ok"]
    assert len(kept) >= 2, rows
    for r in kept:
        inside = [min(r["end_s"], b) - max(r["start_s"], a) for a, b in zip(turns, turns[1:], strict=False)]
        assert sorted(inside)[-2] <= 0.3, (r["start_s"], r["end_s"])


@pytest.mark.parametrize("name", ["aoc", "portrait"])
def test_crop_measures_taken_in_pass_two_match_a_decode_of_the_crop(kept, name):
    """Sharpness and brightness come from the crop frames pass 2 writes (no decode in the quality stage): they
    read what a decode of the written crop reads, up to the crop's x264 (CRF 18) loss."""
    from pipeline.stages.quality import measure

    row = kept[name]
    decoded = measure(row["crop_path"], row["track_path"])
    assert row["brightness"] == pytest.approx(decoded["brightness"], abs=3.0)  # measured: within 0.9
    # the encode only removes detail: measured 1.13x (portrait) and 1.21x (AOC) the decoded crop's sharpness
    assert 0.95 * decoded["sharpness"] <= row["sharpness"] <= 1.6 * decoded["sharpness"]
    assert measure(row["crop_path"], row["track_path"], row)["sharpness"] == row["sharpness"]  # no decode then


@pytest.mark.parametrize("name", ["aoc", "portrait"])
def test_crop_fingerprint_taken_in_pass_two_matches_a_decode_of_the_crop(kept, name, tmp_path):
    """The video fingerprint comes from the crop frames pass 2 encodes (Commit decodes nothing): it matches the
    hashes of a decode of the written crop within a few of 64 bits (dedup allows 12; other footage differs by
    ~32), and a crop without the sidecar is decoded instead."""
    import shutil

    from pipeline.fingerprint import crop_hashes, popcount, sidecar, video_hashes

    crop = Path(kept[name]["crop_path"])
    side = np.load(sidecar(crop))
    decoded = video_hashes(crop)
    assert side.dtype == np.uint64 and len(side) == len(decoded) == 15  # 3 s at 5 a second
    assert float(popcount(side ^ decoded).mean()) <= 3.0  # measured 0.0 and 0.4 (the CRF-18 encode alone)
    assert np.array_equal(crop_hashes(crop), side)
    bare = shutil.copy(crop, tmp_path / "bare_crop.mp4")  # no sidecar beside it
    assert np.array_equal(crop_hashes(bare), decoded)
    other = video_hashes(kept["portrait" if name == "aoc" else "aoc"]["crop_path"])
    assert float(popcount(side ^ other).mean()) >= 16.0  # another person's crop: measured ~29


def test_repeated_frames_counts_exact_and_near_twins_only():
    inf = np.inf
    # a 15 fps source on the 25 fps timeline: exact repeats
    assert repeated_frames(np.array([inf, 3.0, 0.0, 2.5, 0.0, 3.1])).tolist() == [False, False, True, False, True, False]
    # twins coded separately: tiny change between large ones; a still stretch (all changes alike) is not repeats
    assert repeated_frames(np.array([inf, 4.0, 0.3, 4.2, 0.2, 3.9])).tolist() == [False, False, True, False, True, False]
    assert not repeated_frames(np.array([inf, 0.3, 0.25, 0.35, 0.3, 0.28])).any()
    assert not repeated_frames(np.array([inf])).any()
