"""Single-speaker check with pyannote.audio speaker diarization from a local checkpoint, or honestly none.

pyannote.audio is optional (it pins torch/torchaudio) and imported lazily. The checkpoint is a pipeline dir
`<models_dir>/pyannote/speaker-diarization*/config.yaml` (as in the hf.co repos, with the segmentation and
embedding models it references stored beside it). Without one the check does not run: rows record
n_speakers=-1 and speaker_check="not_run", never a pass. (A weight-free MFCC-statistics "voice change"
score was tried as extra information and did not separate the 2-speaker pyannote sample from single
speakers, so none is recorded.)
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SR = 16000
NOT_RUN = "not_run"


def find_pyannote(spec: str, models_dir: str | Path) -> Path | None:
    """config.yaml of the diarization pipeline to use, or None when the check cannot run."""
    if spec == "off":
        return None
    if spec not in ("", "auto"):
        p = Path(spec).expanduser()
        cfg = p if p.is_file() else p / "config.yaml"
        if not cfg.is_file():
            raise FileNotFoundError(f"language.diarization={spec!r}: no config.yaml there (expected a pyannote "
                                    "pipeline dir such as speaker-diarization-3.1 with its models)")
        return cfg
    found = sorted((Path(models_dir).expanduser() / "pyannote").glob("speaker-diarization*/config.yaml"))
    return found[-1] if found else None


class PyannoteDiarizer:
    """A pyannote.audio diarization pipeline read from a local config.yaml; counts speakers of one clip."""

    name = "pyannote"

    def __init__(self, config_yaml: str | Path, device: str = "auto", min_speaker_s: float = 0.5):
        try:
            import torch
            from pyannote.audio import Pipeline
        except ImportError as exc:
            raise RuntimeError(f"{config_yaml}: pyannote.audio is not installed; `pip install pyannote.audio` "
                               "or set language.diarization=off (rows then record speaker_check=not_run)") from exc
        pipeline = Pipeline.from_pretrained(str(config_yaml))
        if pipeline is None:
            raise RuntimeError(f"{config_yaml}: pyannote could not build the pipeline (missing model files?)")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.pipeline = pipeline.to(torch.device(device))
        self.min_speaker_s = min_speaker_s

    def __call__(self, audio: np.ndarray) -> int:
        """Speakers with at least `min_speaker_s` of speech in the clip."""
        import torch

        wave = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None]
        out = self.pipeline({"waveform": wave, "sample_rate": SR})
        annotation = getattr(out, "speaker_diarization", out)  # pyannote 4 returns DiarizeOutput, 3.x Annotation
        per_label: dict[str, float] = {}
        for segment, _, label in annotation.itertracks(yield_label=True):
            per_label[label] = per_label.get(label, 0.0) + float(segment.duration)
        return sum(1 for d in per_label.values() if d >= self.min_speaker_s)


def load_diarizer(spec: str, models_dir: str | Path, device: str = "auto") -> PyannoteDiarizer | None:
    """The diarizer, or None (check not run). An explicit path that cannot load raises; "auto" only warns."""
    cfg = find_pyannote(spec, models_dir)
    if cfg is None:
        log.info("diarization: no pyannote checkpoint under %s/pyannote; speaker_check=not_run", models_dir)
        return None
    try:
        return PyannoteDiarizer(cfg, device)
    except Exception as exc:
        if spec not in ("", "auto"):
            raise
        log.warning("diarization: %s; speaker_check=not_run", exc)
        return None

