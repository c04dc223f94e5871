"""Language stage on real speech from ../shared/media with the offline default (Whisper base, CTranslate2).

The model loads once per module; clips are <= 10 s, cut with ffmpeg into the session media cache.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import LANGS, BuildConfig
from pipeline.media import ffmpeg, write_wav
from pipeline.record import drop
from pipeline.stages.language import LanguageTagger

# (language, file under shared/media/audio, start s, seconds): real read or spoken speech, one speaker each.
# Russian, Chinese and Portuguese come from real talking-face videos in test_clips_of_a_multilingual_video.
SPEECH: tuple[tuple[str, str, float, float], ...] = (
    ("en", "en/jfk_11s.flac", 0.0, 10.0),
    ("es", "es/commonvoice_es_10s.wav", 0.0, 10.0),
    ("fr", "fr/librivox_reader1259_10s.wav", 0.0, 10.0),
    ("ja", "ja/vallex_ja1_4s.wav", 0.0, 4.0),
    ("nl", "nl/librivox_reader6513_10s.wav", 0.0, 10.0),
    ("fi", "fi/librivox_reader5698_10s.wav", 0.0, 10.0),
    ("tr", "tr/wli_tur_10s.wav", 0.0, 10.0),
)


def _wav(shared_media: Path, cache: Path, rel: str, start: float, dur: float) -> Path:
    out = cache / "language" / f"{rel.replace('/', '_').rsplit('.', 1)[0]}_{start:g}_{dur:g}.wav"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        ffmpeg("-ss", f"{start}", "-t", f"{dur}", "-i", str(shared_media / "audio" / rel),
               "-ac", "1", "-ar", "16000", "-c:a", "pcm_s16le", str(out), timeout=60)  # fmt: skip
    return out


def _row(key: str, audio_path: Path, lang_expected: str, start: float = 0.0, end: float | None = None) -> dict:
    return {"key": key, "video_key": key, "lang_expected": lang_expected, "status": "ok", "drop_reason": "",
            "drop_stage": "", "audio_path": str(audio_path), "start_s": start, "end_s": end}  # fmt: skip


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    """An empty models dir: only the offline default applies (no upstream Whisper, no pyannote)."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def tagger(models_dir) -> LanguageTagger:
    return LanguageTagger(BuildConfig(models_dir=str(models_dir)))


@pytest.fixture(scope="module")
def speech_rows(shared_media, media_cache) -> list[dict]:
    rows = []
    for lang, rel, start, dur in SPEECH:
        rows.append(_row(f"{lang}-speech", _wav(shared_media, media_cache, rel, start, dur), lang, 0.0, dur))
    return rows


def test_real_speech_tagged_in_seven_languages(tagger, speech_rows):
    """Whisper base names the language of real speech in 7 languages with a clear lead over the runner-up, and a
    clip in a language the pipeline builds (LANGS: here en, es, fr, ja) is kept.

    Measured (2026-12-01): top-1 is >= 3.2x the runner-up everywhere (Turkish 0.68 vs Azerbaijani 0.21, the rest
    >= 0.86 vs <= 0.04); the lowest LANGS clip, French, reads 0.86 against the 0.7 gate. Outside LANGS the gate
    is no promise of the product: Turkish at 0.68 is dropped lang_uncertain, which is the gate doing its job."""
    rows = tagger.run_video([dict(r) for r in speech_rows])  # one batched pass, as for a video's clips
    got = {r["lang_expected"]: (r["lang"], r["lang_prob"], r["status"]) for r in rows}
    assert len(rows) == len(SPEECH) and {lang for lang in got if lang in LANGS} == {"en", "es", "fr", "ja"}, got
    for r in rows:
        top3 = json.loads(r["lang_top3"])
        assert r["lang"] == r["lang_expected"] and top3[0][1] >= 2 * top3[1][1], got
        if r["lang_expected"] in LANGS:
            assert r["status"] == "ok", (r["key"], r.get("drop_reason"), r.get("drop_detail"))
        else:  # identified, and either kept or honestly uncertain: never a mismatch
            assert r["status"] == "ok" or r["drop_reason"] == "lang_uncertain", r
        assert len(top3) == 3 and top3[0] == [r["lang"], r["lang_prob"]]
        assert top3[0][1] >= top3[1][1] >= top3[2][1]
        assert 0.3 <= r["speech_ratio"] <= 1.0  # measured 0.66-0.97 on these read-speech clips
        assert r["n_speakers"] == -1 and r["speaker_check"] == "not_run"  # no pyannote checkpoint: not a pass
        assert r["transcript"] == "" and r["lang_model"].startswith("ct2:")


def test_uncertain_language_dropped(models_dir, speech_rows):
    cfg = BuildConfig(models_dir=str(models_dir))
    cfg.language.min_lang_prob = 0.9999  # above what base gives JFK (~0.93): the same clip becomes uncertain
    strict = LanguageTagger(cfg, diarizer=None)
    row = strict(dict(speech_rows[0]))[0]
    assert row["drop_reason"] == "lang_uncertain" and row["lang"] == "en" and row["lang_prob"] < 0.9999


def test_silence_and_noise_dropped_as_no_speech(tagger, media_cache):
    rng = np.random.default_rng(0)
    silence, noise = media_cache / "language" / "silence_5s.wav", media_cache / "language" / "noise_5s.wav"
    write_wav(np.zeros(5 * 16000, np.float32), silence)
    write_wav(rng.normal(0, 0.1, 5 * 16000).astype(np.float32), noise)
    rows = tagger.run_video([_row("en-silence", silence, "en", 0, 5), _row("en-noise", noise, "en", 0, 5)])
    for r in rows:
        assert r["drop_reason"] == "no_speech" and r["speech_ratio"] < 0.3, r
        assert r["lang"] == ""  # no language is claimed for a clip without speech


def test_clip_window_of_a_longer_file_and_two_speakers_not_run(tagger, shared_media):
    """The pyannote sample (2 real speakers), read in place between start_s and end_s: tagged en, and the
    speaker check is recorded as not run offline, never as a pass."""
    wav = shared_media / "audio" / "en" / "pyannote_sample_2spk_30s.wav"
    row = tagger(_row("en-pyannote", wav, "en", 10.0, 20.0))[0]
    assert row["status"] == "ok" and row["lang"] == "en"
    assert row["n_speakers"] == -1 and row["speaker_check"] == "not_run"
    assert row["speech_ratio"] > 0.6  # RTTM: speech covers nearly all of 10-20 s
    early = tagger(_row("en-pyannote-early", wav, "en", 0.0, 6.5))[0]  # RTTM: first speech at 6.69 s
    assert early["drop_reason"] == "no_speech" and early["speech_ratio"] < 0.1


class _FakeWhisper:
    """Stands in for Whisper in tests of the stage's own logic (the real model is tested above)."""

    name = "fake"

    def __init__(self):
        self.batches: list[int] = []

    def detect(self, audios):
        self.batches.append(len(audios))
        return [[("en", 0.95), ("de", 0.03), ("nl", 0.01)] for _ in audios]

    def transcribe(self, audio, language):
        return ""


class _FakeDiarizer:
    name = "pyannote"

    def __init__(self, n: int):
        self.n, self.calls = n, 0

    def __call__(self, audio: np.ndarray) -> int:
        self.calls += 1
        return self.n


def test_speaker_check_drops_multi_speaker_when_it_runs(tagger, speech_rows):
    for n, status in ((2, "dropped"), (1, "ok")):
        fake = _FakeDiarizer(n)
        stage = LanguageTagger(tagger.cfg, whisper=_FakeWhisper(), vad=tagger.vad, diarizer=fake)
        row = stage(dict(speech_rows[0]))[0]
        assert fake.calls == 1 and row["status"] == status
        assert row["n_speakers"] == n and row["speaker_check"] == "pyannote"
        assert row["drop_reason"] == ("multi_speaker" if n > 1 else "")


def test_transcript_when_enabled(models_dir, tagger, speech_rows):
    cfg = BuildConfig(models_dir=str(models_dir))
    cfg.language.transcribe = True
    stage = LanguageTagger(cfg, whisper=tagger.whisper, vad=tagger.vad, diarizer=None)
    row = stage(dict(speech_rows[0]))[0]
    assert "ask not what your country" in row["transcript"].lower()


def test_dropped_rows_pass_and_one_bad_clip_does_not_stop_the_video(tagger, speech_rows, tmp_path):
    fake = _FakeWhisper()
    stage = LanguageTagger(tagger.cfg, whisper=fake, vad=tagger.vad, diarizer=None)
    earlier = drop(dict(speech_rows[1]), "no_face", "faces")
    missing = _row("en-missing", tmp_path / "nope.wav", "en", 0, 5)
    rows = stage.run_video([earlier, missing, dict(speech_rows[0]), dict(speech_rows[2], lang_expected="en")])
    assert fake.batches == [2]  # the two good clips went through Whisper as one batch
    assert rows[0] == earlier and "lang" not in rows[0]
    assert rows[1]["drop_reason"] == "error" and rows[1]["drop_stage"] == "language"
    assert rows[2]["status"] == "ok" and rows[2]["lang"] == "en"
    assert rows[3]["status"] == "ok" and rows[3]["lang_model"] == "fake"


def test_failed_batch_retried_clip_by_clip(tagger, speech_rows):
    class BatchFails(_FakeWhisper):
        def detect(self, audios):
            if len(audios) > 1:
                raise RuntimeError("out of memory")
            return super().detect(audios)

    fake = BatchFails()
    stage = LanguageTagger(tagger.cfg, whisper=fake, vad=tagger.vad, diarizer=None)
    rows = stage.run_video([dict(speech_rows[0]), dict(speech_rows[2], lang_expected="en")])
    assert fake.batches == [1, 1] and [r["status"] for r in rows] == ["ok", "ok"]


def test_mismatched_languages_in_a_multilingual_video_dropped(tagger, concat_clip, media_cache):
    """Real talking clips concatenated (en, ru, zh, pt; cuts every 6 s): one audio_path, clip windows trimmed
    0.5 s at each cut like shots makes them, manifest says en: only the English shot is kept."""
    wav = media_cache / "language" / "concat_audio.wav"
    if not wav.exists():
        ffmpeg("-i", str(concat_clip.path), "-vn", "-ac", "1", "-ar", "16000", "-c:a", "pcm_s16le", str(wav))
    bounds = (0.0, *concat_clip.cuts, concat_clip.duration_s)
    windows = zip(bounds[:-1], bounds[1:], strict=True)
    rows = [_row(f"en-concat-s{i:04d}", wav, "en", a + 0.5, b - 0.5) for i, (a, b) in enumerate(windows)]
    rows = tagger.run_video(rows)
    heard = [r["lang"] for r in rows]
    assert heard == list(concat_clip.langs), [(r["lang"], r["lang_prob"], r["drop_reason"]) for r in rows]
    assert [r["drop_reason"] for r in rows] == ["", "lang_mismatch", "lang_mismatch", "lang_mismatch"]
    assert all(r["lang_prob"] >= 0.7 for r in rows)  # confidently another language, not merely uncertain
    assert "heard ru" in rows[1]["drop_detail"] and "manifest says en" in rows[1]["drop_detail"]


def test_transcribe_flag_reaches_the_config(monkeypatch, tmp_path):
    import pipeline.build as build_mod

    seen = []
    monkeypatch.setattr(build_mod, "build", lambda cfg, *a, **kw: seen.append(cfg) or {"totals": {"kept": 0}})
    assert build_mod.main(["--lang", "en", "--out", str(tmp_path), "--no-ray", "--transcribe"]) == 0
    assert build_mod.main(["--lang", "en", "--out", str(tmp_path), "--no-ray"]) == 0
    assert [c.language.transcribe for c in seen] == [True, False]


def test_rows_from_normalize_and_shots(tagger, ingested_talking):
    """The contract end to end: clip rows as normalize + shots make them (audio.wav of the whole video,
    start_s/end_s per clip) come out tagged with every language field."""
    _, rows = ingested_talking
    out = tagger.run_video([dict(r) for r in rows])
    assert len(out) == len(rows)
    for r in out:
        assert r["status"] == "ok" and r["lang"] == "en" and r["lang_prob"] >= 0.7, r
        assert r["speech_ratio"] > 0.5 and r["speaker_check"] == "not_run" and r["n_speakers"] == -1
        assert isinstance(json.loads(r["lang_top3"]), list) and r["transcript"] == ""


def test_ray_calls_batch_whisper_across_videos(models_dir, speech_rows):
    """In the Ray graph the language stage gets several units of work per call (map_batches): the clips of four
    one-clip videos go through Whisper in one batched pass, with the same result as video by video, and a video
    with a retry_later row passes untouched."""
    from pipeline.build import _RayBatchStage, group_by_video
    from pipeline.record import retry_later

    adapter = _RayBatchStage(LanguageTagger, BuildConfig(models_dir=str(models_dir)))
    whisper, calls = adapter.stage.whisper, []
    detect = whisper.detect
    whisper.detect = lambda clips: calls.append(len(clips)) or detect(clips)
    videos = [[dict(r)] for r in speech_rows[:4]]
    waiting = [retry_later(dict(speech_rows[4]), "faces", "disk full")]
    out = adapter({"video": np.array([pickle.dumps(v) for v in [*videos, waiting]], dtype=object)})
    groups = [pickle.loads(b) for b in out["video"]]
    assert calls == [4]  # one pass for the four videos
    by_key = {g[0]["key"]: g for g in groups}
    assert by_key[waiting[0]["key"]] == waiting
    one_by_one = {r["key"]: r for v in videos for r in adapter.stage.run_video([dict(x) for x in v])}
    for key, r in one_by_one.items():
        assert (by_key[key][0]["lang"], by_key[key][0]["status"]) == (r["lang"], r["status"])
        assert by_key[key][0]["lang_prob"] == pytest.approx(r["lang_prob"], abs=0.02)
    assert len(group_by_video(r for g in groups for r in g)) == 5
