"""The H.264 source quantiser (pipeline/source_qp.py) on real clips and x264 / ProRes copies of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import BuildConfig
from pipeline.media import ffmpeg
from pipeline.record import seed_row
from pipeline.source_qp import mean_block_qp
from pipeline.stages.normalize import Normalize

CLIP = "hdtf_WDA_AOC_en_8s.mp4"  # MPEG-4 part 2 (no H.264 QP of its own)


def _copy(shared_media: Path, media_cache: Path, name: str, *video: str) -> Path:
    dst = media_cache / f"qp_{name}.mp4"
    if not dst.exists():
        ffmpeg("-i", str(shared_media / "video_av" / CLIP), "-t", "2", *video, "-c:a", "aac", str(dst), timeout=120)
    return dst


@pytest.fixture(scope="module")
def copies(shared_media, media_cache) -> dict[str, Path]:
    x264 = ("-c:v", "libx264", "-pix_fmt", "yuv420p")
    return {
        "crf18": _copy(shared_media, media_cache, "crf18", *x264, "-crf", "18"),
        "crf30": _copy(shared_media, media_cache, "crf30", *x264, "-crf", "30"),
        "crf45": _copy(shared_media, media_cache, "crf45", *x264, "-crf", "45"),
        "crf45_veryfast": _copy(shared_media, media_cache, "crf45vf", *x264, "-preset", "veryfast", "-crf", "45"),
        "crf30_10bit": _copy(shared_media, media_cache, "crf30_10bit", "-c:v", "libx264", "-pix_fmt", "yuv420p10le",
                             "-crf", "30"),  # fmt: skip
    }


def test_qp_follows_the_encoders_quantiser(copies):
    qp = {k: mean_block_qp(p) for k, p in copies.items()}
    assert 15 < qp["crf18"] < 25 and qp["crf18"] < qp["crf30"] < qp["crf45"]  # measured: ~20, ~31, ~48
    assert qp["crf45"] > 42 and qp["crf45_veryfast"] > 42  # whatever the preset's deblocking does to the picture
    assert qp["crf30"] < BuildConfig().quality.max_source_qp < qp["crf45"]
    assert abs(qp["crf30_10bit"] - qp["crf30"]) < 4  # on the 8-bit scale (raw 10-bit QP reads 12 higher)


def test_other_codecs_and_unreadable_files_give_none(shared_media, media_cache, tmp_path):
    assert mean_block_qp(shared_media / "video_av" / CLIP) is None  # MPEG-4 part 2
    assert mean_block_qp(shared_media / "video_av" / "latentsync_demo1_ru_10s.mp4") is None  # HEVC
    prores = media_cache / "qp_prores.mov"
    if not prores.exists():
        ffmpeg("-i", str(shared_media / "video_av" / CLIP), "-t", "1", "-c:v", "prores_ks", "-an", str(prores))
    assert mean_block_qp(prores) is None
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 1000)
    assert mean_block_qp(junk) is None
    assert mean_block_qp(tmp_path / "missing.mp4") is None


def test_normalize_records_the_source_qp_of_h264_sources_only(copies, shared_media, tmp_path):
    cfg = BuildConfig(out=str(tmp_path))
    [h264] = Normalize(cfg)({**seed_row("en", "h264", str(copies["crf45"])), "video_path": str(copies["crf45"])})
    assert h264["status"] == "ok" and h264["source_qp"] > 42
    src = shared_media / "video_av" / "latentsync_demo1_ru_10s.mp4"
    [hevc] = Normalize(cfg)({**seed_row("ru", "hevc", str(src)), "video_path": str(src)})
    assert hevc["status"] == "ok" and "source_qp" not in hevc
