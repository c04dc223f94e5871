"""Speech activity with Silero VAD v6 (the ONNX model faster-whisper ships), so no extra package or download.

The speech ratio (speech seconds / clip seconds) gates `no_speech`, and the speech spans feed language ID so
Whisper hears speech rather than music or silence. Settings follow silero-vad's own defaults (tight padding):
faster-whisper's transcription defaults pad spans by 400 ms, which would inflate the ratio of sparse speech.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SR = 16000


@dataclass(frozen=True)
class SpeechSpans:
    """Speech spans of one clip, in samples at 16 kHz."""

    spans: list[tuple[int, int]]
    n_samples: int

    @property
    def speech_s(self) -> float:
        return sum(e - s for s, e in self.spans) / SR

    @property
    def ratio(self) -> float:
        return self.speech_s / (self.n_samples / SR) if self.n_samples else 0.0

    def speech_audio(self, audio: np.ndarray, max_s: float | None = None) -> np.ndarray:
        """The speech parts concatenated (at most `max_s` seconds): what language ID listens to."""
        parts = [audio[s:e] for s, e in self.spans]
        out = np.concatenate(parts) if parts else audio[:0]
        return out[: int(max_s * SR)] if max_s else out


class SileroVAD:
    """Silero VAD v6 through onnxruntime (one thread: it is tiny, and actors share the CPU)."""

    name = "silero_vad_v6"

    def __init__(
        self,
        threshold: float = 0.5,
        min_speech_ms: int = 250,
        min_silence_ms: int = 100,
        pad_ms: int = 30,
    ):
        from faster_whisper.utils import get_assets_path
        from faster_whisper.vad import VadOptions, get_vad_model

        onnx = Path(get_assets_path()) / "silero_vad_v6.onnx"
        if not onnx.is_file():
            raise FileNotFoundError(f"{onnx} missing: reinstall faster-whisper (it ships Silero VAD v6)")
        self.model = get_vad_model()  # cached per process: one ONNX session per actor
        self.options = VadOptions(
            threshold=threshold,
            min_speech_duration_ms=min_speech_ms,
            min_silence_duration_ms=min_silence_ms,
            speech_pad_ms=pad_ms,
        )

    def __call__(self, audio: np.ndarray) -> SpeechSpans:
        from faster_whisper.vad import get_speech_timestamps

        audio = np.ascontiguousarray(audio, dtype=np.float32)
        if audio.size < 512:  # shorter than one Silero window: nothing to judge
            return SpeechSpans([], int(audio.size))
        stamps = get_speech_timestamps(audio, self.options, sampling_rate=SR)
        return SpeechSpans([(int(t["start"]), int(t["end"])) for t in stamps], int(audio.size))
