"""Sync and quality inputs built from real clips without the faces stage (tests and the sync benchmarks).

Why: a fixed dlib face box keeps the scorer's measurement independent of the face tracker. Per clip: a
normalised FPS / SAMPLE_RATE file, a fixed square face crop video and a contract track (dlib HOG box +
68-point landmarks from face_recognition_models, loaded by path), cached per recipe and source file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.kit.cache import built, recipe_key
from pipeline import media
from pipeline.record import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from pipeline.track import mouth_open
from pipeline.track_io import read_track, write_track

# Real in-sync talking clips (one visible speaker, own speech) from ../shared/media/video_av.
TALKING_CLIPS: tuple[str, ...] = (
    "hdtf_WDA_AOC_en_8s.mp4",
    "hdtf_WDA_KatieHill_en_8s.mp4",
    "retalking_face2_en.mp4",
    "retalking_face3_en.mp4",
    "retalking_face5_en.mp4",
    "latentsync_demo1_ru_10s.mp4",
)
# More real clips for the benchmark (moving heads, other languages).
EXTRA_CLIPS: tuple[str, ...] = (
    "retalking_face1_en.mp4",
    "retalking_face4_en.mp4",
    "latentsync_demo2_pt_20s.mp4",
    "latentsync_demo3_en_20s.mp4",
    "liveportrait_d20_zh.mp4",
    "vexpress_AOC_en_4s.mp4",
)
# A/V offsets of the sources that are not in sync (frames, positive = audio late), read by hand from phonetic
# events on a per-frame mouth strip over the spectrogram with Whisper word times (benchmarks/sync_sheet.py;
# benchmarks/RESULTS_sync.md, section D). The other clips read 0 +-1 the same way (checked: retalking_face2 "my",
# "dreams"; retalking_face5 "reforms"). The benchmark and the absolute-recovery test re-align these sources by
# their offset so every clip is in sync before the test shifts are added.
SOURCE_OFFSETS: dict[str, int] = {
    # "a better": lips sealed 61-62 and parting at 63, yet the /b/ closure silence lasts to 66, where the burst
    # is (+2..+3); "more": the /m/ murmur at 84.4-85.5 sounds after the lips opened at 84 (+2..+3). The energy
    # scorer, Light-ASD and the sealed-lips check read +2; so does the separately processed V-Express copy.
    "hdtf_wda_aoc_en_8s": 2,
    # the same recording, processed separately: its frames line up with the HDTF clip's (mouth-opening
    # cross-correlation peak at -0.04 frame) and its audio matches the HDTF audio 15 ms later, so the same offset
    "vexpress_aoc_en_4s": 2,
    # lips sealed from 45 to ~61 while a loud open vowel sounds until 50.3, then silence until 73 although the
    # mouth is wide open at 65-67 (+5..+6)
    "liveportrait_d20_zh": 5,
}
SR, HOP = SAMPLE_RATE, SAMPLES_PER_FRAME  # 640 samples per video frame


def _dlib_models() -> tuple:
    import dlib

    from pipeline.models.face_dlib import SHAPE_68
    from pipeline.models.face_weights import dlib_model_path

    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(dlib_model_path(SHAPE_68)))


def normalize(src: Path, dst: Path, max_side: int = 640) -> Path:
    """25 fps CFR H.264 + 16 kHz mono PCM (what the normalize stage makes), downscaled for test speed."""
    if not dst.exists():
        scale = f"scale='if(gt(iw,ih),min({max_side},iw),-2)':'if(gt(iw,ih),-2,min({max_side},ih))'"
        tmp = dst.with_name(dst.stem + ".tmp.mkv")
        media.ffmpeg(
            "-i", str(src), "-vf", f"fps={FPS},{scale}", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18",
            "-pix_fmt", "yuv420p", "-ac", "1", "-ar", str(SR), "-c:a", "pcm_s16le", str(tmp),
        )  # fmt: skip
        tmp.rename(dst)
    return dst


def make_crop_and_track(norm_path: Path, out_dir: Path, key: str, crop_size: int = 224) -> dict:
    """Fixed square face crop video + contract track .npz for the whole normalised file; returns row fields."""
    crop_path, track_path = out_dir / f"{key}_crop.mp4", out_dir / f"{key}_track.npz"
    if crop_path.exists() and track_path.exists():
        return {"crop_path": str(crop_path), "track_path": str(track_path)}
    import cv2

    detector, predictor = _dlib_models()
    frames = media.read_frames(norm_path)
    n, h, w, _ = frames.shape
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    boxes = []
    for i in range(0, n, 5):
        dets = detector(gray[i], 0)
        if dets:
            d = max(dets, key=lambda r: r.width() * r.height())
            boxes.append((d.left(), d.top(), d.right(), d.bottom()))
    if not boxes:
        raise RuntimeError(f"no face found in {norm_path}")
    x1, y1, x2, y2 = np.median(np.array(boxes, dtype=np.float32), axis=0)
    cx, cy, side = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) * 1.4
    side = min(side, w, h)
    cx0 = float(np.clip(cx - side / 2, 0, w - side))
    cy0 = float(np.clip(cy - side / 2, 0, h - side))
    crop_box = np.array([cx0, cy0, cx0 + side, cy0 + side], dtype=np.float32)

    import dlib

    rect = dlib.rectangle(int(x1), int(y1), int(x2), int(y2))
    lms = np.zeros((n, 68, 2), np.float32)
    for i, g in enumerate(gray):
        shape = predictor(g, rect)
        lms[i] = [(p.x, p.y) for p in shape.parts()]
    scale = crop_size / side
    lms_crop = (lms - crop_box[:2]) * scale
    ix0, iy0, iside = int(cx0), int(cy0), int(side)
    crops = [cv2.resize(f[iy0 : iy0 + iside, ix0 : ix0 + iside], (crop_size, crop_size)) for f in frames]
    out_dir.mkdir(parents=True, exist_ok=True)
    media.write_video(np.stack(crops), crop_path, fps=FPS)
    write_track(
        track_path,
        boxes=np.tile(np.array([x1, y1, x2, y2], np.float32), (n, 1)),
        crop_boxes=np.tile(crop_box, (n, 1)),
        landmarks=lms,
        landmarks_crop=lms_crop.astype(np.float32),
        pose=np.zeros((n, 3), np.float32),
        mouth_open=np.array([mouth_open(lm) for lm in lms], np.float32),  # the faces stage's measure
        det_score=np.ones(n, np.float32),
        detected=np.ones(n, bool),
        id_embedding=np.ones(128, np.float32) / np.sqrt(128),
        fps=np.float32(FPS),
        crop_size=np.int32(crop_size),
    )
    return {"crop_path": str(crop_path), "track_path": str(track_path)}


def shift_audio(audio: np.ndarray, k_frames: int) -> np.ndarray:
    """Delay audio by k frames (k > 0: audio lags video), zero-filled, same length."""
    s = k_frames * HOP
    out = np.zeros_like(audio)
    if s >= 0:
        out[s:] = audio[: len(audio) - s]
    else:
        out[: len(audio) + s] = audio[-s:]
    return out


LEAD = 15  # frames of audio context before (and after) each scored window


def load_clips(rows: list[dict], reference: dict[str, int] | None = None) -> list[dict]:
    """Scorer inputs per row: frames/landmarks without the first and last LEAD frames, and the whole audio.

    reference: the clip's own A/V offset as read by a trusted scorer (positive = audio lags video); the audio is
    moved by it first, so the copy is in sync by that reference before the test shifts are added."""
    clips = []
    for row in rows:
        frames = media.read_frames(row["crop_path"])
        track = read_track(row["track_path"])
        audio = media.read_audio(row["audio_path"])
        n = min(len(frames), len(audio) // HOP)
        audio = audio[: n * HOP]
        if reference and reference.get(row["key"]):
            audio = shift_audio(audio, -int(reference[row["key"]]))
        video = {"frames": frames[LEAD : n - LEAD], "landmarks_crop": track["landmarks_crop"][LEAD : n - LEAD],
                 "mouth_open": track["mouth_open"][LEAD : n - LEAD]}  # fmt: skip
        clips.append({"key": row["key"], "video": video, "audio": audio})
    return clips


def reference_offsets(clips: list[dict], scorer) -> dict[str, int]:
    """Each clip's own k=0 offset as read by a trusted scorer: what its audio must be moved by to be in sync."""
    return {c["key"]: scorer.score(c["video"], c["audio"], audio_lead_frames=LEAD)[0] for c in clips}


def evaluate(clips: list[dict], scorer, shifts=range(-10, 11), mismatched: bool = True) -> dict:
    """Recovery of audio delayed by k frames (absolute: |offset - k| <= 1; relative: the same after subtracting
    the clip's own k=0 reading) and the AUC of conf, own audio vs every other clip's speech."""
    import time

    out, t_total, calls = [], 0.0, 0
    for i, c in enumerate(clips):
        found, conf0 = {}, 0.0
        for k in shifts:
            t = time.perf_counter()
            found[k], conf = scorer.score(c["video"], shift_audio(c["audio"], k), audio_lead_frames=LEAD)
            t_total, calls = t_total + time.perf_counter() - t, calls + 1
            conf0 = conf if k == 0 else conf0
        off0 = found.get(0, 0)
        mis = [scorer.score(c["video"], np.resize(o["audio"], len(c["audio"])), audio_lead_frames=LEAD)[1]
               for j, o in enumerate(clips) if j != i and mismatched]  # fmt: skip
        out.append({"key": c["key"], "frames": len(c["video"]["frames"]), "off0": off0, "conf0": conf0,
                    "hits": sum(abs(found[k] - k) <= 1 for k in shifts),
                    "rel": sum(abs(found[k] - off0 - k) <= 1 for k in shifts), "n_shifts": len(shifts), "mis": mis})  # fmt: skip
    total = sum(r["n_shifts"] for r in out)
    pos, neg = np.array([r["conf0"] for r in out])[:, None], np.array([m for r in out for m in r["mis"]])[None, :]
    auc = float(((pos > neg) + 0.5 * (pos == neg)).mean()) if neg.size else float("nan")
    return {"clips": out, "recovery": sum(r["hits"] for r in out) / total, "relative": sum(r["rel"] for r in out) / total,
            "auc": auc, "pos": [r["conf0"] for r in out], "s_per_call": t_total / max(calls, 1)}  # fmt: skip


def clip_key(name: str) -> str:
    return Path(name).stem.lower().replace(".", "_")


def _build_clip(src: Path, out: Path, key: str) -> None:
    """Everything the sync stage reads for one whole source file, into `out`."""
    norm = normalize(src, out / f"{key}.mkv")
    media.write_wav(media.read_audio(norm), out / f"{key}.wav")
    make_crop_and_track(norm, out, key)
    (out / "n_frames").write_text(str(len(media.read_frames(norm, size=(32, 32)))))


def prepare(shared_media: Path, cache: Path, names: tuple[str, ...] = TALKING_CLIPS) -> list[dict]:
    """Rows (as the sync stage sees them) for each real clip: whole normalised file as one clip.

    Built once per (recipe, source file) into `cache/<key>-<hash>/` (benchmarks/kit/cache.py): rows point into
    it, so callers copy what they modify."""
    rows = []
    for name in names:
        src, key = shared_media / "video_av" / name, clip_key(name)
        recipe = (normalize, make_crop_and_track, _build_clip, FPS, SR)
        d = built(Path(cache) / f"{key}-{recipe_key(recipe, [src])}", lambda tmp, src=src, key=key: _build_clip(src, tmp, key))
        n = int((d / "n_frames").read_text())
        rows.append({"key": key, "video_key": key, "status": "ok", "norm_path": str(d / f"{key}.mkv"),
                     "audio_path": str(d / f"{key}.wav"), "start_s": 0.0, "end_s": n / FPS,
                     "crop_path": str(d / f"{key}_crop.mp4"), "track_path": str(d / f"{key}_track.npz")})  # fmt: skip
    return rows
