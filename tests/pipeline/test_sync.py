"""Sync stage + the weight-free energy and fused scorers, on real talking clips from ../shared/media (read in place)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.kit import sync_media
from pipeline import media
from pipeline.config import BuildConfig, load_config
from pipeline.models.sync_energy import (
    EnergySyncScorer,
    SyncCurve,
    audio_frames_present,
    lag_curve,
    smooth_curve,
)
from pipeline.models.sync_fused import FusedSyncScorer
from pipeline.models.sync_loader import load_sync_scorer
from pipeline.models.syncnet import SyncNet, SyncNetScorer
from pipeline.stages.sync import SyncFilter

LEAD = sync_media.LEAD
SHIFTS = range(-10, 11)


@pytest.fixture(scope="session")
def sync_rows(shared_media, media_store):
    return sync_media.prepare(shared_media, media_store / "sync", sync_media.TALKING_CLIPS + sync_media.EXTRA_CLIPS)


@pytest.fixture(scope="module")
def accuracy(sync_rows):
    """Issue #5's measurement: the 12 real clips made in sync (the hand-read offsets of the two recordings that are off undone), audio
    delayed by k = -10..10 frames; recovery of k and in-sync vs other-speech AUC of the default scorer."""
    clips = sync_media.load_clips(sync_rows, sync_media.SOURCE_OFFSETS)
    return sync_media.evaluate(clips, EnergySyncScorer(), SHIFTS)


def test_energy_scorer_sign_and_offset_on_synthetic_events():
    """Mouth-box flashes at random frames, audio bursts at the same frames delayed by k: offset = k (+-1)."""
    rng = np.random.default_rng(0)
    n, events = 150, np.sort(rng.choice(np.arange(5, 145), 25, replace=False))
    frames = np.full((n, 64, 64), 100, np.uint8)
    for e in events:
        frames[e:, 42:48, 26:38] = 100 + 60 * ((np.searchsorted(events, e) % 2) == 0)
    for k in (-7, 0, 5):
        audio = np.zeros((n + 2 * LEAD) * 640, np.float32)
        for e in events:
            s = (e + LEAD + k) * 640
            audio[s : s + 640] = rng.standard_normal(640) * 0.3
        c = EnergySyncScorer().curve(frames, audio, audio_lead_frames=LEAD)
        assert abs(c.offset - k) <= 1  # 80 ms audio window: an onset after silence may read one frame early
        assert len(c.values) == 31 and c.conf > 3.0
    noise = rng.standard_normal(len(audio)).astype(np.float32) * 0.1
    assert EnergySyncScorer().score(frames, noise, audio_lead_frames=LEAD)[1] < c.conf


def test_zero_padding_is_masked_not_read_as_silence():
    """Leading/trailing all-zero audio frames (what the stage pads beyond the file) are left out of the
    correlation; quiet audio and digital silence inside the clip are not."""
    rng = np.random.default_rng(1)
    audio = rng.standard_normal(40 * 640).astype(np.float32) * 1e-3
    audio[: 5 * 640] = 0.0
    audio[20 * 640 : 23 * 640] = 0.0
    audio[-2 * 640 :] = 0.0
    ok = audio_frames_present(audio, 40)
    assert not ok[:6].any() and ok[6:38].all() and not ok[38:].any()  # frame 5's flux compares it with frame 4
    v, a = rng.standard_normal(30), rng.standard_normal(40)
    a[:8] = 0.0
    valid = np.r_[np.zeros(8, bool), np.ones(32, bool)]
    masked = lag_curve(v, a, 5, 2, min_overlap=10, valid=valid)
    # lag 0: pairs v[t], a[t + 5]; the first 3 are padding and must not count
    assert masked[2] == pytest.approx(np.corrcoef(v[3:30], a[8:35])[0, 1])
    assert masked[2] != pytest.approx(lag_curve(v, a, 5, 2, min_overlap=10)[2])


def test_smooth_curve_prefers_a_broad_peak_over_a_one_lag_spike():
    """A lone spike (noise) loses to a peak that neighbouring lags support; nan lags stay nan, others are used."""
    v = np.array([0.0, 0.0, 0.5, 0.0, 0.0, 0.3, 0.4, 0.3, 0.0, np.nan, 0.2])
    s = smooth_curve(v)
    assert int(np.nanargmax(v)) == 2 and int(np.nanargmax(s)) == 6
    assert np.isnan(s[9]) and s[10] == pytest.approx(0.2) and s[8] == pytest.approx(0.3 / 3)
    assert s[6] == pytest.approx((0.3 + 0.8 + 0.3) / 4)


@pytest.mark.slow  # the scorer over 12 real clips x 21 shifts + mismatched audio
def test_energy_scorer_separates_in_sync_from_other_speech(accuracy):
    """Issue target: AUC >= 0.9 of conf, own in-sync audio vs another clip's speech; most in-sync clips pass 3.0."""
    assert accuracy["auc"] >= 0.9, accuracy
    assert np.mean(np.array(accuracy["pos"]) >= 3.0) >= 0.5, accuracy


@pytest.mark.slow  # the scorer over 12 real clips x 21 shifts + mismatched audio
def test_energy_scorer_recovers_added_shifts(accuracy):
    """Added shifts are recovered relative to each clip's own k=0 reading on >= 97 % of cases (252 of 252 since
    zero padding is masked and the edge lags are smoothed like the rest)."""
    assert accuracy["relative"] >= 0.97, accuracy


@pytest.mark.slow  # the scorer over 12 real clips x 21 shifts + mismatched audio
def test_energy_scorer_recovers_absolute_shifts(accuracy):
    """Issue #5's target: k recovered within +-1 frame on >= 90 % of the in-sync copies (measured 91.7 %; the
    misses are all retalking_face5's, which the scorer reads at -3 where the eye reads ~0)."""
    assert accuracy["recovery"] >= 0.9, accuracy
    missed = {c["key"] for c in accuracy["clips"] if c["hits"] < c["n_shifts"] - 1}
    assert missed <= {"retalking_face5_en"}, missed


def _row(src: dict, tmp: Path, key: str, shift_k: int = 0) -> dict:
    row = dict(src, key=key, status="ok", drop_reason="", drop_stage="")
    if shift_k:
        wav = tmp / f"{key}_audio.wav"
        media.write_wav(sync_media.shift_audio(media.read_audio(src["audio_path"]), shift_k), wav)
        row["audio_path"] = str(wav)
    row["start_s"], row["end_s"] = 0.6, src["end_s"] - 0.6
    crop = tmp / f"{key}_crop.mp4"  # the clip's crop: frames of [start_s, end_s)
    media.write_video(media.read_frames(src["crop_path"])[15:-15], crop)
    row["crop_path"], row["track_path"] = str(crop), ""
    return row


def test_stage_measures_shift_realigns_audio_and_drops(sync_rows, tmp_path):
    """Real clip, audio delayed 4 / 10 frames: the offset is measured and the kept clip's audio moved back to
    offset 0 (the issue's contract); realign=never keeps it as given; |offset| > 6 is dropped out_of_sync."""
    src = next(r for r in sync_rows if r["key"] == "retalking_face2_en")
    cfg = BuildConfig(out=str(tmp_path))
    cfg.sync.min_conf, cfg.sync.scorer = 0.0, "energy"
    stage = SyncFilter(cfg)
    assert stage.scorer.name == "energy"
    row = _row(src, tmp_path, "en-k4", shift_k=4)
    [kept] = stage(dict(row))
    assert kept["status"] == "ok", kept
    off = kept["av_offset_frames"]
    assert abs(off - 4) <= 1 and kept["sync_scorer"] == "energy" and kept["sync_shift_frames"] == off
    wav = media.read_audio(kept["clip_wav_path"])
    n = len(media.read_frames(kept["crop_path"], size=(16, 16)))
    assert len(wav) == n * 640
    truth = media.read_audio(src["audio_path"])[15 * 640 : 15 * 640 + len(wav)]  # the clip's own audio
    assert np.corrcoef(wav, np.roll(truth, (4 - off) * 640))[0, 1] > 0.99
    cfg.sync.realign = "never"
    [kept_as_is] = SyncFilter(cfg)(dict(row))
    assert kept_as_is["sync_shift_frames"] == 0 and kept_as_is["av_offset_frames"] == off
    given = media.read_audio(row["audio_path"])[15 * 640 : 15 * 640 + len(wav)]
    assert np.corrcoef(media.read_audio(kept_as_is["clip_wav_path"]), given)[0, 1] > 0.99
    cfg.sync.realign = "sometimes"
    with pytest.raises(ValueError, match=r"sync.realign must be auto \| always \| never"):
        SyncFilter(cfg)
    bad = tmp_path / "bad.yaml"
    bad.write_text("sync:\n  realign: sometimes\n")
    with pytest.raises(ValueError, match=r"bad.yaml: sync.realign must be"):
        load_config(bad)  # the build stops here, before Ray starts
    [far] = stage(_row(src, tmp_path, "en-k10", shift_k=10))
    assert far["status"] == "dropped" and far["drop_reason"] == "out_of_sync" and far["drop_stage"] == "sync"
    # the sync gate is soft: the dropped clip's audio is written too, so pipeline.select can keep it later
    assert abs(far["av_offset_frames"] - 10) <= 1 and Path(far["clip_wav_path"]).is_file()


def test_stage_realigns_a_real_source_that_is_off(sync_rows, tmp_path):
    """liveportrait_d20's audio is ~5 frames late in the source itself (read by hand, sync_media.SOURCE_OFFSETS):
    the stage reads that offset and writes the clip audio moved back by it."""
    src = next(r for r in sync_rows if r["key"] == "liveportrait_d20_zh")
    [kept] = SyncFilter(BuildConfig(out=str(tmp_path)))(_row(src, tmp_path, "zh-d20"))
    assert kept["status"] == "ok", kept
    assert abs(kept["av_offset_frames"] - sync_media.SOURCE_OFFSETS["liveportrait_d20_zh"]) <= 1
    assert kept["sync_shift_frames"] == kept["av_offset_frames"]
    wav = media.read_audio(kept["clip_wav_path"])
    audio = media.read_audio(src["audio_path"])
    start = (15 + kept["sync_shift_frames"]) * 640  # the clip starts 15 frames in; its audio 5 frames later
    assert np.corrcoef(wav, audio[start : start + len(wav)])[0, 1] > 0.99


class _ReliableScorer:
    """Stands in for SyncNet (weights not offline): reports the true added shift, trusted for re-alignment."""

    name, offset_reliable = "fake", True

    def __init__(self, k: int):
        self.k = k

    def curve(self, video, audio, fps=25, audio_lead_frames=0):
        offsets = np.arange(-15, 16)
        return SyncCurve(offsets, -np.abs(offsets - self.k).astype(float), self.k, 9.0)


def test_stage_realigns_audio_with_a_reliable_scorer(sync_rows, tmp_path):
    src = next(r for r in sync_rows if r["key"] == "retalking_face2_en")
    stage = SyncFilter(BuildConfig(out=str(tmp_path)))
    stage.scorer = _ReliableScorer(5)
    [kept] = stage(_row(src, tmp_path, "en-r5", shift_k=5))
    assert kept["status"] == "ok" and kept["av_offset_frames"] == 5 and kept["sync_shift_frames"] == 5
    wav = media.read_audio(kept["clip_wav_path"])
    truth = media.read_audio(src["audio_path"])[15 * 640 : 15 * 640 + len(wav)]  # the unshifted clip audio
    assert len(wav) == len(truth) and np.corrcoef(wav, truth)[0, 1] > 0.99
    stage.scorer.offset_reliable = False  # a scorer not trusted for absolute offsets: auto keeps the audio ...
    [as_is] = stage(_row(src, tmp_path, "en-u5", shift_k=5))
    assert as_is["av_offset_frames"] == 5 and as_is["sync_shift_frames"] == 0
    stage.cfg.sync.realign = "always"  # ... always moves it anyway
    assert stage(_row(src, tmp_path, "en-a5", shift_k=5))[0]["sync_shift_frames"] == 5
    stage.cfg.sync.realign = "auto"
    stage.scorer = _ReliableScorer(-15)  # beyond max_offset_frames = 6
    [row] = stage(_row(src, tmp_path, "en-r-15", shift_k=0))
    assert row["drop_reason"] == "out_of_sync"


def test_stage_conf_threshold_passthrough_and_errors(sync_rows, tmp_path):
    src = next(r for r in sync_rows if r["key"] == "retalking_face2_en")
    cfg = BuildConfig(out=str(tmp_path))
    cfg.sync.min_conf = 1e9
    stage = SyncFilter(cfg)
    [low] = stage(_row(src, tmp_path, "en-c"))
    assert low["drop_reason"] == "out_of_sync" and np.isfinite(low["sync_conf"])
    dropped = {"key": "en-x", "status": "dropped", "drop_reason": "no_face", "drop_stage": "faces"}
    assert stage(dict(dropped)) == [dropped]
    short = tmp_path / "short_crop.mp4"
    media.write_video(media.read_frames(src["crop_path"])[:30], short)
    [brief] = stage(dict(_row(src, tmp_path, "en-s"), crop_path=str(short)))
    assert brief["drop_reason"] == "out_of_sync" and "too short" in brief["drop_detail"]
    [bad] = stage(dict(_row(src, tmp_path, "en-b"), crop_path=str(tmp_path / "missing.mp4")))
    assert bad["status"] == "dropped" and bad["drop_reason"] == "error" and bad["drop_stage"] == "sync"


def test_load_sync_scorer_choices(tmp_path):
    import torch

    cfg = BuildConfig(models_dir=str(tmp_path))
    default = load_sync_scorer(cfg)  # auto without SyncNet weights: the weight-free default, Whisper-frame confidence
    assert isinstance(default, FusedSyncScorer) and default.conf_prior.features == "whisper-base"
    cfg.sync.scorer = "energy"
    assert isinstance(load_sync_scorer(cfg), EnergySyncScorer)
    cfg.sync.scorer, cfg.sync.prior = "fused", str(tmp_path / "missing.npz")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_sync_scorer(cfg)
    cfg.sync.prior, cfg.sync.conf_prior = "", str(tmp_path / "missing-conf.npz")
    with pytest.raises(FileNotFoundError, match="missing-conf.npz"):
        load_sync_scorer(cfg)
    cfg.sync.conf_prior = "none"  # the log-mel prior gives the confidence too
    mel_only = load_sync_scorer(cfg)
    assert mel_only.conf_prior is mel_only.prior and mel_only.name == "fused"
    cfg.sync.conf_prior = ""
    cfg.sync.scorer = "syncnet"
    with pytest.raises(FileNotFoundError, match="syncnet_v2.model"):
        load_sync_scorer(cfg)
    (tmp_path / "syncnet").mkdir()
    torch.save(SyncNet().state_dict(), tmp_path / "syncnet" / "syncnet_v2.model")
    cfg.sync.scorer = "auto"
    assert isinstance(load_sync_scorer(cfg), SyncNetScorer)
    cfg.sync.scorer = "lightasd"
    with pytest.raises(ValueError, match="auto \\| syncnet \\| fused \\| energy"):
        load_sync_scorer(cfg)


@pytest.mark.slow  # faces -> sync -> quality on a real clip
def test_sync_and_quality_on_real_faces_stage_output(shared_media, media_cache, tmp_path):
    """Contract check: the real FaceTrack output (crop, track .npz) feeds SyncFilter and QualityFilter."""
    from pipeline.stages.faces import FaceTrack
    from pipeline.stages.quality import QualityFilter

    norm = sync_media.normalize(shared_media / "video_av" / "vexpress_AOC_en_4s.mp4", media_cache / "sync_vexpress.mkv")
    audio = tmp_path / "audio.wav"
    media.write_wav(media.read_audio(norm), audio)
    info = media.probe(norm)
    n = len(media.read_frames(norm, size=(16, 16)))
    cfg = BuildConfig(out=str(tmp_path / "out"))
    cfg.sync.min_conf = 0.0
    row = {"key": "en-vx-s0000", "video_key": "en-vx", "lang_expected": "en", "source_id": "vx", "shot_index": 0,
           "status": "ok", "drop_reason": "", "drop_stage": "", "norm_path": str(norm), "audio_path": str(audio),
           "fps": 25.0, "width": info["width"], "height": info["height"], "start_s": 0.0, "end_s": n / 25}  # fmt: skip
    [faced] = FaceTrack(cfg)(row)
    assert faced["status"] == "ok", faced
    [synced] = SyncFilter(cfg)(faced)
    assert synced["status"] == "ok", synced
    assert abs(synced["av_offset_frames"]) <= 2 and synced["sync_conf"] > 2.0
    n_crop = len(media.read_frames(synced["crop_path"], size=(16, 16)))
    assert len(media.read_audio(synced["clip_wav_path"])) == n_crop * 640
    [q] = QualityFilter(cfg)(synced)
    assert q["sharpness"] > 0 and q["brightness"] > 30 and np.isfinite(q["yaw_abs_max"])


# ---- the fused default on held-out speakers (issue #15) ---------------------------------------------------------
FOLD_SHIFTS = (-8, -5, -3, 3, 5, 8)


@pytest.fixture(scope="module")
def fused_folds(sync_rows):
    """The benchmark's protocol on the 12 real clips (fixed dlib crops): sources split in two halves by identity
    (benchmarks/kit/curation_media.SOURCES), the prior fitted on one half's in-sync clips, scored on the other's
    audio shifts and dubs (another identity's speech), then swapped."""
    from benchmarks.kit.curation_media import SOURCES
    from benchmarks.kit.sync_fit import clip_inputs, fit

    by_name = {Path(s.name).stem.lower(): s for s in SOURCES}
    halves: dict[str, list[dict]] = {"A": [], "B": []}
    for r in sync_rows:
        src = by_name[r["key"]]
        c = clip_inputs(r, src.identity)
        c["audio"] = sync_media.shift_audio(c["audio"], -sync_media.SOURCE_OFFSETS.get(r["key"], 0))  # in sync
        halves[src.half].append(c | {"key": r["key"]})
    out = {}
    for test, fit_half in (("A", "B"), ("B", "A")):
        scorer = FusedSyncScorer(prior=fit(halves[fit_half]))
        hits, pos, neg, readings = [], [], [], {}
        for c in halves[test]:
            off0, conf0 = scorer.score(c, c["audio"], audio_lead_frames=LEAD)
            readings[c["key"]], _ = off0, pos.append(conf0)
            hits += [abs(scorer.score(c, sync_media.shift_audio(c["audio"], k), audio_lead_frames=LEAD)[0] - k) <= 1
                     for k in FOLD_SHIFTS]  # fmt: skip
            neg += [scorer.score(c, np.resize(o["audio"][LEAD * 640 :], len(c["audio"])), audio_lead_frames=LEAD)[1]
                    for o in halves[test] if o["identity"] != c["identity"]]  # fmt: skip
        out[test] = {"shift": float(np.mean(hits)), "auc": _auc(pos, neg), "k0": readings, "halves": halves,
                     "fit": fit_half}  # fmt: skip
    return out


def _auc(pos: list[float], neg: list[float]) -> float:
    p, n = np.array(pos)[:, None], np.array(neg)[None, :]
    return float(((p > n) + 0.5 * (p == n)).mean())


def _own_and_dubs(scorer, clips: list[dict]) -> tuple[list[float], list[float]]:
    """Confidences on each clip's own audio and on every other identity's speech."""
    pos = [scorer.score(c, c["audio"], audio_lead_frames=LEAD)[1] for c in clips]
    neg = [scorer.score(c, np.resize(o["audio"][LEAD * 640 :], len(c["audio"])), audio_lead_frames=LEAD)[1]
           for c in clips for o in clips if o["identity"] != c["identity"]]  # fmt: skip
    return pos, neg


@pytest.mark.xfail(strict=True, reason="issue #15 target >= 90 % of held-out shifts within +-1 frame is not met: on "
                   "these fixed dlib crops test A 100 %, test B 52.8 % (in-sync reading Katie +6, face5 -3, demo1 +9); "
                   "the benchmark (bench_curation.py --only sync, faces-stage crops) 66.7 % / 75.0 %, 23 / 15 "
                   "points short (face1 -2, demo2 -2..+5; Katie +2, face5 -3..-4)")
def test_fused_scorer_places_held_out_offsets(fused_folds):
    assert min(f["shift"] for f in fused_folds.values()) >= 0.9, fused_folds


def test_fused_scorer_separates_own_audio_from_dubs_on_held_out_speakers(fused_folds):
    """AUC of the confidence, in-sync vs another speaker's audio, with the prior fitted on the other half."""
    assert min(f["auc"] for f in fused_folds.values()) >= 0.9, fused_folds


@pytest.mark.slow  # the Whisper base encoder on ~70 clip audios
def test_whisper_conf_prior_separates_dubs_on_held_out_speakers(fused_folds):
    """The default confidence (a prior on Whisper-encoder frames, fitted on the other half) separates own audio
    from dubs on held-out speakers, and at least as well as the log-mel prior's (the reason it is the default)."""
    from benchmarks.kit.sync_fit import fit
    from pipeline.models.sync_whisper import WhisperFrames

    frames = WhisperFrames(BuildConfig().models_dir)
    for test, f in fused_folds.items():
        halves = f["halves"]
        mel = fit(halves[f["fit"]])
        whisper = FusedSyncScorer(prior=mel, conf_prior=fit(halves[f["fit"]], featurizer=frames))
        log_mel = FusedSyncScorer(prior=mel)
        auc_w, auc_m = _auc(*_own_and_dubs(whisper, halves[test])), _auc(*_own_and_dubs(log_mel, halves[test]))
        assert auc_w >= 0.9 and auc_w >= auc_m - 0.02, (test, auc_w, auc_m)
        c = halves[test][0]  # the offset is the log-mel fused scorer's, untouched by the confidence prior
        assert whisper.score(c, c["audio"], audio_lead_frames=LEAD)[0] == log_mel.score(c, c["audio"], audio_lead_frames=LEAD)[0]


def test_fit_decision_point_rules_order_and_reject_unknown():
    """The benchmark's conf rules: balanced sits between the two groups, a dub percentile inside the dubs."""
    from benchmarks.kit.sync_fit import fit_decision_point

    pos, neg = [3.0, 4.0, 5.0], list(np.linspace(0.0, 1.9, 20))
    bal = fit_decision_point(pos, neg)
    assert 1.9 < bal < 3.0
    d90, d95 = fit_decision_point(pos, neg, "dub90"), fit_decision_point(pos, neg, "dub95")
    assert d90 == pytest.approx(np.percentile(neg, 90)) and d90 < d95 < bal
    with pytest.raises(ValueError, match="dub90"):
        fit_decision_point(pos, neg, "dub50")
