"""Audio-visual offset and confidence; drop clips whose lips and audio disagree; write the re-aligned clip audio.

Scorers share one interface: `score(frames_or_track, audio_16k, fps=25, audio_lead_frames=0) -> (offset, conf)`
and `curve(...)` with the per-offset values for debugging. Positive offset = audio lags video (the audio must be
moved earlier by that many frames). The stage reads search_frames of audio context on each side of the clip so
shifted audio is compared with real audio, not padding, and stores the raw offset and confidence on every row.

The kept clip's audio is moved by the measured offset so it sits at offset 0, as DESIGN says (`sync.realign:
auto` does that for scorers marked `offset_reliable`: SyncNet and the weight-free scorers, whose in-sync reading
is within +-1 frame on 62-77 % of held-out speakers, benchmarks/RESULTS_sync.md section E, so a misread clip
gets its audio moved wrongly; `always` moves it for any scorer, `never` keeps the source audio as it is). The raw
offset and confidence are stored either way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import media
from ..config import BuildConfig, check_choices
from ..gates import first_failing
from ..models.sync_energy import HOP, SR
from ..models.sync_loader import load_sync_scorer
from ..record import FPS, Row, drop
from ..track_io import read_track
from .base import Stage


def read_context_audio(path: str, start_s: float, n_frames: int, lead: int) -> np.ndarray:
    """Audio of frames [-lead, n + lead) around the clip, zero-padded where the file has none."""
    want = (n_frames + 2 * lead) * HOP
    t0 = start_s - lead / FPS
    a = media.read_audio(path, max(t0, 0.0), start_s + (n_frames + lead) / FPS, sr=SR)
    front = int(round(max(-t0, 0.0) * SR))
    a = np.concatenate([np.zeros(front, np.float32), a])[:want]
    return np.concatenate([a, np.zeros(want - len(a), np.float32)])


def aligned_clip_audio(context: np.ndarray, n_frames: int, lead: int, offset: int) -> np.ndarray:
    """N*640 samples of the clip with the audio moved by `offset` frames (zero where unavailable)."""
    s = (lead + offset) * HOP
    out = np.zeros(n_frames * HOP, np.float32)
    src0, src1 = max(s, 0), min(s + len(out), len(context))
    if src1 > src0:
        out[src0 - s : src1 - s] = context[src0:src1]
    return out


class SyncFilter(Stage):
    name = "sync"
    uses_model = True

    def __init__(self, cfg: BuildConfig):
        super().__init__(cfg)
        check_choices(cfg, "sync stage")  # before any weights load
        self.scorer = load_sync_scorer(cfg)

    @property
    def realigns(self) -> bool:
        """Whether kept clips get their audio moved to the measured offset (see the module docstring)."""
        mode = self.cfg.sync.realign
        return mode == "always" or (mode == "auto" and bool(getattr(self.scorer, "offset_reliable", True)))

    def process(self, row: Row) -> Row | list[Row]:
        sc = self.cfg.sync
        size = int(getattr(self.scorer, "input_size", 224))  # decode small: 20 s of 512 px RGB would be 390 MB
        full = media.probe(row["crop_path"]).get("width") or size
        frames = media.read_frames(row["crop_path"], size=(size, size))
        n = len(frames)
        if n < 2 * FPS:  # too few frames for a trustworthy curve: unverifiable sync is not kept
            return drop(row, "out_of_sync", self.name, f"crop has {n} frames, too short to measure sync")
        video: dict = {"frames": frames}
        track_path = row.get("track_path")
        if track_path and Path(track_path).is_file():
            landmarks = read_track(track_path)["landmarks_crop"]
            if len(landmarks) == n:
                video["landmarks_crop"] = landmarks * (size / full)
        lead = sc.search_frames
        context = read_context_audio(row["audio_path"], float(row["start_s"]), n, lead)
        curve = self.scorer.curve(video, context, FPS, audio_lead_frames=lead)
        row["av_offset_frames"] = int(curve.offset)
        row["sync_conf"] = float(curve.conf)
        row["sync_scorer"] = self.scorer.name
        # the clip audio is written for dropped clips too: the sync gate is soft (pipeline/gates.py), so
        # `pipeline.select` with a looser threshold can keep them without re-running any model
        shift = int(curve.offset) if self.realigns else 0
        wav = Path(row["crop_path"]).parent / f"{row['key']}.wav"
        media.write_wav(aligned_clip_audio(context, n, lead, shift), wav, SR)
        row["clip_wav_path"] = str(wav)
        row["sync_shift_frames"] = shift
        gate = first_failing(row, self.cfg, self.name)
        return drop(row, gate.reason, self.name, gate.detail(row, self.cfg)) if gate else row
