"""Case 3: downloads are bounded (download.max_bytes, download.deadline_s) and transient HTTP faults are retried.

One real build against a real HTTP server on 127.0.0.1: 2 GiB of zeros served lazily as video/mp4 (with and
without a Content-Length), a server dripping 1 KiB every 2 s, two URLs that fail transiently first (503, 429, a
reset connection) and a plain good one. Nothing big is downloaded whole, no partial file stays, the drip is left
for the next run, and the flaky URLs end up kept like the good one.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.reliability.runner import FaultServer, build, fast_config, index_rows, last_line, manifest, pending

GIB = 1 << 30


@pytest.fixture()
def server(shared_media, media_cache):
    from pipeline.media import ffmpeg

    # three different people: one body under three URLs would be kept once (finalize drops duplicate footage)
    bodies = []
    for src in ("hdtf_WDA_AOC_en_8s.mp4", "hdtf_WDA_KatieHill_en_8s.mp4", "latentsync_demo3_en_20s.mp4"):
        clip = media_cache / f"reliab_served_3s_{Path(src).stem}.mp4"
        if not clip.exists():
            ffmpeg("-t", "3", "-i", str(shared_media / "video_av" / src), "-c:v", "libx264", "-preset", "veryfast",
                   "-pix_fmt", "yuv420p", "-c:a", "aac", "-movflags", "+faststart", str(clip), timeout=120)  # fmt: skip
        bodies.append(clip.read_bytes())
    srv = FaultServer()
    srv.zeros("/zeros_len.mp4", 2 * GIB, with_length=True)
    srv.zeros("/zeros_stream.mp4", 2 * GIB, with_length=False)
    srv.drip("/drip.mp4", every_s=2.0)
    srv.file("/ok.mp4", bodies[0])
    srv.flaky("/flaky_a.mp4", bodies[1], ["503", "429"])
    srv.flaky("/flaky_b.mp4", bodies[2], ["reset"])
    yield srv
    srv.close()


def test_size_cap_deadline_and_http_retries_in_one_build(tmp_path, server):
    names = ("zeros_len", "zeros_stream", "drip", "ok", "flaky_a", "flaky_b")
    manifests = manifest(tmp_path / "manifests", {n: f"{server.base}/{n}.mp4" for n in names})
    config = fast_config(tmp_path, "download: {max_bytes: 8000000, deadline_s: 25, socket_timeout_s: 5, retries: 1}\n"
                                   "retry: {attempts: 3, backoff_s: 0.05}\n")  # fmt: skip
    out = tmp_path / "out"
    t0 = time.monotonic()
    proc = build(out, manifests, config=config)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert pending(out) == ["en-drip"] and "1 videos left for the next run" in last_line(proc)

    rows = {r["video_key"]: r for r in index_rows(out)}
    assert rows["en-zeros_len"]["drop_reason"] == "too_large" and rows["en-zeros_stream"]["drop_reason"] == "too_large"
    assert "max_bytes" in rows["en-zeros_stream"]["drop_detail"]
    for key in ("en-ok", "en-flaky_a", "en-flaky_b"):
        assert rows[key]["status"] == "ok", rows[key]
    assert server.planned["/flaky_a.mp4"] == [] and server.planned["/flaky_b.mp4"] == []  # every fault was served
    assert server.sent["/zeros_len.mp4"] < 64 << 20 and server.sent["/zeros_stream.mp4"] < 64 << 20
    for key in ("en-zeros_len", "en-zeros_stream", "en-drip"):  # partial files removed
        assert not list((out / "work" / "en" / key).glob("source.*")), key
    # the drip was stopped at its deadline, not after its megabyte (512 s at 1 KiB / 2 s)
    assert server.sent["/drip.mp4"] < 100 * 1024
    print(f"build with a 2 GiB body, a drip and 3 transient HTTP faults: {elapsed:.1f} s")
