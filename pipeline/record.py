"""The row contract: one flat dict per item that every stage only adds to.

Keys, documented once here (stage that adds them, in pipeline order):

seed       key, video_key, lang_expected, source, source_id, status="ok", drop_reason="", drop_stage="",
           source_public (what a sample's .json calls the source: no host path; pipeline/manifest.py)
download   video_path, title, channel, duration_s, license, webpage_url
normalize  norm_path (25 fps CFR H.264 + 16 kHz mono PCM in one .mkv), width, height, fps, audio_path (.wav)
shots      -> one row per scene piece (<= shots.max_take_s): key="<video_key>-s0003", shot_index, start_s, end_s,
           n_clips (pieces of the video)
faces      -> one row per window (<= shots.max_clip_s) of each take (pipeline/takes.py): key="<take_id>[-wNNN]",
           start_s/end_s narrowed to the window, take_id, take_index, take_windows, prev_key, take_s,
           take_coverage (the presence rule's share, per take);
           track_path (.npz: frames, boxes, landmarks, pose, mouth_open, id_embedding), crop_path (.mp4),
           face_px, n_faces, face_coverage, yaw_abs_mean, pitch_abs_mean, detector,
           face_detail_px, face_blockiness, face_native_px (the face at source resolution: face_quality.py)
language   lang, lang_prob, lang_top3 (json), speech_ratio, n_speakers (-1 = check did not run), transcript
           speaker_check ("pyannote" | "not_run"), lang_model (which Whisper weights)
sync       av_offset_frames, sync_conf, sync_scorer, clip_wav_path (.wav), sync_shift_frames (audio moved by)
quality    sharpness, brightness, yaw_abs_max, pitch_abs_max
sink       (the Commit stage) write_failed drops; the ledger entry also holds each clip's fingerprints
finalize   (pipeline/finalize.py) re-decides the score gates (pipeline/gates.py; rebuild_gate names a loosened
           hard gate the row might now pass), then duplicate_of (drop "duplicate"), identity_id, split
           (train | val | test), shard (path under shards/ of the kept clip's shard, "" for drops)

Rows carry paths to media on storage every Ray node can reach, never decoded frames or large arrays.
A dropped row keeps status="dropped", drop_reason and drop_stage; later stages pass it through untouched.
A row that failed transiently (pipeline/faults.py: disk, network, timeout, memory, a killed worker) after its
retries has status="retry_later", drop_stage and drop_detail: it is no drop, so the sink neither ledgers nor
indexes its video and lists it in <out>/pending.json; the next run processes the video again.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

Row = dict[str, Any]

STATUS_OK = "ok"
STATUS_DROPPED = "dropped"
STATUS_RETRY = "retry_later"

# Every drop reason a stage may record, by stage: the funnel in stats.json and the report follow this order.
DROP_REASONS: dict[str, tuple[str, ...]] = {
    "download": ("download_failed", "unsupported_source", "too_long", "too_large"),
    "normalize": ("corrupt_video", "no_audio", "no_video", "too_long"),
    "shots": ("too_short", "no_shots"),
    "faces": ("no_face", "multi_face", "small_face", "track_broken", "extreme_pose"),
    "language": ("lang_mismatch", "lang_uncertain", "no_speech", "multi_speaker"),
    "sync": ("out_of_sync",),
    "quality": ("blurry", "extreme_pose", "too_dark"),
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
