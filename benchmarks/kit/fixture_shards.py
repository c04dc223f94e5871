"""Small training shards from real media in exactly the pipeline's sink format (mcdm tests, bench_train).

Real talking clips (e.g. HDTF 512² face crops) are cut and resized with ffmpeg, audio is extracted at 16 kHz with
640 samples per frame, and the track is computed with dlib's 68-point landmarks on a frontal-face detector box
plus the faces stage's head pose and mouth opening, so mcdm_model can train without a full pipeline run.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from pipeline.common import (
    DLIB_LANDMARKS_68,
    DLIB_RECOGNITION,
    dlib_model_path,
    head_pose,
    media,
    mouth_open,
    track_bytes,
)


def _dlib_models() -> tuple:
    import dlib

    return (dlib.get_frontal_face_detector(), dlib.shape_predictor(str(dlib_model_path(DLIB_LANDMARKS_68))),
            dlib.face_recognition_model_v1(str(dlib_model_path(DLIB_RECOGNITION))))


def track_arrays(frames: np.ndarray, src_size: int, crop_size: int) -> dict[str, np.ndarray]:
    """Contract .npz arrays for a clip whose frames ARE the face crop (source = crop window = whole frame)."""
    import dlib

    det, shape, rec = _dlib_models()
    n, h, w, _ = frames.shape
    lms, scores, found = np.zeros((n, 68, 2), np.float32), np.zeros(n, np.float32), np.zeros(n, bool)
    box = dlib.rectangle(w // 4, h // 4, 3 * w // 4, 3 * h // 4)
    emb = None
    for i, fr in enumerate(frames):
        dets, sc, _ = det.run(fr, 0, 0.0)
        if len(dets):
            j = int(np.argmax(sc))
            box, scores[i], found[i] = dets[j], sc[j], True
        sp = shape(fr, box)
        lms[i] = [(p.x, p.y) for p in sp.parts()]
        if emb is None and found[i]:
            emb = np.asarray(rec.compute_face_descriptor(fr, sp), np.float32)
    k = src_size / w
    # the faces stage's own convention, so fixture shards and pipeline shards carry the same pose
    pose = np.nan_to_num(np.stack([head_pose(lm, (w, h)) for lm in lms]))
    x1y1, x2y2 = lms.min(axis=1) * k, lms.max(axis=1) * k
    emb = emb if emb is not None else np.ones(128, np.float32)
    return {
        "boxes": np.concatenate([x1y1, x2y2], axis=1).astype(np.float32),
        "crop_boxes": np.tile(np.array([0, 0, src_size, src_size], np.float32), (n, 1)),
        "landmarks": (lms * k).astype(np.float32),
        "landmarks_crop": (lms * crop_size / w).astype(np.float32),
        "pose": pose.astype(np.float32),
        "mouth_open": np.array([mouth_open(lm) for lm in lms], np.float32),  # the faces stage's measure
        "det_score": scores, "detected": found,
        "id_embedding": (emb / np.linalg.norm(emb)).astype(np.float32),
        "fps": np.float32(25.0), "crop_size": np.int32(crop_size),
    }


def clip_sample(src: Path, key: str, start_s: float, end_s: float, crop_size: int, lang: str = "en") -> dict:
    """One shard sample {__key__, mp4, wav, json, npz} from [start_s, end_s) of a real face-crop video."""
    n = int(round((end_s - start_s) * 25))
    with tempfile.TemporaryDirectory() as tmp:
        mp4, wav = Path(tmp) / "c.mp4", Path(tmp) / "c.wav"
        media.ffmpeg("-ss", f"{start_s:.3f}", "-i", str(src), "-t", f"{end_s - start_s:.3f}", "-vf",
                     f"fps=25,scale={crop_size}:{crop_size}", "-frames:v", str(n), "-an", "-c:v", "libx264",
                     "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", str(mp4))
        n = len(media.read_frames(mp4))
        audio = media.read_audio(src, start_s, end_s)
        audio = np.pad(audio, (0, max(0, n * 640 - len(audio))))[: n * 640]
        media.write_wav(audio, wav)
        det_frames = media.read_frames(src, start_s, end_s, size=(256, 256), fps=25)[:n]
        src_size = media.probe(src)["width"]
        arrays = track_arrays(det_frames, src_size, crop_size)
        meta = {"key": key, "lang": lang, "video_key": key.rsplit("-s", 1)[0], "start_s": start_s, "end_s": end_s,
                "face_coverage": float(arrays["detected"].mean()), "source": src.name, "n_frames": n}
        return {"__key__": key, "mp4": mp4.read_bytes(), "wav": wav.read_bytes(),
                "json": json.dumps(meta, sort_keys=True).encode(), "npz": track_bytes(**arrays)}


def write_shards(out: Path, clips: list[tuple[Path, float, float]], crop_size: int = 64, lang: str = "en",
                 per_shard: int = 1) -> list[Path]:
    """Write <out>/shards/<lang>/<lang>-NNNNNN.tar with `per_shard` samples each; returns the shard paths."""
    import webdataset as wds

    d = Path(out) / "shards" / lang
    d.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for i in range(0, len(clips), per_shard):
        path = d / f"{lang}-{len(paths):06d}.tar"
        with wds.TarWriter(str(path), encoder=False) as w:
            for j, (src, s, e) in enumerate(clips[i : i + per_shard]):
                stem = src.stem.lower().replace(".", "_")[:40]
                w.write(clip_sample(src, f"{lang}-{stem}-s{i + j:04d}", s, e, crop_size, lang))
        paths.append(path)
    return paths
