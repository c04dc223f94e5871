"""Small real media + fake rows for the sink and report tests (no stage runs: the rows point at real files).

Why: the sink only moves bytes and scalars, so a tiny crop mp4, clip wav and track npz derived from one real
talking clip (read in place from ../shared/media) are enough; rows that use them mimic the data contract.
Each source video (or `person`) gets its own identity embedding in its own track npz: a seeded unit vector
standing in for the face model (these tests are about the sink; identity clustering is tested on real faces),
so different videos are different people and finalize's duplicate check (which needs the same face) leaves them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from pipeline import media
from pipeline.record import drop, make_key, seed_row
from pipeline.track_io import write_track

CLIP = "video_av/vexpress_RD_Radio10_en_2s.mp4"  # real HDTF talking clip, 2 s, 512x512
N_FRAMES = 25


def make_media(shared_media: Path, cache: Path) -> dict[str, Path]:
    """crop.mp4 (64x64, 25 frames, silent), clip.wav (N*640 samples) and track.npz, built once per cache dir."""
    out = {"crop": cache / "sink_crop.mp4", "wav": cache / "sink_clip.wav", "npz": cache / "sink_track.npz"}
    if all(p.exists() for p in out.values()):
        return out
    src = shared_media / CLIP
    frames = media.read_frames(src, 0.0, N_FRAMES / 25, size=(64, 64))[:N_FRAMES]
    media.write_video(frames, out["crop"], fps=25)
    audio = media.read_audio(src, 0.0, N_FRAMES / 25)[: N_FRAMES * 640]
    media.write_wav(audio, out["wav"])
    n = len(frames)
    write_track(
        out["npz"],
        boxes=np.tile(np.array([100, 80, 400, 380], np.float32), (n, 1)),
        crop_boxes=np.tile(np.array([40, 20, 460, 440], np.float32), (n, 1)),
        landmarks=np.zeros((n, 68, 2), np.float32),
        landmarks_crop=np.zeros((n, 68, 2), np.float32),
        pose=np.zeros((n, 3), np.float32),
        mouth_open=np.linspace(0, 0.2, n, dtype=np.float32),
        det_score=np.ones(n, np.float32),
        detected=np.ones(n, bool),
        id_embedding=np.ones(128, np.float32) / np.sqrt(128),
        fps=np.float32(25),
        crop_size=np.int32(64),
    )
    return out


def track_for(m: dict[str, Path], person: str) -> Path:
    """m["npz"] with the identity embedding of `person` (a unit vector seeded by the name)."""
    import zlib

    path = m["npz"].with_name(f"sink_track_{person}.npz")
    if not path.exists():
        from pipeline.track_io import read_track, write_track

        arrays = read_track(m["npz"])
        e = np.random.default_rng(zlib.crc32(person.encode())).normal(size=128).astype(np.float32)
        arrays["id_embedding"] = e / np.linalg.norm(e)
        tmp = path.with_name(path.stem + f".{os.getpid()}.tmp.npz")
        write_track(tmp, **arrays)
        os.replace(tmp, path)
    return path


def clip_row(m: dict[str, Path], lang: str, source_id: str, shot: int, person: str | None = None, **scores) -> dict:
    """A kept clip row as it leaves the quality stage."""
    row = seed_row(lang, source_id, f"/videos/{source_id}.mp4")
    row |= {
        "key": make_key(lang, source_id, shot=shot), "shot_index": shot, "start_s": 1.0 + shot * 5, "end_s": 4.0 + shot * 5,
        "crop_path": str(m["crop"]), "clip_wav_path": str(m["wav"]), "track_path": str(track_for(m, person or source_id)),
        "title": "a title; with 'quotes' & $(stuff)", "face_px": 300.0, "n_faces": 1, "lang": lang, "lang_prob": 0.95,
        "lang_top3": json.dumps([[lang, 0.95], ["en", 0.03]]), "av_offset_frames": 1, "sync_conf": 6.5,
        "sharpness": 120.0, "info": {"not": "a scalar"}, "boxes_inline": [1, 2, 3],
    }  # fmt: skip
    return row | scores


# a score that fails its gate, for rows dropped by a score gate (a stage never drops a row whose score passes)
FAILING = {"out_of_sync": {"sync_conf": 1.0}, "small_face": {"face_px": 100.0}, "blurry": {"sharpness": 5.0},
           "too_dark": {"brightness": 10.0}, "lang_uncertain": {"lang_prob": 0.3}, "no_speech": {"speech_ratio": 0.0}}


def video(m: dict[str, Path], lang: str, source_id: str, kept: int, dropped: int = 0, reason: str = "no_face",
          person: str | None = None) -> list:
    """One source video: `kept` ok clips then `dropped` clips dropped with `reason` (and a score failing it)."""
    rows = [clip_row(m, lang, source_id, i, person) for i in range(kept + dropped)]
    for row in rows[kept:]:
        row.update(FAILING.get(reason, {}))
        drop(row, reason)
    return rows


def commit(cfg, *videos: list) -> None:
    """What the graph's last stage does per video: members checked, fingerprints taken, ledger entry written."""
    from pipeline.stages.commit import Commit

    stage = Commit(cfg)
    for rows in videos:
        stage.run_video(rows)


def build_out(cfg, *videos: list) -> dict:
    """commit + finalize + report: an output dir as a build leaves it."""
    from pipeline.finalize import finalize
    from pipeline.report import write_report

    commit(cfg, *videos)
    summary = finalize(cfg)
    write_report(cfg)
    return summary


def dropped_video(lang: str, source_id: str, reason: str = "download_failed") -> list:
    """A source video dropped before shots (one row, no clip fields)."""
    return [drop(seed_row(lang, source_id, f"https://example.com/{source_id}"), reason)]
