"""Language stage: speech activity (Silero VAD), Whisper language ID, the single-speaker check, a transcript.

Per clip, from `audio_path` between start_s and end_s:
  speech_ratio  VAD speech seconds / clip seconds; below `min_speech_ratio` -> drop "no_speech"
  lang, lang_prob, lang_top3   Whisper over up to 30 s of the clip's speech; prob below `min_lang_prob` ->
                "lang_uncertain", else a language other than the manifest's -> "lang_mismatch"
  n_speakers, speaker_check    pyannote diarization when a local checkpoint exists (>1 -> "multi_speaker");
                otherwise -1 and "not_run": the check did not happen, and the row says so
  transcript    only with --transcribe, for kept clips
Language ID is batched over clips (one encoder pass per `batch_size` clips); in the Ray graph this stage runs as
an actor pool, one Whisper model per actor, on a GPU when the actor has one, and each call gets the clips of up
to `batch_size` videos (Ray Data map_batches), so one-clip videos still fill a batch.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np

from ..config import BuildConfig
from ..gates import BY_NAME
from ..media import read_audio
from ..models.diarization import NOT_RUN, load_diarizer
from ..models.vad import SR, SileroVAD
from ..models.whisper import MAX_LID_S, LangProbs, WhisperBackend, load_whisper
from ..record import Row, drop, is_ok
from .base import Stage

log = logging.getLogger(__name__)

_NO_MODEL = object()
SPEECH_GATE, LANG_GATE = BY_NAME["language.min_speech_ratio"], BY_NAME["language.min_lang_prob"]


@dataclass
class _Clip:
    """A clip that passed the speech check, waiting for its language."""

    row: Row
    audio: np.ndarray
    speech: np.ndarray  # what Whisper hears: the speech spans, at most 30 s


class LanguageTagger(Stage):
    name = "language"
    uses_model = True

    @staticmethod
    def units_per_call(cfg: BuildConfig) -> int:
        return max(1, int(cfg.language.batch_size))  # short videos of one clip each still fill a Whisper batch

    def __init__(self, cfg: BuildConfig, whisper: WhisperBackend | None = None, vad=None, diarizer=_NO_MODEL):
        """Models load here, once per actor; tests may inject fakes (diarizer=None means 'no checkpoint')."""
        super().__init__(cfg)
        self.lcfg = cfg.language
        self.whisper = whisper or load_whisper(self.lcfg.whisper, cfg.models_dir)
        self.vad = vad or SileroVAD()
        self.diarizer = load_diarizer(self.lcfg.diarization, cfg.models_dir) if diarizer is _NO_MODEL else diarizer
        self.batch_size = max(1, int(self.lcfg.batch_size))

    def process(self, row: Row) -> Row:
        return self.run_video([row])[0]

    def run_video(self, rows: list[Row]) -> list[Row]:
        """All clips of one video, `batch_size` at a time (bounded memory): VAD per clip, one batched Whisper
        language-ID pass over those with speech, then the checks. Rows are updated in place, order kept."""
        todo = [r for r in rows if is_ok(r)]
        for i in range(0, len(todo), self.batch_size):
            clips = [c for r in todo[i : i + self.batch_size] if (c := self._guard(r, self._prepare, r)) is not None]
            if not clips:
                continue
            try:
                probs: list[LangProbs | None] = list(self.whisper.detect([c.speech for c in clips]))
            except Exception as exc:  # retry one by one so one bad clip cannot drop its neighbours
                log.warning("language: batched detect failed (%s); retrying clip by clip", exc)
                probs = [self._guard(c.row, lambda c=c: self.whisper.detect([c.speech])[0]) for c in clips]
            for clip, p in zip(clips, probs, strict=True):
                if p is not None and is_ok(clip.row):
                    self._guard(clip.row, self._finish, clip, p)
        return rows

    def _guard(self, row: Row, fn, *args):
        """Run fn (transient failures retried); an exception becomes this row's "error" drop or retry_later
        (as Stage.__call__ does)."""
        try:
            return self.attempt(lambda: fn(*args), row.get("key"))
        except Exception as exc:
            self.failed(row, exc)
            return None

    def _prepare(self, row: Row) -> _Clip | None:
        start = float(row.get("start_s") or 0.0)
        end = row.get("end_s")
        row.update(lang="", lang_prob=0.0, lang_top3="[]", speech_ratio=0.0, n_speakers=-1,
                   speaker_check=NOT_RUN, transcript="", lang_model=self.whisper.name)  # fmt: skip
        audio = read_audio(row["audio_path"], start, None if end is None else float(end))
        if audio.size < SR // 10:
            drop(row, "no_speech", self.name, f"no audio in [{start:.2f}, {end}) of {row['audio_path']}")
            return None
        spans = self.vad(audio)
        row["speech_ratio"] = round(spans.ratio, 4)
        if SPEECH_GATE.fails(row, self.lcfg):  # on the stored (rounded) value, as finalize re-decides it
            drop(row, "no_speech", self.name, f"speech ratio {spans.ratio:.2f} < {self.lcfg.min_speech_ratio}")
            return None
        speech = spans.speech_audio(audio, MAX_LID_S)
        if speech.size < SR // 2:  # too little detected speech to listen to alone (min_speech_ratio ~ 0)
            speech = audio[: int(MAX_LID_S * SR)]
        return _Clip(row, audio, speech)

    def _finish(self, clip: _Clip, probs: LangProbs) -> None:
        row = clip.row
        lang, prob = probs[0]
        row.update(lang=lang, lang_prob=round(float(prob), 4),
                   lang_top3=json.dumps([[c, round(float(p), 4)] for c, p in probs[:3]]))  # fmt: skip
        expected = row.get("lang_expected") or ""
        if LANG_GATE.fails(row, self.lcfg):
            drop(row, "lang_uncertain", self.name, f"{lang} at p={prob:.2f} < {self.lcfg.min_lang_prob}")
            return
        if expected and lang != expected:
            drop(row, "lang_mismatch", self.name, f"heard {lang} (p={prob:.2f}), manifest says {expected}")
            return
        if self.diarizer is not None:
            n = int(self.diarizer(clip.audio))
            row.update(n_speakers=n, speaker_check=getattr(self.diarizer, "name", "pyannote"))
            if n > 1:
                drop(row, "multi_speaker", self.name, f"{n} speakers")
                return
        if self.lcfg.transcribe:
            row["transcript"] = self.whisper.transcribe(clip.audio, lang)
