"""The row contract: one flat dict per item that every stage only adds to, and the media constants every stage shares.

The keys are documented once, in ROW_KEYS (stage that adds them, in pipeline order); `index.parquet` holds no
other column. Per-frame arrays never go in a row: the faces stage writes them to the track `.npz`
(pipeline/track_io.py) and puts its path in `track_path`.

Rows carry paths to media on storage every Ray node can reach, never decoded frames or large arrays.
A dropped row keeps status="dropped", drop_reason and drop_stage; later stages pass it through untouched.
A row that failed transiently (pipeline/faults.py: disk, network, timeout, memory, a killed worker) after its
retries has status="retry_later", drop_stage and drop_detail: it is no drop, so the Commit stage does not ledger its
video, finalize does not index it, and it is listed in <out>/pending.json; the next run processes the video again.
From shots on a row is one clip: a scene piece (<= shots.max_take_s) after shots, one window (<= shots.max_clip_s)
of a take (pipeline/takes.py: key "<take_id>[-wNNN]") after faces.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

Row = dict[str, Any]

# The record's media: every normalised file, crop, clip wav and track is at FPS frames/s and SAMPLE_RATE Hz mono,
# so one video frame is SAMPLES_PER_FRAME audio samples. Constants of the contract, not settings.
FPS = 25
SAMPLE_RATE = 16000
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS

# Every row key, by the stage that adds it (pipeline order), with what it holds.
ROW_KEYS: dict[str, dict[str, str]] = {
    "seed": {
        "key": "<lang>-<safe source id>[-sNNNN[-tNN]] (make_key)", "video_key": "key of the source video",
        "lang_expected": "language of the manifest", "source": "URL, ytsearchN: query or local path",
        "source_id": "manifest id (or search result id)", "license": "manifest license (download may refine it)",
        "note": "manifest note", "status": '"ok" | "dropped" | "retry_later"',
        "drop_reason": "one of DROP_REASONS, error or retry_later", "drop_stage": "stage that dropped the row",
        "drop_detail": "why, for people (drops and retry_later only)",
        "source_public": "what a sample's .json calls the source: no host path (pipeline/manifest.py)",
    },
    "download": {
        "video_path": "downloaded (or local) file", "title": "video title", "channel": "uploader",
        "duration_s": "seconds (normalize re-measures it)", "webpage_url": "page of the video",
        "search_query": "the ytsearchN: query a result came from",
    },
    "normalize": {
        "norm_path": "the video the stages decode: the source (read through norm_vf), or norm.mkv "
        f"({FPS} fps CFR H.264) with normalize.reencode", "norm_vf": "ffmpeg filter chain putting norm_path on the "
        f"{FPS} fps timeline (pipeline/norm_video.py); absent for norm.mkv", "audio_path": f"{SAMPLE_RATE} Hz mono .wav",
        "width": "px of the timeline's frames", "height": "px of the timeline's frames", "fps": "frame rate (FPS)",
        "source_qp": "mean H.264 block QP of the source (8-bit scale; pipeline/source_qp.py); absent for other codecs",
    },
    "shots": {
        "shot_index": 'one row per clip from here on: key = "<video_key>-s0003"', "start_s": "clip start on the timeline",
        "end_s": "clip end on the timeline",
        "n_clips": "clips of the video",
        "part_index": "the part (unit of work) of the video the clip travels in (pipeline/ledger_parts.py)",
        "part_count": "parts of the video (1 unless it is longer than shots.part_s)",
    },
    "faces": {
        "track_path": "per-frame track .npz (pipeline/track_io.py)", "crop_path": "square face crop .mp4",
        "face_px": "median longest side of the face box", "n_faces": "most confident faces in a sampled frame",
        "face_coverage": "share of sampled frames with the tracked face", "detector": "face detector backend",
        "face_detail_px": "effective resolution px of the face at source resolution (median; face_quality.py)",
        "face_blockiness": "steps on the 8-px block grid vs elsewhere, 1.0 = none (median; face_quality.py)",
        "frame_repeat_ratio": "share of the clip's frames repeating the one before (a low-frame-rate source)",
        "face_native_px": "longest side px of the landmarks' box in the source frame (median)",
        "take_id": 'the take (one shot, one face track) the clip is a window of: "<video_key>-s0003[-tNN]"',
        "take_index": "window number in the take (pipeline/takes.py)", "take_windows": "windows in the take",
        "prev_key": 'key of the previous window of the take ("" for the first)', "take_s": "seconds of the take",
        "take_coverage": "share of the take's sampled frames with the tracked face",
    },
    "language": {
        "lang": "Whisper's language", "lang_prob": "its probability", "lang_top3": "json [[lang, p], ...]",
        "speech_ratio": "VAD speech share", "n_speakers": "-1 = check did not run",
        "speaker_check": '"pyannote" | "not_run"', "transcript": "when language.transcribe",
        "lang_model": "which Whisper weights",
    },
    "sync": {
        "av_offset_frames": "measured offset, + = audio late", "sync_conf": "scorer confidence",
        "sync_scorer": "which scorer", "clip_wav_path": "clip audio (.wav), moved to offset 0 when realigned",
        "sync_shift_frames": "frames the audio was moved by",
    },
    "quality": {
        "sharpness": "variance of the Laplacian on the face", "brightness": "mean luma on the face",
        "yaw_abs_max": "largest |yaw| degrees over the frames (the pose gate)", "pitch_abs_max": "same for |pitch|",
        "mouth_range": "p95 - p5 of mouth_open over the frames (the lip-motion gate: a still photo has ~0)",
    },
    "finalize": {
        "rebuild_gate": "a loosened hard gate the dropped row might now pass (pipeline/gates.py)",
        "duplicate_of": 'key of the clip this one duplicates (drop "duplicate", pipeline/dedup.py)',
        "identity_id": "the person, clustered across videos (pipeline/identity.py)",
        "split": "train | val | test, by identity (pipeline/splits.py)",
        "shard": 'path under shards/ of the shard holding the kept clip, "" for drops',
    },
}
ALL_ROW_KEYS: frozenset[str] = frozenset(k for keys in ROW_KEYS.values() for k in keys)

STATUS_OK = "ok"
STATUS_DROPPED = "dropped"
STATUS_RETRY = "retry_later"

# Every drop reason a stage may record, by stage: the funnel in stats.json and the report follow this order.
DROP_REASONS: dict[str, tuple[str, ...]] = {
    "download": ("download_failed", "unsupported_source", "too_long", "too_large"),
    "normalize": ("corrupt_video", "no_audio", "no_video", "too_long"),
    "shots": ("too_short", "no_shots"),
    "faces": ("no_face", "multi_face", "small_face", "track_broken"),
    "language": ("lang_mismatch", "lang_uncertain", "no_speech", "multi_speaker"),
    "sync": ("out_of_sync",),
    "quality": ("no_lip_motion", "blurry", "extreme_pose", "too_dark", "low_frame_rate"),
    "dedup": ("duplicate",),
    "sink": ("write_failed",),
}
# Any stage may also record "error": an unexpected exception on one item (drop_detail holds the message).
STAGES: tuple[str, ...] = tuple(DROP_REASONS)

_SAFE_ID = re.compile(r"^[a-z0-9_-]{1,64}$")
_LANG = re.compile(r"^[a-z]{2,3}$")


def safe_id(raw: str) -> str:
    """A key-safe id: `raw` itself when already `[a-z0-9_-]{1,64}`, else a readable slug plus a stable hash.

    Keys never contain dots (webdataset splits the extension at the first dot) or path separators.
    """
    if _SAFE_ID.match(raw):
        return raw
    slug = re.sub(r"[^a-z0-9_-]+", "_", raw.lower()).strip("_-")[:40]
    digest = hashlib.sha1(raw.encode("utf-8")).hexdigest()[:12]
    return f"{slug}_{digest}" if slug else digest


def make_key(lang: str, source_id: str, shot: int | None = None, track: int | None = None) -> str:
    """`<lang>-<safe source id>[-sNNNN[-tNN]]`; the only way keys are made."""
    if not _LANG.match(lang):
        raise ValueError(f"language code must be 2-3 lowercase letters, got {lang!r}")
    key = f"{lang}-{safe_id(source_id)}"
    if shot is not None:
        key += f"-s{shot:04d}"
    if track is not None:
        key += f"-t{track:02d}"
    return key


def seed_row(lang: str, source_id: str, source: str, **extra: Any) -> Row:
    key = make_key(lang, source_id)
    return {
        "key": key,
        "video_key": key,
        "lang_expected": lang,
        "source": source,
        "source_id": source_id,
        "status": STATUS_OK,
        "drop_reason": "",
        "drop_stage": "",
        **extra,
    }


def is_ok(row: Row) -> bool:
    return row.get("status") == STATUS_OK


def retry_later(row: Row, stage: str, detail: str) -> Row:
    """Mark a row as failed transiently: not a drop, never ledgered, retried by the next run."""
    row["status"] = STATUS_RETRY
    row["drop_reason"] = STATUS_RETRY
    row["drop_stage"] = stage
    row["drop_detail"] = detail[:500]
    return row


def drop(row: Row, reason: str, stage: str | None = None, detail: str = "") -> Row:
    """Mark a row dropped. `reason` must be one of DROP_REASONS so the funnel stays complete."""
    if stage is None:
        stage = next((s for s, reasons in DROP_REASONS.items() if reason in reasons), "")
    if reason != "error" and reason not in DROP_REASONS.get(stage, ()):
        raise ValueError(f"unknown drop reason {reason!r} for stage {stage!r}; add it to DROP_REASONS")
    row["status"] = STATUS_DROPPED
    row["drop_reason"] = reason
    row["drop_stage"] = stage
    if detail:
        row["drop_detail"] = detail[:500]
    return row
