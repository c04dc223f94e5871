"""Labelled identity embeddings from the real faces in ../shared/media (identity benchmark and tests).

Each talking clip gives several "clips" (2-s segments, 3 frames each averaged, as the faces stage does), each
single-person photo one; the label is the person. Alexandria Ocasio-Cortez appears in three different source
files (HDTF, V-Express and video-retalking crops of different footage), so "same person across clips" is tested
across files, not only across segments of one file. Embeddings come from the pipeline's own face models (the
offline default: MTCNN + dlib 68 + dlib ResNet), cached in an .npz under `cache`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# file -> person; every file not listed with a shared name is its own person (SOURCES.tsv notes)
VIDEOS: dict[str, str] = {
    "hdtf_WDA_AOC_en_8s.mp4": "aoc",
    "vexpress_AOC_en_4s.mp4": "aoc",
    "retalking_face3_en.mp4": "aoc",
    "hdtf_WDA_KatieHill_en_8s.mp4": "katie_hill",
    "latentsync_demo1_ru_10s.mp4": "latentsync_woman_ru",
    "latentsync_demo2_pt_20s.mp4": "latentsync_man_pt",
    "latentsync_demo3_en_20s.mp4": "latentsync_man_en",
    "liveportrait_d11_child_en.mp4": "child_d11",
    "liveportrait_d20_zh.mp4": "man_d20_zh",
    "retalking_face1_en.mp4": "interview_man",
    "retalking_face2_en.mp4": "eric_swalwell",
    "retalking_face4_en.mp4": "ecb_woman",
    "retalking_face5_en.mp4": "mairead_mcguinness",
    "vexpress_RD_Radio10_en_2s.mp4": "rd_radio10",
}
PHOTOS: dict[str, str] = {
    "facenet_angelina_jolie.jpg": "angelina_jolie",
    "facenet_kate_siegel.jpg": "kate_siegel",
    "facenet_paul_rudd.jpg": "paul_rudd",
    "facenet_shea_whigham.jpg": "shea_whigham",
}
SEGMENT_S = 2.0
MAX_SEGMENTS = 4
FRAMES_PER_SEGMENT = 3
MAX_SIDE = 640


def _models():
    from pipeline.config import FacesConfig
    from pipeline.models.face_models import load_face_models

    return load_face_models(FacesConfig(backend="mtcnn"), "", use_gpu=False)


def _downsize(rgb: np.ndarray) -> np.ndarray:
    import cv2

    s = min(1.0, MAX_SIDE / max(rgb.shape[:2]))
    return rgb if s == 1.0 else cv2.resize(rgb, (round(rgb.shape[1] * s), round(rgb.shape[0] * s)), interpolation=cv2.INTER_AREA)


def _embed(models, rgb: np.ndarray) -> np.ndarray | None:
    """Embedding of the largest face in the frame, or None."""
    small = _downsize(rgb)
    d = models.detector.detect(small, 40)
    if not len(d):
        return None
    areas = (d.boxes[:, 2] - d.boxes[:, 0]) * (d.boxes[:, 3] - d.boxes[:, 1])
    j = int(np.argmax(areas))
    lm = models.landmarker.landmarks(small, d.boxes[j])
    return models.embedder.embed(small, lm, None if d.kps is None else d.kps[j])


def _clip_embedding(models, frames: list[np.ndarray]) -> np.ndarray | None:
    embs = [e for f in frames if (e := _embed(models, f)) is not None]
    if not embs:
        return None
    v = np.mean(embs, axis=0)
    return (v / np.linalg.norm(v)).astype(np.float32)


def identity_set(shared_media: Path, cache: Path, videos: dict[str, str] | None = None,
                 photos: dict[str, str] | None = None, max_segments: int = MAX_SEGMENTS) -> tuple[np.ndarray, list[str], list[str]]:
    """(embeddings (N, 128), person labels, item names "<file>@<start>s"), built once per cache dir and choice."""
    import hashlib

    videos = VIDEOS if videos is None else videos
    photos = PHOTOS if photos is None else photos
    tag = hashlib.sha1(repr((sorted(videos.items()), sorted(photos.items()), max_segments)).encode()).hexdigest()[:10]
    path = Path(cache) / f"identity_set_{tag}.npz"
    if path.exists():
        z = np.load(path)
        return z["embs"], list(z["labels"]), list(z["names"])
    from pipeline import media

    models = _models()
    embs, labels, names = [], [], []
    for name, person in videos.items():
        src = shared_media / "video_av" / name
        dur = media.probe(src)["duration_s"] - 0.2  # containers may end a few frames early
        n_seg = max(1, min(max_segments, int(dur // SEGMENT_S)))
        for k in range(n_seg):
            start = k * (dur - SEGMENT_S) / max(n_seg - 1, 1) if n_seg > 1 else 0.0
            seg = media.read_frames(src, start, start + SEGMENT_S)
            if not len(seg):
                continue
            frames = [seg[i] for i in np.linspace(0, len(seg) - 1, FRAMES_PER_SEGMENT).round().astype(int)]
            e = _clip_embedding(models, frames)
            if e is not None:
                embs.append(e), labels.append(person), names.append(f"{name}@{start:.1f}s")
    import cv2

    for name, person in photos.items():
        rgb = cv2.cvtColor(cv2.imread(str(shared_media / "faces" / name)), cv2.COLOR_BGR2RGB)
        e = _clip_embedding(models, [rgb])
        if e is not None:
            embs.append(e), labels.append(person), names.append(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, embs=np.stack(embs), labels=np.array(labels), names=np.array(names))
    return np.stack(embs), labels, names
