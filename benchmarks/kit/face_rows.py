"""The row FaceTrack receives for a whole 25 fps file taken as one shot from t = 0, without download, normalize
or shots having run: how tests and benchmarks feed the faces stage real clips they made with ffmpeg. It carries
what normalize reads from the source that later gates decide on (`source_qp`, pipeline/source_qp.py)."""

from __future__ import annotations

from pathlib import Path

from pipeline import source_qp
from pipeline.media import probe
from pipeline.record import FPS, make_key, seed_row


def shot_row(path: str | Path, source_id: str, start_s: float = 0.0, end_s: float | None = None, lang: str = "en") -> dict:
    """Shot 0 of `path` from start_s to end_s (default: the file's whole frames at FPS)."""
    info = probe(path)
    row = seed_row(lang, source_id, str(path))
    row.update(norm_path=str(path), start_s=start_s, shot_index=0, key=make_key(lang, source_id, shot=0), fps=float(FPS),
               end_s=end_s if end_s is not None else round(info["duration_s"] * FPS) / FPS,
               width=info["width"], height=info["height"])  # fmt: skip
    row.update(source_qp.of_source(path, info["duration_s"]))
    return row
