"""Normalize on real clips (VFR, 30 fps, portrait HEVC) and on corrupt / truncated / audio-less / video-less files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import BuildConfig, NormalizeConfig
from pipeline.face_video import clip_frames, sampled_frames
from pipeline.media import ffmpeg, iter_frames, probe, read_audio, read_frames
from pipeline.norm_video import chain, first_frame_size, hdr_input, then, timeline_filter
from pipeline.record import drop, seed_row
from pipeline.stages.normalize import Normalize


def _streams(path: str) -> list[dict]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", "-count_packets", "--", path],
        capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    return json.loads(out.stdout)["streams"]


def _row(path: Path, sid: str = "clip") -> dict:
    row = seed_row("en", sid, str(path))
    row["video_path"] = str(path)
    return row


def _timeline(row: dict, size: tuple[int, int] | None = None) -> np.ndarray:
    """Every frame of the row's video as the later stages decode it (through norm_vf when set), RGB."""
    w, h = size or (row["width"], row["height"])
    return np.stack(list(iter_frames(row["norm_path"], vf=chain(row, f"scale={w}:{h}" if size else None), size=(w, h))))


@pytest.mark.parametrize(
    "name,max_short_side,size",
    [
        ("retalking_face1_en.mp4", 1080, (700, 700)),  # variable frame rate (1350/61 avg)
        ("latentsync_demo1_ru_10s.mp4", 720, (720, 1280)),  # portrait 1080x1920 HEVC: short side capped
    ],
)
@pytest.mark.parametrize("reencode", [False, True])
def test_real_clip_becomes_25fps_cfr_and_16k_mono(tmp_path, shared_media, name, max_short_side, size, reencode):
    src = shared_media / "video_av" / name
    cfg = BuildConfig(out=str(tmp_path), normalize=NormalizeConfig(max_short_side=max_short_side, reencode=reencode))
    [row] = Normalize(cfg)(_row(src))
    assert row["status"] == "ok", row
    assert (row["width"], row["height"]) == size and row["fps"] == 25.0
    src_dur = probe(src)["duration_s"]
    assert abs(row["duration_s"] - src_dur) <= 0.1
    if reencode:
        assert Path(row["norm_path"]) == cfg.work_dir / "en" / row["video_key"] / "norm.mkv" and "norm_vf" not in row
        video, audio = _streams(row["norm_path"])
        assert video["codec_name"] == "h264" and video["pix_fmt"] == "yuv420p"
        assert video["r_frame_rate"] == "25/1" and video["avg_frame_rate"] == "25/1"
        assert abs(int(video["nb_read_packets"]) - round(src_dur * 25)) <= 2  # constant 25 fps over the whole clip
        assert audio["codec_name"] == "pcm_s16le" and audio["sample_rate"] == "16000" and audio["channels"] == 1
    else:  # no video written: the stages decode the source through the timeline filter
        assert row["norm_path"] == str(src) and row["norm_vf"].startswith("fps=25:start_time=0")
        assert not (cfg.work_dir / "en" / row["video_key"] / "norm.mkv").exists()
    frames = _timeline(row)
    assert frames.shape[1:] == (size[1], size[0], 3)
    assert abs(len(frames) - round(src_dur * 25)) <= 2  # constant 25 fps over the whole clip
    [wav] = _streams(row["audio_path"])
    assert wav["codec_name"] == "pcm_s16le" and wav["sample_rate"] == "16000" and wav["channels"] == 1
    a = read_audio(row["audio_path"])
    assert abs(len(a) / 16000 - src_dur) <= 0.1
    assert np.sqrt(np.mean(a**2)) > 0.01  # real speech, not silence
    assert not list(Path(row["audio_path"]).parent.glob(".*"))  # no temp files left behind


@pytest.mark.parametrize("stored,sar", [("256:512", "2"), ("640:512", "4/5")])  # stored size, SAR: shown 512x512
@pytest.mark.parametrize("reencode", [False, True])
def test_non_square_pixels_are_resampled_to_the_shown_shape(tmp_path, talking_clip, stored, sar, reencode):
    """A source whose pixels are not square (SD broadcast, HDV, a squeezed upload) is put on the timeline at the
    shape it is shown at: setsar=1 alone kept the stored pixels and squeezed the face (read as extreme_pose)."""
    src = tmp_path / "anamorphic.mp4"
    ffmpeg("-i", str(talking_clip.path), "-t", "2", "-vf", f"scale={stored},setsar={sar}", "-c:v", "libx264", "-crf",
           "16", "-c:a", "copy", str(src), timeout=120)  # fmt: skip
    cfg = BuildConfig(out=str(tmp_path / "out"), normalize=NormalizeConfig(reencode=reencode))
    [row] = Normalize(cfg)(_row(src))
    assert row["status"] == "ok", row
    assert (row["width"], row["height"]) == (512, 512)
    got = _timeline(row)[:10].astype(np.float32)
    want = np.stack(list(iter_frames(talking_clip.path, 0.0, 0.4, size=(512, 512))))[:10].astype(np.float32)
    assert got.shape == want.shape
    assert np.abs(got - want).mean() < 6.0  # the same picture after a squeeze and back (bicubic): ~2 grey levels
    [square] = Normalize(BuildConfig(out=str(tmp_path / "sq")))(_row(talking_clip.path))
    assert square["norm_vf"] == timeline_filter(NormalizeConfig().max_short_side)  # square sources: chain unchanged


def _combing(rgb: np.ndarray) -> float:
    """Mean |line - the mean of its neighbours|: interleaved fields of different moments make it large."""
    g = rgb.astype(np.float32).mean(axis=2)
    return float(np.abs(g[1:-1] - (g[:-2] + g[2:]) / 2).mean())


def test_interlaced_source_is_deinterlaced(tmp_path, shared_media):
    """Broadcast footage codes two fields a frame; decoded as it is, every moving edge combs in the crop. The test
    clip's fields are 10 frames apart (a real talking clip, woven with itself delayed), coded interlaced (tff)."""
    src = tmp_path / "interlaced.mp4"
    weave = ("[0:v]scale=360:640,setsar=1,split[a][b];[b]trim=start_frame=10,setpts=PTS-STARTPTS[d];"
             "[a][d]interleave,setpts=N/(50*TB),tinterlace=mode=interleave_top[v]")  # fmt: skip
    ffmpeg("-i", str(shared_media / "video_av" / "latentsync_demo1_ru_10s.mp4"), "-t", "3", "-filter_complex", weave,
           "-map", "[v]", "-map", "0:a", "-c:v", "libx264", "-flags", "+ildct+ilme", "-x264opts", "tff=1", "-crf",
           "16", "-r", "25", "-c:a", "copy", str(src), timeout=120)  # fmt: skip
    assert _streams(str(src))[0]["field_order"] == "tt"
    [row] = Normalize(BuildConfig(out=str(tmp_path / "out")))(_row(src))
    assert row["status"] == "ok", row
    assert (row["width"], row["height"]) == (360, 640)
    frames = _timeline(row)
    assert abs(len(frames) - 75) <= 1  # one frame per frame, not one per field
    as_coded = np.stack(list(iter_frames(src, size=(360, 640))))
    # measured: 2.7 after bwdif against 5.6 woven
    assert np.mean([_combing(f) for f in frames]) < 0.7 * np.mean([_combing(f) for f in as_coded])
    # bwdif reads the neighbouring frames: a clip decoded from 1.0 s is still the timeline from 0 (the pre-roll)
    part = np.stack(list(clip_frames(row["norm_path"], 1.0, 1.8, 20, row["norm_vf"], (360, 640))))
    assert np.array_equal(part, frames[25:45])


def test_the_timeline_from_a_clip_start_is_the_timeline_from_zero(shared_media):
    """A clip decoded from start_s (input seek + pre-roll) gets exactly the frames a decode from 0 gives there,
    on a 30 fps, a variable-frame-rate and an HEVC portrait source: frame k of a clip is frame start_s*25 + k."""
    for name in ("retalking_face4_en.mp4", "retalking_face1_en.mp4", "latentsync_demo1_ru_10s.mp4"):
        src = shared_media / "video_av" / name
        vf = timeline_filter(360)
        size = first_frame_size(src, vf)
        full = list(iter_frames(src, vf=vf, size=size))
        for start in (2.0, 3.24):
            got = list(clip_frames(src, start, start + 0.8, 20, vf, size))
            k0 = round(start * 25)
            assert all(np.array_equal(f, full[k0 + j]) for j, f in enumerate(got)), (name, start)
            sampled = list(sampled_frames(src, start, 20, 5, 0, 25.0, vf, size))
            assert [i for i, _, _ in sampled] == [0, 5, 10, 15, 19]
            assert all(np.array_equal(f, full[k0 + i]) for i, f, _ in sampled), (name, start)


@pytest.fixture(scope="session")
def broken_files(shared_media, media_cache) -> dict[str, Path]:
    d = media_cache / "broken"
    d.mkdir(exist_ok=True)
    src = shared_media / "video_av" / "retalking_face2_en.mp4"
    rng = np.random.default_rng(0)
    (d / "random.mp4").write_bytes(rng.integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    (d / "truncated_moov_end.mp4").write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    faststart = d / "faststart.mp4"
    ffmpeg("-i", str(src), "-c", "copy", "-movflags", "+faststart", str(faststart), timeout=60)
    data = faststart.read_bytes()
    (d / "truncated_moov_first.mp4").write_bytes(data[: len(data) * 2 // 5])
    (d / "empty.mp4").write_bytes(b"")
    return {p.stem: p for p in d.glob("*.mp4")}


@pytest.mark.parametrize("name", ["random", "truncated_moov_end", "truncated_moov_first", "empty"])
@pytest.mark.parametrize("reencode", [False, True])
def test_corrupt_inputs_drop_corrupt_video(tmp_path, broken_files, name, reencode):
    cfg = BuildConfig(out=str(tmp_path), normalize=NormalizeConfig(reencode=reencode))
    [row] = Normalize(cfg)(_row(broken_files[name], name))
    assert row["status"] == "dropped" and row["drop_reason"] == "corrupt_video", row
    assert row["drop_stage"] == "normalize" and "norm_path" not in row
    work = Path(tmp_path) / "work" / "en" / row["video_key"]
    assert not work.exists() or not any(work.iterdir())


def test_no_audio_and_no_video(tmp_path, silent_clip, shared_media):
    cfg = BuildConfig(out=str(tmp_path))
    [silent] = Normalize(cfg)(_row(silent_clip.path, "silent"))
    assert silent["drop_reason"] == "no_audio"
    [speech] = Normalize(cfg)(_row(shared_media / "audio" / "en" / "jfk_11s.flac", "speech"))
    assert speech["drop_reason"] == "no_video"
    # a podcast-style mp3 whose only "video" is its cover picture is still audio only
    cover = tmp_path / "speech_with_cover.mp3"
    ffmpeg("-i", str(shared_media / "audio" / "en" / "jfk_11s.flac"), "-i",
           str(shared_media / "faces" / "facenet_paul_rudd.jpg"), "-map", "0:a", "-map", "1:v", "-c:a", "libmp3lame",
           "-c:v", "mjpeg", "-vf", "scale=256:-2", "-disposition:v", "attached_pic", str(cover), timeout=60)  # fmt: skip
    assert probe(cover)["has_video"]  # ffprobe does list the picture as a video stream
    [podcast] = Normalize(cfg)(_row(cover, "podcast"))
    assert podcast["drop_reason"] == "no_video", podcast


def test_dropped_rows_pass_through(tmp_path, talking_clip):
    row = drop(_row(talking_clip.path), "download_failed", "download")
    assert Normalize(BuildConfig(out=str(tmp_path)))(dict(row)) == [row]


def _xcorr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cross-correlation of x and y over their common length n: entry k is lag k, entry 2n - k lag -k."""
    n = min(len(x), len(y))
    return np.fft.irfft(np.fft.rfft(x[:n], 2 * n) * np.conj(np.fft.rfft(y[:n], 2 * n)))


def _lag_s(x: np.ndarray, y: np.ndarray, sr: int = 16000) -> float:
    """How many seconds x lags y (peak of the cross-correlation)."""
    n = min(len(x), len(y))
    k = int(np.argmax(_xcorr(x, y)))
    return (k if k < n else k - 2 * n) / sr


@pytest.mark.parametrize("reencode", [False, True])
def test_audio_starting_late_in_the_container_stays_aligned(tmp_path, talking_clip, media_cache, reencode):
    """A source whose audio stream starts 0.4 s after its video: audio.wav must start with 0.4 s of padding."""
    delayed = media_cache / "talking_audio_delayed_0.4s.mp4"
    if not delayed.exists():
        ffmpeg("-i", str(talking_clip.path), "-itsoffset", "0.4", "-i", str(talking_clip.path),
               "-map", "0:v", "-map", "1:a", "-c", "copy", str(delayed), timeout=60)  # fmt: skip
    cfg = BuildConfig(out=str(tmp_path), normalize=NormalizeConfig(reencode=reencode))
    [row] = Normalize(cfg)(_row(delayed, "delayed"))
    assert row["status"] == "ok", row
    original = read_audio(talking_clip.path)
    assert _lag_s(read_audio(row["audio_path"]), original) == pytest.approx(0.4, abs=0.02)
    if reencode:
        assert _lag_s(read_audio(row["norm_path"]), original) == pytest.approx(0.4, abs=0.02)
    frames = _timeline(row, (32, 32)).astype(np.float32)  # the video is not delayed with the audio
    first = read_frames(talking_clip.path, 0.0, 0.4, size=(32, 32)).astype(np.float32)
    assert np.abs(frames[: len(first)] - first).mean() < 2.0


@pytest.mark.parametrize("name", ["liveportrait_d20_zh.mp4", "retalking_face5_en.mp4", "hdtf_WDA_AOC_en_8s.mp4"])
@pytest.mark.parametrize("reencode", [False, True])
def test_normalize_keeps_the_source_av_alignment_exactly(tmp_path, shared_media, name, reencode):
    """The three clips whose sync readings are 2-5 frames off (benchmarks/RESULTS_sync.md) carry mp4 edit lists
    (80 ms B-frame delay on the video, 1024/2112 samples of AAC priming on the audio). The normalised file must
    keep the source's alignment: frame i is the source's frame i and the audio is the source's audio, sample for
    sample, so any offset the sync stage reads is the source's, not ours."""
    src = shared_media / "video_av" / name
    [row] = Normalize(BuildConfig(out=str(tmp_path), normalize=NormalizeConfig(reencode=reencode)))(_row(src))
    assert row["status"] == "ok", row

    a, b = read_frames(src, size=(32, 32)).astype(np.float32), _timeline(row, (32, 32)).astype(np.float32)
    assert len(a) == len(b)  # all three are 25 fps sources
    err = {s: float(np.mean([np.abs(a[i] - b[i + s]).mean() for i in range(3, len(a) - 3)])) for s in (-1, 0, 1)}
    assert err[0] < 0.5 * min(err[-1], err[1]), err
    assert _lag_s(read_audio(row["audio_path"]), read_audio(src)) == pytest.approx(0.0, abs=1 / 16000)


@pytest.mark.parametrize("transfer,tags", [("smpte2084", True), ("arib-std-b67", True), ("smpte2084", False)],
                         ids=["pq", "hlg", "pq-primaries-unset"])  # fmt: skip
@pytest.mark.parametrize("reencode", [False, True])
def test_hdr_source_is_tone_mapped_to_sdr(tmp_path, shared_media, transfer, tags, reencode):
    """A real SDR clip re-coded as 10-bit BT.2020 HDR (PQ as HDR10 uploads, HLG as phones record), SDR white at
    100 nits: on the timeline it must look like the SDR original again, not grey and flat; also when the stream
    states its transfer but not its primaries or matrix (zscale alone refused those frames)."""
    src, hdr = shared_media / "video_av" / "hdtf_WDA_AOC_en_8s.mp4", tmp_path / f"{transfer}.mkv"
    unset = ["-bsf:v", "hevc_metadata=colour_primaries=2:matrix_coefficients=2", "-color_primaries", "unknown",
             "-colorspace", "unknown"] if not tags else ["-color_primaries", "bt2020", "-colorspace", "bt2020nc"]  # fmt: skip
    ffmpeg("-i", str(src), "-t", "3", "-vf", f"zscale=tin=bt709:min=bt709:pin=bt709:rin=tv:t={transfer}:m=bt2020nc:"
           "p=bt2020:r=tv:npl=100,format=yuv420p10le", "-c:v", "libx265", "-preset", "ultrafast", "-crf", "16",
           "-x265-params", f"log-level=error:colorprim=bt2020:transfer={transfer}:colormatrix=bt2020nc",
           "-color_trc", transfer, *unset, "-c:a", "copy", str(hdr), timeout=120)  # fmt: skip
    stream = _streams(str(hdr))[0]
    assert stream["color_transfer"] == transfer and (stream.get("color_primaries") == "bt2020") == tags
    cfg = BuildConfig(out=str(tmp_path / "out"), normalize=NormalizeConfig(reencode=reencode))
    [row] = Normalize(cfg)(_row(hdr))
    assert row["status"] == "ok", row
    sdr = read_frames(src, 0.0, 2.0, size=(128, 128)).astype(np.float32)
    got = _timeline(row, (128, 128))[: len(sdr)].astype(np.float32)
    as_coded = np.stack(list(iter_frames(hdr, 0.0, 2.0, size=(128, 128))))[: len(sdr)].astype(np.float32)
    # measured at 512 px: 31.7 (PQ) / 34.3 (HLG) grey levels off as coded, 6.0 / 5.8 tone-mapped
    assert np.abs(got - sdr).mean() < 12.0 < np.abs(as_coded - sdr).mean() - 12.0
    assert abs(got.mean() - sdr.mean()) < 8.0


def test_a_decoders_own_steps_go_before_the_tone_map():
    """then(): an SDR timeline is followed by the steps as it is; an HDR one tone-maps after them (a downsize or
    crop first: the float tone map then touches a fraction of the pixels), still ending in 8-bit yuv420p."""
    sdr = timeline_filter(1080)
    hdr = timeline_filter(1080, hdr=hdr_input({"color_transfer": "smpte2084", "color_primaries": "unknown"}))
    assert then(sdr, "scale=64:64", None, "crop=8:8:0:0") == f"{sdr},scale=64:64,crop=8:8:0:0"
    assert then(None, "crop=8:8:0:0") == "crop=8:8:0:0" and then(None) is None
    got = then(hdr, "scale=64:64")
    assert got.startswith(sdr.removesuffix("format=yuv420p") + "scale=64:64,setparams=color_trc=smpte2084:"
                          "color_primaries=bt2020:colorspace=bt2020nc:range=tv,zscale=t=linear")
    assert got.endswith("format=yuv420p") and got.count("zscale=t=linear") == 1
    assert hdr_input({"color_transfer": "bt709"}) == ""
    assert then(then(hdr, "crop=8:8:0:0"), "trim=start_frame=5") == then(hdr, "crop=8:8:0:0", "trim=start_frame=5")


@pytest.fixture(scope="session")
def two_track_clips(shared_media, media_cache) -> dict[str, Path]:
    """A real talking clip with a second, unrelated speech track (Mandarin), muxed in the ways files carry them."""
    src = shared_media / "video_av" / "hdtf_WDA_AOC_en_8s.mp4"
    other = shared_media / "audio" / "zh" / "musetalk_sun_22s.wav"  # longer than the clip
    out: dict[str, Path] = {}
    layouts = {  # name -> (first stream, its metadata / disposition; second stream, ...)
        "tagged": (["-map", "1:a", "-map", "0:a"], ["-metadata:s:a:0", "language=zho", "-metadata:s:a:1",
                                                     "language=eng", "-disposition:a:0", "default",
                                                     "-disposition:a:1", "0"]),
        "tagged_second_default": (["-map", "1:a", "-map", "0:a"], ["-metadata:s:a:0", "language=zho",
                                                                    "-metadata:s:a:1", "language=eng",
                                                                    "-disposition:a:0", "0",
                                                                    "-disposition:a:1", "default"]),
        "default_second": (["-map", "1:a", "-map", "0:a"], ["-disposition:a:0", "0", "-disposition:a:1", "default"]),
        "dub_first": (["-map", "1:a", "-map", "0:a"], ["-metadata:s:a:0", "language=eng", "-metadata:s:a:1",
                                                        "language=eng", "-disposition:a:0", "default+dub",
                                                        "-disposition:a:1", "0"]),
        "commentary_first": (["-map", "1:a", "-map", "0:a"], ["-disposition:a:0", "default+comment",
                                                               "-disposition:a:1", "0"]),
    }  # fmt: skip
    for name, (maps, meta) in layouts.items():
        dst = media_cache / f"aoc_two_tracks_{name}.mkv"
        if not dst.exists():
            ffmpeg("-i", str(src), "-i", str(other), "-map", "0:v", *maps, "-c:v", "copy", "-c:a", "aac",
                   "-shortest", *meta, str(dst), timeout=120)  # fmt: skip
        out[name] = dst
    out["own"], out["other"] = src, other
    return out


def _corr(x: np.ndarray, y: np.ndarray, max_lag_s: float = 0.2, sr: int = 16000) -> float:
    """Peak normalised cross-correlation within +-max_lag_s (an AAC re-encode moves the samples by its priming)."""
    n = min(len(x), len(y))
    x, y = x[:n] - x[:n].mean(), y[:n] - y[:n].mean()
    c = _xcorr(x, y)
    k = int(max_lag_s * sr)
    return float(np.abs(np.r_[c[: k + 1], c[-k:]]).max() / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-12))


@pytest.mark.parametrize("layout", ["tagged", "default_second", "dub_first", "commentary_first"])
@pytest.mark.parametrize("reencode", [False, True])
def test_the_speakers_audio_track_is_taken(tmp_path, two_track_clips, layout, reencode):
    """The clip's own speech is the second audio stream; the first is other speech, tagged with another language,
    marked default over a plain second track, marked a dub (in the same language), or marked commentary. audio.wav must be the speaker's track."""
    cfg = BuildConfig(out=str(tmp_path), normalize=NormalizeConfig(reencode=reencode))
    [row] = Normalize(cfg)(_row(two_track_clips[layout], layout))
    assert row["status"] == "ok", row
    got, own = read_audio(row["audio_path"]), read_audio(two_track_clips["own"])
    assert _corr(got, own) > 0.9 and abs(_corr(got, read_audio(two_track_clips["other"]))) < 0.2
    if reencode:
        assert _corr(read_audio(row["norm_path"]), own) > 0.9


def test_a_tagged_track_in_the_manifests_language_wins(tmp_path, two_track_clips):
    """A zh manifest row of a file whose default track is English: the Mandarin-tagged track is taken."""
    row = seed_row("zh", "dual", str(two_track_clips["tagged_second_default"]))
    row["video_path"] = row["source"]
    [row] = Normalize(BuildConfig(out=str(tmp_path)))(row)
    got = read_audio(row["audio_path"])
    assert _corr(got, read_audio(two_track_clips["other"])) > 0.9
