"""Build configuration: one dataclass per stage plus BuildConfig; YAML overrides; saved next to the output.

Defaults follow ../shared/DESIGN.md section 6 (thresholds from the field).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

LANGS: tuple[str, ...] = ("en", "zh", "es", "fr", "de", "ja", "ko", "ru", "pt", "ar")
SAMPLE_MANIFESTS = str(Path(__file__).resolve().parents[1] / "manifests" / "sample")


def default_models_dir() -> str:
    return os.environ.get("TFW_MODELS_DIR", str(Path.home() / ".cache" / "talkingface-wild" / "models"))


@dataclass
class DownloadConfig:
    max_duration_s: float = 3600.0  # also checked on the decoded stream when the container states no duration
    max_bytes: int = 4 * 2**30  # per download; a bigger file is dropped "too_large" and its partial file removed
    deadline_s: float = 1800.0  # wall clock per download (a server dripping bytes): then retry_later, partial removed
    retries: int = 3
    socket_timeout_s: float = 30.0
    max_results_per_query: int = 20  # for ytsearchN: sources
    rate_limit: str = ""  # yt-dlp ratelimit, e.g. "5M"; empty = none
    format: str = "bv*+ba/b"
    # yt-dlp's -S fields, comma-separated (empty: yt-dlp's own order). `res` is the short side, so a 1080x1920
    # portrait video comes at full size (a [height<=1080] filter took its 480x854); `hdr:sdr` takes the SDR
    # stream where an HDR one is offered too (yt-dlp's own order takes HDR10; an HDR-only video is tone-mapped by
    # normalize). The codec is left to yt-dlp: the pipeline costs the same CPU on H.264, VP9 or AV1
    # (benchmarks/bench_source_codecs.py); "...,vcodec:h264" buys the source-quantiser gate for ~1.8x VP9's bytes
    format_sort: str = "res:1080,hdr:sdr"
    # a Netscape cookies.txt of a signed-in browser session, for sites that refuse anonymous sessions (YouTube's
    # "confirm you're not a bot", age gates); each download reads a private copy, the file is never written
    cookies: str = ""
    # seconds yt-dlp waits before each download (up to twice that, at random) and 0.75 s between its requests: what
    # YouTube's rate-limit message asks for (yt-dlp's `-t sleep`); per worker process, 0 = none
    sleep_s: float = 0.0
    refused_pause_s: float = 3600.0  # after a site refuses the session (bot check, rate limit): its other sources
    # are left for the next run without asking it again for this long (YouTube: "rate-limited for up to an hour")


@dataclass
class NormalizeConfig:
    """Frame rate and sample rate are the record's constants (pipeline.record.FPS, SAMPLE_RATE), not settings."""

    crf: int = 18
    max_short_side: int = 1080  # downscale so the shorter side is at most this (portrait keeps its faces)
    timeout_s: float = 1800.0
    preset: str = "superfast"  # x264 preset of norm.mkv: see benchmarks/RESULTS_ingest.md (speed vs size)
    # False: no video re-encode, later stages decode the source through the timeline filter (pipeline/norm_video.py);
    # True: write norm.mkv (25 fps CFR H.264) first, for storage where the source is slow to seek or read again
    reencode: bool = False


@dataclass
class ShotsConfig:
    threshold: float = 3.0  # PySceneDetect AdaptiveDetector's adaptive_threshold
    min_scene_s: float = 0.6
    min_clip_s: float = 2.0
    max_clip_s: float = 20.0  # longest window (clip) of a take; longer takes are cut into consecutive windows
    max_take_s: float = 300.0  # longest take (one tracked speaker, one shot); longer scenes are cut here
    trim_s: float = 0.5  # trimmed at each cut
    # a cut must change the picture: grey 16x16 thumbnails either side correlating >= this are one shot (a
    # compression pop); also the "different pictures" test of dissolves (pipeline/transitions.py)
    same_picture_ncc: float = 0.8
    dissolve_s: float = 1.0  # crossfades of about this length are cuts too (at their middle); 0 = off
    # fan-out: a video's consecutive clips travel together up to this many seconds; a longer video becomes several
    # units of work for the clip stages, committed as one video (pipeline/ledger_parts.py)
    part_s: float = 120.0


@dataclass
class FacesConfig:
    backend: str = "auto"  # auto | insightface | mtcnn | yunet | dlib | blazeface | blazeface_full
    detect_fps: float = 5.0
    min_det_score: float = 0.5
    iou_link: float = 0.5
    max_missed_frames: int = 25
    min_presence: float = 0.9
    min_face_px: int = 256  # longest side of the tight detector box, normalised px (DESIGN: >= 256 for 512² crops)
    # smallest face the detector looks for (normalised px; at most half of min_face_px). Not tied to the gate, so a
    # face's measured size does not move with min_face_px and pipeline.select decides as a rebuild would.
    detect_min_px: int = 112
    crop_size: int = 512
    crop_padding: float = 0.4
    smooth_window: int = 5
    insightface_pack: str = "buffalo_l"  # <models_dir>/insightface/<pack>/ (backend auto|insightface)
    detect_max_side: int = 640  # frames are downsized to this longest side for detection only


@dataclass
class LanguageConfig:
    whisper: str = "auto"  # auto | path to a faster-whisper (CTranslate2) dir or openai-whisper .pt
    min_lang_prob: float = 0.7
    min_speech_ratio: float = 0.3
    transcribe: bool = False
    diarization: str = "auto"  # auto | off | path to a pyannote checkpoint dir
    batch_size: int = 8  # clips per Whisper language-ID pass (clips of one video are batched)


@dataclass
class SyncConfig:
    scorer: str = "auto"  # auto (SyncNet weights if present, else fused) | syncnet | fused | energy
    prior: str = ""  # the fused scorer's audio->mouth prior (.npz); empty = the one shipped in pipeline/models/
    # the prior (.npz) the fused scorer takes its confidence from: empty = the one on Whisper-encoder frames shipped
    # in pipeline/models/ (models/sync_whisper.py; it separates dubs better, RESULTS_sync K); "none" = from `prior`
    conf_prior: str = ""
    search_frames: int = 15
    max_offset_frames: int = 6
    min_conf: float = 3.0
    # move the kept clip's audio to offset 0: auto = with scorers trusted for absolute offsets (SyncNet, energy),
    # always = with any scorer, never = keep the audio as it is
    realign: str = "auto"


@dataclass
class QualityConfig:
    # native-resolution face measures from the faces stage (pipeline/face_quality.py; benchmarks/RESULTS.md)
    min_face_detail_px: float = 64.0  # effective resolution of the face; below = blurry (defocus, blur, upscale)
    max_blockiness: float = 1.25  # steps on the 8-px block grid vs elsewhere; above = blurry (heavy compression)
    # the H.264 source's mean block QP (pipeline/source_qp.py; 8-bit scale): the sample's sources read 15-26, x264
    # CRF-45 copies 45-49 at any preset; above = blurry (the picture measures miss a well-deblocked encode)
    max_source_qp: float = 40.0
    min_sharpness: float = 20.0  # variance of the Laplacian on the crop: only for rows without the native measures
    min_brightness: float = 30.0
    # share of the clip's frames that repeat the frame before (the 25 fps timeline filling a slower source, a slow
    # source stored at a higher rate, a frozen picture; pipeline/stages/faces.py repeated_frames): 15 fps reads
    # 0.40, 15 fps stored at 30 0.39, 20 fps 0.20, 24 fps 0.04; the clips of ../shared/media 0-0.22 (RESULTS.md);
    # above = low_frame_rate (stuttering lips to learn from)
    max_frame_repeat: float = 0.3
    # p95 - p5 of the inner-lip gap / face height over the clip: a still photo over speech moves it by landmark
    # jitter (0.004-0.006), every talking clip of ../shared/media by >= 0.058 (benchmarks/RESULTS.md, lip motion)
    min_mouth_range: float = 0.02
    # the one pose gate: the largest |yaw| / |pitch| over the clip's frames (pipeline/stages/quality.py)
    max_abs_yaw: float = 45.0
    max_abs_pitch: float = 35.0


@dataclass
class SinkConfig:
    shard_max_bytes: int = 1_000_000_000
    shard_max_count: int = 1000


@dataclass
class RetryConfig:
    """Transient failures (pipeline/faults.py): disk full, timeouts, network, memory, killed workers."""

    attempts: int = 3  # tries per item in one run; still failing -> retry_later (not ledgered: the next run retries)
    backoff_s: float = 2.0  # sleep before the second try, doubled each time
    max_backoff_s: float = 30.0
    worker_crashes: int = 3  # Ray reruns of a task whose worker died (OOM-killed, crashed); then the run stops


@dataclass
class IdentityConfig:
    method: str = "auto"  # auto (agglomerative up to max_agglomerative takes, else dbscan) | agglomerative | dbscan
    threshold: float = 0.05  # cosine distance, average linkage, dlib 128-D (benchmarks/RESULTS_identity.md)
    dbscan_eps: float = 0.05  # cosine distance, single linkage (dbscan), dlib 128-D
    threshold_512: float = 0.6  # the same for ArcFace 512-D (uncalibrated here: no insightface pack offline)
    dbscan_eps_512: float = 0.5
    max_agglomerative: int = 20000  # the agglomerative path holds an n x n distance matrix


@dataclass
class SplitsConfig:
    train: float = 0.8  # share of identities per split (by a hash of the identity id; no identity in two splits)
    val: float = 0.1
    test: float = 0.1
    seed: str = "tfw"  # changes which identities land where


@dataclass
class DedupConfig:
    enabled: bool = True
    max_hamming: int = 12  # bits of 64 for two pHash samples to match
    min_match: float = 0.7  # share of overlapping samples that must match
    min_overlap: float = 0.5  # share of the later clip that must overlap the kept one
    max_audio_ber: float = 0.25  # audio fingerprint bit error rate (re-encodes ~0.04, other speech ~0.47)
    max_id_dist: float = 0.1  # identity cosine distance (same footage ~0.01)
    max_bucket: int = 500


@dataclass
class BuildConfig:
    out: str = "out"
    manifests: str = SAMPLE_MANIFESTS
    langs: list[str] = field(default_factory=lambda: list(LANGS))
    models_dir: str = field(default_factory=default_models_dir)
    limit: int = 0  # max source rows per language (0 = all)
    num_gpus: float = 0.0  # per model actor; 0 = CPU
    actors: int = 0  # actors per model stage; 0 = autoscale from 1 to the stage's share of the cluster
    download: DownloadConfig = field(default_factory=DownloadConfig)
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    shots: ShotsConfig = field(default_factory=ShotsConfig)
    faces: FacesConfig = field(default_factory=FacesConfig)
    language: LanguageConfig = field(default_factory=LanguageConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    sink: SinkConfig = field(default_factory=SinkConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    splits: SplitsConfig = field(default_factory=SplitsConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)

    @property
    def work_dir(self) -> Path:
        return Path(self.out) / "work"


# Settings that were removed: a config that still sets one is told why, not just "unknown setting".
REMOVED: dict[str, str] = {
    "normalize.fps": "the frame rate is a constant of the record contract (pipeline.record.FPS = 25)",
    "normalize.sample_rate": "the sample rate is a constant of the record contract (pipeline.record.SAMPLE_RATE = 16000)",
    "shots.detector": "it was read by nothing: the shots stage always uses PySceneDetect's AdaptiveDetector",
    "faces.max_abs_yaw": "the one pose gate is quality.max_abs_yaw (largest |yaw| over the clip's frames)",
    "faces.max_abs_pitch": "the one pose gate is quality.max_abs_pitch (largest |pitch| over the clip's frames)",
}


def merge_dataclass(obj: Any, data: dict[str, Any], where: str, _section: str = "") -> Any:
    """Apply a (YAML) mapping onto nested dataclasses in place; unknown keys raise naming where they were."""
    known = {f.name: f for f in fields(obj)}
    for name, value in data.items():
        if f"{_section}{name}" in REMOVED:
            raise ValueError(f"{where}: setting {name!r} was removed: {REMOVED[f'{_section}{name}']}; delete it")
        if name not in known:
            raise ValueError(f"{where}: unknown setting {name!r} (known: {', '.join(sorted(known))})")
        current = getattr(obj, name)
        if is_dataclass(current):
            if not isinstance(value, dict):
                raise ValueError(f"{where}.{name}: expected a mapping")
            merge_dataclass(current, value, f"{where}.{name}", f"{_section}{name}.")
        else:
            setattr(obj, name, tuple(value) if isinstance(current, tuple) else value)
    return obj


# A manifest folder's config.yaml comes with the data, from anyone: it may set the thresholds of the curation
# stages (numbers in these sections), nothing else. `out`, `models_dir`, model paths and backends, resource limits
# (actors, num_gpus, download limits, timeouts, retries, shard sizes) come from the command line or --config.
THRESHOLD_SECTIONS: tuple[str, ...] = ("shots", "faces", "language", "sync", "quality")
NOT_THRESHOLDS: frozenset[str] = frozenset({"faces.crop_size", "faces.detect_max_side", "faces.detect_fps",
                                            "language.batch_size"})  # fmt: skip


def untrusted_keys(data: dict[str, Any]) -> list[str]:
    """The dotted keys of a manifest folder's config that are not thresholds (so it may not set them)."""
    cfg, bad = BuildConfig(), []
    for section, value in data.items():
        if section not in THRESHOLD_SECTIONS or not isinstance(value, dict):
            bad.append(section)
            continue
        for name in value:
            if not hasattr(getattr(cfg, section), name):
                continue  # a typo: merge_dataclass names it as an unknown setting
            current = getattr(getattr(cfg, section), name)
            dotted = f"{section}.{name}"
            if isinstance(current, bool) or not isinstance(current, (int, float)) or dotted in NOT_THRESHOLDS:
                bad.append(dotted)
    return bad


def load_config(path: str | Path | None = None, *, trusted: bool = True, **overrides: Any) -> BuildConfig:
    """BuildConfig from defaults, then a YAML file, then keyword overrides (e.g. from the command line).

    `trusted=False` (a manifest folder's own config.yaml): only thresholds, see THRESHOLD_SECTIONS; any other key
    is refused with an error naming it, before anything is read or written."""
    cfg = BuildConfig()
    if path:
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
        bad = [] if trusted else untrusted_keys(data)
        if bad:
            raise ValueError(
                f"{path}: a manifest folder's config.yaml may set thresholds only ({', '.join(THRESHOLD_SECTIONS)}), "
                f"not {', '.join(bad)}: give those on the command line, or pass this file with --config to trust it"
            )
        merge_dataclass(cfg, data, str(path))
    merge_dataclass(cfg, {k: v for k, v in overrides.items() if v is not None}, "override")
    check_choices(cfg, str(path or "config"))
    return cfg


CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("sync", "scorer"): ("auto", "syncnet", "fused", "energy"),
    ("sync", "realign"): ("auto", "always", "never"),
    ("identity", "method"): ("auto", "agglomerative", "dbscan"),
}


def check_choices(cfg: BuildConfig, where: str) -> None:
    """Fail before any work starts (not inside a Ray actor later) when a setting names an unknown option or a
    file that is not there."""
    for (section, name), allowed in CHOICES.items():
        value = getattr(getattr(cfg, section), name)
        if value not in allowed:
            raise ValueError(f"{where}: {section}.{name} must be {' | '.join(allowed)}, got {value!r}")
    bad_sort = format_sort_errors(cfg.download.format_sort)
    if bad_sort:
        raise ValueError(f"{where}: download.format_sort: {bad_sort} (yt-dlp -S fields, comma-separated, e.g. "
                         "'res:1080,hdr:sdr')")  # fmt: skip
    if cfg.download.cookies and not Path(cfg.download.cookies).is_file():
        raise ValueError(f"{where}: download.cookies {cfg.download.cookies!r} is not a file (export a Netscape "
                         "cookies.txt from a signed-in browser, or leave it empty)")  # fmt: skip


def format_sort_fields(value: str) -> list[str]:
    """download.format_sort as the list yt-dlp takes (its `-S` string split at commas)."""
    return [f.strip() for f in value.split(",") if f.strip()]


def format_sort_errors(value: str) -> str:
    """What yt-dlp would refuse in a format_sort string (it raises for a malformed item on every video, so every
    download would drop) or silently ignore (an unknown field), '' when fine."""
    import re

    from yt_dlp.utils import FormatSorter

    bad = []
    for item in format_sort_fields(value):
        m = re.match(FormatSorter.regex, item)
        if m is None or not m.group("field"):
            bad.append(f"{item!r} is not FIELD, +FIELD, FIELD:LIMIT or FIELD~LIMIT")
        elif m.group("field").lower() not in FormatSorter.settings:
            bad.append(f"unknown field {m.group('field')!r} (known: {', '.join(sorted(FormatSorter.settings))})")
    return "; ".join(bad)


def save_config(cfg: BuildConfig, path: str | Path) -> None:
    from .index import write_atomic

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(Path(path), yaml.safe_dump(asdict(cfg), sort_keys=False).encode("utf-8"))


def replace(cfg: Any, **changes: Any) -> Any:
    return dataclasses.replace(cfg, **changes)
