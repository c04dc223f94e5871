"""Download against a real HTTP server on 127.0.0.1 with injected faults, local sources, search fan-out."""

from __future__ import annotations

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipeline import faults
from pipeline.config import BuildConfig, DownloadConfig, RetryConfig, load_config
from pipeline.media import ffmpeg, probe
from pipeline.record import drop, make_key, seed_row
from pipeline.stages.download import Download

STALL_S = 15.0
SOCKET_TIMEOUT_S = 1.0


@pytest.fixture(scope="session")
def served_mp4(talking_clip, media_cache) -> Path:
    """3 s of a real talking clip as a web-style mp4 (H.264 + AAC, moov first)."""
    out = media_cache / "served_talking_3s.mp4"
    if not out.exists():
        ffmpeg("-t", "3", "-i", str(talking_clip.path), "-c:v", "libx264", "-preset", "veryfast",
               "-pix_fmt", "yuv420p", "-c:a", "aac", "-movflags", "+faststart", str(out), timeout=120)  # fmt: skip
    return out


@pytest.fixture()
def server(served_mp4):
    """A real HTTP server: /ok*.mp4 works, /missing 404, /error 500, /truncated cuts the body, /stall hangs."""
    body = served_mp4.read_bytes()
    stop = threading.Event()
    hits: dict[str, int] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

        def _head(self, code: int, length: int) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(length))
            self.end_headers()

        def do_HEAD(self):
            self._head(200 if self.path.startswith("/ok") else 404, len(body))

        def do_GET(self):
            hits[self.path] = hits.get(self.path, 0) + 1
            if self.headers.get("Cookie"):
                hits[f"cookie {self.path}"] = self.headers["Cookie"]
            if self.path.startswith("/ok"):
                self._head(200, len(body))
                self.wfile.write(body)
            elif self.path == "/page.html":  # a results page: two talks, found by yt-dlp's HTML5 extractor
                page = b'<html><title>two talks</title><video src="ok_p1.mp4"></video><video src="ok_p2.mp4"></video>'
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)
            elif self.path == "/missing.mp4":
                self.send_error(404)
            elif self.path == "/error.mp4":
                self.send_error(500)
            elif self.path == "/truncated.mp4":
                self._head(200, len(body))
                self.wfile.write(body[: len(body) // 3])
                self.wfile.flush()
                self.close_connection = True
            elif self.path == "/stall.mp4":
                stop.wait(STALL_S)  # longer than the client's socket timeout
                if not stop.is_set():
                    self._head(200, len(body))
                    self.wfile.write(body)
            else:
                self.send_error(404)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    stop.set()
    httpd.shutdown()
    httpd.server_close()


def _cfg(tmp_path: Path, attempts: int = 2, **download) -> BuildConfig:
    dl = DownloadConfig(retries=1, socket_timeout_s=SOCKET_TIMEOUT_S, **download)
    retry = RetryConfig(attempts=attempts, backoff_s=0.1)
    return BuildConfig(out=str(tmp_path / "out"), langs=["en"], download=dl, retry=retry)


def test_http_success_gives_playable_file_in_work_dir_and_reuses_it(tmp_path, server, served_mp4, caplog):
    base, hits = server
    cfg = _cfg(tmp_path / "50%(title)s")  # '%' in the out dir is a path, not a yt-dlp template field
    row = seed_row("en", "okvid", f"{base}/ok.mp4", license="cc-by")
    [out] = Download(cfg)(row)
    assert out["status"] == "ok", out
    path = Path(out["video_path"])
    assert path.parent == cfg.work_dir / "en" / out["video_key"] and path.name == "source.mp4"
    info = probe(path)
    assert info["has_video"] and info["has_audio"]
    assert out["duration_s"] == pytest.approx(probe(served_mp4)["duration_s"], abs=0.05)
    assert path.read_bytes() == served_mp4.read_bytes()
    assert out["webpage_url"] == f"{base}/ok.mp4" and out["license"] == "cc-by"
    assert (cfg.work_dir / "download_archive.txt").read_text().strip()
    n_hits = hits["/ok.mp4"]
    # a rerun (no ledger marker yet) reuses the finished file: no new request
    [again] = Download(cfg)(seed_row("en", "okvid", f"{base}/ok.mp4"))
    assert again["status"] == "ok" and again["video_path"] == out["video_path"]
    assert hits["/ok.mp4"] == n_hits
    # work file deleted but the URL is in the download archive: fetched again rather than lost
    path.unlink()
    with caplog.at_level(logging.INFO, logger="pipeline.stages.download"):
        [refetched] = Download(cfg)(seed_row("en", "okvid", f"{base}/ok.mp4"))
    assert "fetching again" in caplog.text
    assert refetched["status"] == "ok" and Path(refetched["video_path"]).read_bytes() == served_mp4.read_bytes()
    assert hits["/ok.mp4"] > n_hits


def test_http_404_is_a_permanent_drop(tmp_path, server):
    base, hits = server
    [out] = Download(_cfg(tmp_path))(seed_row("en", "bad", base + "/missing.mp4"))
    assert out["status"] == "dropped" and out["drop_reason"] == "download_failed", out
    assert out["drop_stage"] == "download" and "404" in out["drop_detail"]
    assert hits["/missing.mp4"] == 1  # not retried: the URL is bad
    assert not list((_cfg(tmp_path).work_dir / "en" / out["video_key"]).glob("source.*"))


@pytest.mark.parametrize("path", ["/error.mp4", "/truncated.mp4"])
def test_http_5xx_and_cut_transfers_are_retried_then_left_for_the_next_run(tmp_path, server, path):
    base, hits = server
    [out] = Download(_cfg(tmp_path, attempts=2))(seed_row("en", "bad", base + path))
    assert out["status"] == "retry_later" and out["drop_stage"] == "download", out
    assert {"/error.mp4": "500", "/truncated.mp4": "bytes"}[path] in out["drop_detail"]
    assert hits[path] >= 2  # tried again in this run
    work = _cfg(tmp_path).work_dir / "en" / out["video_key"]
    assert not [p for p in work.glob("source.*") if not p.name.endswith((".part", ".ytdl"))]


def test_cookies_are_sent_from_a_private_copy(tmp_path, server):
    """download.cookies: yt-dlp sends the signed-in session's cookies, and the user's file is not rewritten (yt-dlp
    saves its jar on exit; concurrent downloads would all write one file)."""
    base, hits = server
    jar = tmp_path / "cookies.txt"
    jar.write_text("# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t4102444800\tSID\tsigned-in-42\n")
    before = jar.read_bytes()
    [ok] = Download(_cfg(tmp_path, cookies=str(jar)))(seed_row("en", "withcookie", f"{base}/ok_cookie.mp4"))
    assert ok["status"] == "ok", ok
    assert hits["cookie /ok_cookie.mp4"] == "SID=signed-in-42"
    assert jar.read_bytes() == before
    with pytest.raises(ValueError, match="download.cookies"):
        load_config(None, out=str(tmp_path), download={"cookies": str(tmp_path / "absent.txt")})


def test_sleep_between_downloads_reaches_yt_dlp(tmp_path, server):
    """download.sleep_s: yt-dlp waits before the download (a lower bound on the time, never an upper one)."""
    base, hits = server
    t0 = time.monotonic()
    [ok] = Download(_cfg(tmp_path, sleep_s=3.0))(seed_row("en", "slow", f"{base}/ok_sleep.mp4"))
    assert ok["status"] == "ok" and hits["/ok_sleep.mp4"] >= 1
    assert time.monotonic() - t0 >= 3.0  # the same download without it: ~1-2 s here


def _youtube_refusal(kind: str) -> str:
    """The error yt-dlp's YouTube extractor raises when it refuses a session (its own wording and login hint)."""
    import yt_dlp
    from yt_dlp.extractor.youtube import YoutubeIE

    ie = YoutubeIE(yt_dlp.YoutubeDL({"quiet": True}))
    reason = {"bot": "Sign in to confirm you\u2019re not a bot", "limit": "This content isn't available, try again later"}[kind]
    if kind == "bot":
        reason = f"{reason}. {ie._youtube_login_hint}"
    else:
        reason += ". The current session has been rate-limited by YouTube for up to an hour."
    return f"ERROR: [youtube] abcdefghijk: {reason}"


@pytest.mark.parametrize("kind", ["bot", "limit"])
def test_a_session_the_site_refuses_leaves_the_video_for_the_next_run(tmp_path, monkeypatch, kind):
    """YouTube's bot check and rate limit refuse the machine's session, not the video: dropping would ledger every
    video of the batch as failed for good. They are left for the next run (retry_later) without retries now."""
    calls = []

    def refused(job, *args):
        calls.append(job["op"])
        return {"ok": False, "info": None, "error": _youtube_refusal(kind), "transient": False, "too_large": False,
                "too_long": ""}  # fmt: skip

    monkeypatch.setattr("pipeline.fetch.run_job", refused)
    stage = Download(_cfg(tmp_path, attempts=3))
    [out] = stage(seed_row("en", "yt", "https://www.youtube.com/watch?v=abcdefghijk"))
    assert out["status"] == "retry_later" and "download.cookies" in out["drop_detail"], out
    assert calls == ["download"]  # not retried in this run: more requests only extend a rate limit
    # the site is not asked again in this run, for its other videos and searches either; other sites are
    for source in ("https://youtu.be/bcdefghijkl", "ytsearch5:news anchor"):
        [later] = stage(seed_row("en", "yt2", source))
        assert later["status"] == "retry_later" and "not asked again" in later["drop_detail"], later
    assert calls == ["download"]
    stage(seed_row("en", "vimeo", "https://vimeo.com/12345"))
    assert calls == ["download", "download"]
    for permanent in ("Sign in to confirm your age. This video may be inappropriate for some users.",
                      "Private video. Sign in if you've been granted access to this video", "Video unavailable"):
        assert not faults.SESSION_REFUSED.search(permanent)


def test_stalled_server_times_out_within_bounds(tmp_path, server):
    base, _ = server
    t0 = time.monotonic()
    [out] = Download(_cfg(tmp_path, attempts=1))(seed_row("en", "stall", f"{base}/stall.mp4"))
    elapsed = time.monotonic() - t0
    assert out["status"] == "retry_later", out
    assert "timed out" in out["drop_detail"].lower()
    assert elapsed < STALL_S, f"took {elapsed:.1f} s: socket_timeout not applied"


def test_too_long_is_dropped(tmp_path, server):
    base, _ = server
    [out] = Download(_cfg(tmp_path, max_duration_s=1.0))(seed_row("en", "long", f"{base}/ok.mp4"))
    assert out["drop_reason"] == "too_long" and out["duration_s"] > 1.0


def test_local_sources(tmp_path, talking_clip):
    cfg = _cfg(tmp_path)
    [ok] = Download(cfg)(seed_row("en", "local", str(talking_clip.path)))
    assert ok["status"] == "ok" and ok["video_path"] == str(talking_clip.path.resolve())
    assert ok["duration_s"] == pytest.approx(talking_clip.duration_s, abs=0.05)
    [gone] = Download(cfg)(seed_row("en", "gone", str(tmp_path / "nope.mp4")))
    assert gone["drop_reason"] == "download_failed" and "not found" in gone["drop_detail"]
    [bad] = Download(cfg)(seed_row("en", "bad", "file:///etc/passwd"))
    assert bad["drop_reason"] == "unsupported_source"
    dropped = drop(seed_row("en", "x", "https://a.org/v"), "download_failed", "download")
    assert Download(cfg)(dict(dropped)) == [dropped]


def test_search_fans_out_skips_ledger_and_keeps_hostile_title_as_metadata(tmp_path, server, monkeypatch):
    """The search itself is faked (no internet); every result is really downloaded from the local server."""
    base, _ = server
    cfg = _cfg(tmp_path, max_duration_s=100.0)
    evil = "$(touch /tmp/pwned); `reboot` ../../etc/passwd"
    entries = [
        {"id": "vidA-1_x", "url": f"{base}/ok_a.mp4", "title": evil, "duration": 3.0},
        {"id": "Done/../1", "url": f"{base}/ok_b.mp4", "title": "finished before"},
        {"id": "vidC", "url": f"{base}/missing.mp4", "title": "gone"},
        {"id": "vidD", "url": f"{base}/ok_d.mp4", "title": "a lecture", "duration": 4000.0},
        {"id": "vidE", "url": "file:///etc/passwd", "title": "local trick"},
        {"id": "vidA-1_x", "url": f"{base}/ok_a.mp4", "title": "duplicate"},
    ]
    queries: list[str] = []

    def fake_search(self, query, key):
        queries.append(query)
        return entries

    monkeypatch.setattr(Download, "search", fake_search)
    ledger = Path(cfg.out) / "ledger"
    ledger.mkdir(parents=True)
    (ledger / f"{make_key('en', 'Done/../1')}.json").write_text("{}")
    rows = Download(cfg)(seed_row("en", "q", "ytsearch50:news anchor"))
    assert queries == [f"ytsearch{cfg.download.max_results_per_query}:news anchor"]  # capped
    by_id = {r["source_id"]: r for r in rows}
    assert list(by_id) == ["vidA-1_x", "vidC", "vidD", "vidE"]
    a = by_id["vidA-1_x"]
    key = make_key("en", "vidA-1_x")
    assert a["status"] == "ok" and a["title"] == evil and a["key"] == a["video_key"] == key
    assert key.startswith("en-vida-1_x_") and "touch" not in key
    assert Path(a["video_path"]).parent == cfg.work_dir / "en" / key
    assert probe(a["video_path"])["has_video"] and a["search_query"] == "ytsearch50:news anchor"
    assert by_id["vidC"]["drop_reason"] == "download_failed"
    assert by_id["vidD"]["drop_reason"] == "too_long"
    assert by_id["vidE"]["drop_reason"] == "unsupported_source"
    assert not Path("/tmp/pwned").exists()


def test_search_listing_by_real_yt_dlp_fans_out_into_downloaded_videos(tmp_path, server, monkeypatch):
    """yt-dlp lists a real (local) results page flat; each entry becomes its own downloaded video row."""
    base, hits = server
    real_search = Download.search
    monkeypatch.setattr(Download, "search", lambda self, query, key: real_search(self, f"{base}/page.html", key))
    cfg = _cfg(tmp_path)
    rows = Download(cfg)(seed_row("en", "q", "ytsearch2:two talks"))
    assert [r["source_id"] for r in rows] == ["page-1", "page-2"]
    assert [r["key"] for r in rows] == ["en-page-1", "en-page-2"] == [r["video_key"] for r in rows]
    for r, name in zip(rows, ("ok_p1.mp4", "ok_p2.mp4"), strict=True):
        assert r["status"] == "ok" and r["source"] == f"{base}/{name}", r
        assert Path(r["video_path"]).parent == cfg.work_dir / "en" / r["key"]
        assert probe(r["video_path"])["duration_s"] > 2.5
    # a URL row that is a playlist fetches its first video only
    before = dict(hits)
    [one] = Download(cfg)(seed_row("en", "pagevid", f"{base}/page.html"))
    assert one["status"] == "ok" and probe(one["video_path"])["has_video"]
    assert hits["/ok_p1.mp4"] > before["/ok_p1.mp4"] and hits["/ok_p2.mp4"] == before["/ok_p2.mp4"]


# ---- which of a site's formats is fetched: yt-dlp's own selector on a format list shaped like YouTube's ----------
_CODECS = {"av1": ("av01.0.08M.08", "mp4"), "vp9": ("vp09.00.40.08", "webm"), "h264": ("avc1.640028", "mp4")}
_SHORT_SIDES = (144, 240, 360, 480, 720, 1080, 1440)


def _listing(portrait: bool, codecs_at: dict[str, tuple[int, ...]]) -> dict:
    """An extractor result as YouTube's lists it: video-only streams per size and codec, two audio-only streams."""
    formats = []
    for codec, sides in codecs_at.items():
        vcodec, ext = _CODECS[codec]
        for side in sides:
            long = round(side * 16 / 9 / 2) * 2
            w, h = (side, long) if portrait else (long, side)
            # bitrates as YouTube's: AV1 < VP9 < H.264 at one size
            tbr = side * {"av1": 1.5, "vp9": 2.0, "h264": 2.8}[codec]
            formats.append({"format_id": f"{codec}-{side}", "url": f"https://media.invalid/{codec}-{side}",
                            "ext": ext, "vcodec": vcodec, "acodec": "none", "width": w, "height": h, "fps": 30,
                            "tbr": tbr, "protocol": "https"})  # fmt: skip
    formats += [{"format_id": "251", "url": "https://media.invalid/251", "ext": "webm", "vcodec": "none",
                 "acodec": "opus", "abr": 130, "asr": 48000, "protocol": "https"},
                {"format_id": "140", "url": "https://media.invalid/140", "ext": "m4a", "vcodec": "none",
                 "acodec": "mp4a.40.2", "abr": 129, "asr": 44100, "protocol": "https"}]  # fmt: skip
    return {"id": "abcdefghijk", "title": "t", "extractor": "youtube", "extractor_key": "Youtube",
            "webpage_url": "https://www.youtube.com/watch?v=abcdefghijk", "formats": formats}  # fmt: skip


def _picked(cfg: BuildConfig, listing: dict) -> tuple[dict, dict]:
    """(video format, audio format) that the download stage's options make yt-dlp choose (nothing is fetched)."""
    import yt_dlp

    with yt_dlp.YoutubeDL(Download(cfg)._opts(simulate=True)) as ydl:
        info = ydl.process_ie_result(listing, download=False)
    video, audio = info["requested_formats"]
    return video, audio


ALL = {codec: _SHORT_SIDES for codec in _CODECS}


@pytest.mark.parametrize("portrait", [False, True], ids=["landscape", "portrait"])
def test_default_format_is_the_full_1080_short_side(tmp_path, portrait):
    video, audio = _picked(_cfg(tmp_path), _listing(portrait, ALL))
    assert min(video["width"], video["height"]) == 1080 and max(video["width"], video["height"]) == 1920
    assert audio["acodec"] != "none"
    video, _ = _picked(_cfg(tmp_path, format_sort="res:1080,vcodec:h264"), _listing(portrait, ALL))
    assert video["vcodec"].startswith("avc1") and min(video["width"], video["height"]) == 1080


def test_a_portrait_video_is_not_fetched_at_a_third_of_its_pixels(tmp_path):
    """What the default guards: a height cap reads a 1080x1920 portrait video as "1920p" and took its 480x854."""
    old = _cfg(tmp_path, format="bv*[height<=1080]+ba/b[height<=1080]/b", format_sort="")
    video, _ = _picked(old, _listing(True, ALL))
    assert (video["width"], video["height"]) == (480, 854)
    video, _ = _picked(_cfg(tmp_path), _listing(True, ALL))
    assert (video["width"], video["height"]) == (1080, 1920)


def test_size_comes_before_codec(tmp_path):
    """H.264 asked for but only up to 720p: the 1080p VP9 stream is fetched, not the smaller H.264 one; nothing
    of 1080 or less: the smallest larger one."""
    h264 = _cfg(tmp_path, format_sort="res:1080,vcodec:h264")
    video, _ = _picked(h264, _listing(False, {"h264": (360, 720), "vp9": (360, 720, 1080)}))
    assert video["vcodec"].startswith("vp09") and video["height"] == 1080
    video, _ = _picked(_cfg(tmp_path), _listing(False, {"vp9": (1440, 2160), "h264": (2160,)}))
    assert video["height"] == 1440


def _with_hdr(listing: dict, sides: tuple[int, ...] = _SHORT_SIDES) -> dict:
    """The listing plus VP9 profile-2 HDR10 streams at `sides`, as YouTube adds for an HDR upload."""
    for side in sides:
        listing["formats"].append({"format_id": f"hdr-{side}", "url": f"https://media.invalid/hdr-{side}",
                                   "ext": "webm", "vcodec": "vp09.02.51.10.01.09.16.09.00", "acodec": "none",
                                   "width": round(side * 16 / 9 / 2) * 2, "height": side, "fps": 30,
                                   "tbr": side * 3.0, "protocol": "https", "dynamic_range": "HDR10"})  # fmt: skip
    return listing


def test_sdr_is_taken_where_hdr_is_offered_too(tmp_path):
    """yt-dlp's own order takes the HDR10 stream; the default takes SDR at the same size, and an HDR-only video
    still comes (normalize tone-maps it)."""
    video, _ = _picked(_cfg(tmp_path, format_sort="res:1080"), _with_hdr(_listing(False, ALL)))
    assert video["dynamic_range"] == "HDR10"
    video, _ = _picked(_cfg(tmp_path), _with_hdr(_listing(False, ALL)))
    assert video["dynamic_range"] == "SDR" and video["height"] == 1080
    video, _ = _picked(_cfg(tmp_path), _with_hdr(_listing(False, {"vp9": (360,)}), (360, 720, 1080)))
    assert video["dynamic_range"] == "HDR10" and video["height"] == 1080


def test_empty_format_sort_leaves_yt_dlps_own_order(tmp_path):
    video, _ = _picked(_cfg(tmp_path, format_sort=""), _listing(False, ALL))
    assert video["height"] == 1440


def test_the_original_audio_track_is_taken_over_a_dub(tmp_path):
    """YouTube lists dubbed audio tracks (auto-dubs among them) beside the original, marked by its language
    preference; a dub is out of sync with the lips by construction, so the original must come even when a dub has
    the higher bitrate."""
    listing = _listing(False, ALL)
    listing["formats"] = [f for f in listing["formats"] if f["vcodec"] != "none"] + [
        {"format_id": "251-dub-es", "url": "https://media.invalid/es", "ext": "webm", "vcodec": "none",
         "acodec": "opus", "abr": 160, "asr": 48000, "protocol": "https", "language": "es", "language_preference": -1},
        {"format_id": "251-orig-en", "url": "https://media.invalid/en", "ext": "webm", "vcodec": "none",
         "acodec": "opus", "abr": 128, "asr": 48000, "protocol": "https", "language": "en", "language_preference": 10},
    ]  # fmt: skip
    _, audio = _picked(_cfg(tmp_path), listing)
    assert audio["format_id"] == "251-orig-en"
