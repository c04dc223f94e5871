"""The score gates, in one place: the stages decide with them, and finalize/select re-decide with them.

A gate compares one score column of a row with one setting (keep when score >= a minimum, or <= a maximum).
Which gates stop work (a row they drop never reaches later stages) and which do not:

  hard   faces (face size, presence, mean pose) and language (speech ratio, language probability): what follows
         them is the expensive part (per-frame landmarks and the crop encode; Whisper) or needs their result.
         `select` can tighten them (the scores exist on every row that passed); a row such a gate dropped never
         got later scores, so a loosened hard gate only *counts* the rows that would need a rebuild.
  soft   sync (offset, confidence) and quality (brightness, native face detail and blockiness, max pose): a row
         they drop still gets its clip audio written and its quality measured, so `select` re-decides them in
         both directions. The crop's sharpness is a fallback gate: it decides only rows without the native
         face measures (`unless`), as the quality stage always did.

`decide` is the one decision both a build's finalize and `pipeline.select` apply to a ledger row, so a select
with a build's thresholds keeps exactly what the build kept. A drop whose reason is a gate's but whose score is
missing (sync's "too short to measure") is structural, like every non-gate reason: it stays dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .record import STAGES, Row

SOFT_STAGES = ("sync", "quality")


@dataclass(frozen=True)
class Gate:
    label: str
    stage: str
    reason: str
    score: str
    section: str
    setting: str
    keep: str  # "min": keep score >= threshold; "max": keep score <= threshold
    use_abs: bool = False
    unless: str = ""  # a score that replaces this gate: when the row has it measured, this gate does not apply

    @property
    def name(self) -> str:
        return f"{self.section}.{self.setting}"

    @property
    def soft(self) -> bool:
        return self.stage in SOFT_STAGES

    def threshold(self, cfg: Any) -> float:
        """From a BuildConfig, or from the stage's own section config (a FacesConfig for faces gates)."""
        return float(getattr(getattr(cfg, self.section, cfg), self.setting))

    def value(self, row: Row) -> float | None:
        """The row's score for this gate, None when unmeasured (or when the `unless` score replaces it)."""
        if self.unless and _number(row.get(self.unless)) is not None:
            return None
        v = _number(row.get(self.score))
        return None if v is None else abs(v) if self.use_abs else v

    def fails(self, row: Row, cfg: Any) -> bool:
        v = self.value(row)
        if v is None:  # the score was never measured (the stage did not run): nothing to decide on
            return False
        t = self.threshold(cfg)
        return v < t if self.keep == "min" else v > t

    def detail(self, row: Row, cfg: Any) -> str:
        op = "<" if self.keep == "min" else ">"
        score = f"|{self.score}|" if self.use_abs else self.score
        return f"{self.label}: {score} {self.value(row):.4g} {op} {self.threshold(cfg):g} ({self.name})"


def _number(v: Any) -> float | None:
    if v is None or isinstance(v, str) or (isinstance(v, float) and math.isnan(v)):
        return None
    return float(v)


GATES: tuple[Gate, ...] = (
    Gate("face size (px)", "faces", "small_face", "face_px", "faces", "min_face_px", "min"),
    Gate("face presence", "faces", "track_broken", "take_coverage", "faces", "min_presence", "min"),
    Gate("speech ratio", "language", "no_speech", "speech_ratio", "language", "min_speech_ratio", "min"),
    Gate("language probability", "language", "lang_uncertain", "lang_prob", "language", "min_lang_prob", "min"),
    Gate("sync offset (frames)", "sync", "out_of_sync", "av_offset_frames", "sync", "max_offset_frames", "max", True),
    Gate("sync confidence", "sync", "out_of_sync", "sync_conf", "sync", "min_conf", "min"),
    Gate("lip motion", "quality", "no_lip_motion", "mouth_range", "quality", "min_mouth_range", "min"),
    Gate("brightness", "quality", "too_dark", "brightness", "quality", "min_brightness", "min"),
    Gate("repeated frames", "quality", "low_frame_rate", "frame_repeat_ratio", "quality", "max_frame_repeat", "max"),
    Gate("face detail (px)", "quality", "blurry", "face_detail_px", "quality", "min_face_detail_px", "min"),
    Gate("face blockiness", "quality", "blurry", "face_blockiness", "quality", "max_blockiness", "max"),
    Gate("source quantiser (H.264 QP)", "quality", "blurry", "source_qp", "quality", "max_source_qp", "max"),
    Gate("sharpness", "quality", "blurry", "sharpness", "quality", "min_sharpness", "min", unless="face_detail_px"),
    Gate("max |yaw| (quality)", "quality", "extreme_pose", "yaw_abs_max", "quality", "max_abs_yaw", "max"),
    Gate("max |pitch| (quality)", "quality", "extreme_pose", "pitch_abs_max", "quality", "max_abs_pitch", "max"),
)
BY_NAME: dict[str, Gate] = {}
for _g in GATES:
    BY_NAME.setdefault(_g.name, _g)


def first_failing(row: Row, cfg: Any, stage: str | None = None) -> Gate | None:
    """The first gate (of `stage`, or of all stages in pipeline order) the row fails, or None."""
    return next((g for g in GATES if (stage is None or g.stage == stage) and g.fails(row, cfg)), None)


def origin(row: Row) -> tuple[str, int]:
    """How a ledger row was decided: ("ok" | "soft" | "hard" | "structural", index of its last gate or -1)."""
    if row.get("status") == "ok":
        return "ok", -1
    stage, reason = row.get("drop_stage", ""), row.get("drop_reason", "")
    mine = [i for i, g in enumerate(GATES) if g.stage == stage and g.reason == reason and g.value(row) is not None]
    if not mine:
        return "structural", -1
    return ("soft" if GATES[mine[-1]].soft else "hard"), mine[-1]


@dataclass
class Decision:
    status: str  # "ok" | "dropped"
    stage: str = ""
    reason: str = ""
    detail: str = ""
    rebuild: str = ""  # a gate name: the row might pass it now, but only a rebuild can measure the rest


def _stage_index(stage: str) -> int:
    return STAGES.index(stage) if stage in STAGES else len(STAGES)


def decide(row: Row, cfg: Any) -> Decision:
    """The row's fate under `cfg`, from its stored scores (see the module docstring for the rules)."""
    kind, last = origin(row)
    kept_as = Decision("dropped", row.get("drop_stage", ""), row.get("drop_reason", ""), row.get("drop_detail", ""))
    if kind in ("ok", "soft"):
        candidates = GATES
    elif kind == "hard":
        candidates = GATES[: last + 1]
    else:  # structural: only gates of earlier stages can change the reason (a rebuild would drop it sooner)
        here = _stage_index(row.get("drop_stage", ""))
        candidates = tuple(g for g in GATES if _stage_index(g.stage) < here)
    g = next((g for g in candidates if g.fails(row, cfg)), None)
    if g is not None:
        return Decision("dropped", g.stage, g.reason, g.detail(row, cfg))
    if kind in ("ok", "soft"):
        return Decision("ok")
    if kind == "hard":
        kept_as.rebuild = GATES[last].name
    return kept_as
