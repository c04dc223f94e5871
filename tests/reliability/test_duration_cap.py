"""Case 4: `max_duration_s` holds for containers that state no duration (written to a pipe, a live recording):
the download stage reads the packets up to the cap + 1 s, and normalize never decodes past it."""

from __future__ import annotations

import subprocess

import pytest

from pipeline.config import BuildConfig, DownloadConfig
from pipeline.media import probe, stream_duration
from pipeline.record import seed_row
from pipeline.stages.normalize import Normalize
from tests.reliability.runner import build, fast_config, index_rows, manifest


@pytest.fixture(scope="module")
def piped_mkv(shared_media, media_cache):
    """A real talking clip looped to 32 s and muxed to a pipe: the mkv has no duration in its header."""
    out = media_cache / "reliab_piped_32s.mkv"
    if not out.exists():
        src = shared_media / "video_av" / "hdtf_WDA_AOC_en_8s.mp4"
        enc = subprocess.Popen(["ffmpeg", "-nostdin", "-loglevel", "error", "-stream_loop", "3", "-i", str(src),
                                "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-f", "matroska", "-"],
                               stdout=subprocess.PIPE)  # fmt: skip
        out.write_bytes(enc.communicate(timeout=300)[0])
    assert probe(out)["duration_s"] == 0.0, "the container must state no duration for this test"
    return out


def test_packets_give_the_duration_up_to_the_cap(piped_mkv):
    assert stream_duration(piped_mkv, 100.0) == pytest.approx(32.2, abs=0.3)
    assert 10.0 < stream_duration(piped_mkv, 10.0) < 12.0  # stops reading after cap + 1 s


def test_build_drops_a_stream_without_duration_as_too_long(tmp_path, piped_mkv, shared_media):
    ok = shared_media / "video_av" / "vexpress_AOC_en_4s.mp4"
    manifests = manifest(tmp_path / "manifests", {"piped": str(piped_mkv), "short": str(ok)})
    config = fast_config(tmp_path, "download: {max_duration_s: 20}\n")
    proc = build(tmp_path / "out", manifests, config=config)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = index_rows(tmp_path / "out")
    piped = [r for r in rows if r["video_key"] == "en-piped"]
    assert len(piped) == 1 and piped[0]["drop_reason"] == "too_long", piped  # one row, not one per clip
    assert piped[0]["duration_s"] > 20
    assert [r["status"] for r in rows if r["video_key"] == "en-short"] == ["ok"]


def test_normalize_stops_decoding_past_the_cap(tmp_path, piped_mkv):
    """Even when download is bypassed (or the container lies), normalize never decodes more than cap + 1 s."""
    cfg = BuildConfig(out=str(tmp_path / "out"), download=DownloadConfig(max_duration_s=10.0))
    row = seed_row("en", "piped", str(piped_mkv)) | {"video_path": str(piped_mkv)}
    [out] = Normalize(cfg)(row)
    assert out["status"] == "dropped" and out["drop_reason"] == "too_long" and out["drop_stage"] == "normalize"
    assert not list((tmp_path / "out" / "work").rglob("*.mkv"))  # nothing half-made left behind
