"""What every stage shares: pass-through of dropped rows, fan-out, and turning a crash on one item into a drop.

A stage is a plain class: heavy things load once in `__init__(cfg: BuildConfig)` (once per Ray actor) and
`process(row)` handles one ok row, returning the row (possibly dropped) or a list of rows (fan-out: shots,
face tracks, search results). `__call__` adds the rules every stage obeys, so stage code stays about its job.
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

from ..config import BuildConfig
from ..gates import origin
from ..record import Row, drop, is_ok

log = logging.getLogger(__name__)


class Stage:
    name: str = "stage"  # must be a key of record.DROP_REASONS
    uses_model: bool = False  # model stages run as Ray actor pools (GPU when present)
    # also process rows a soft gate dropped (pipeline/gates.py), so `pipeline.select` can re-keep them
    scores_soft_drops: bool = False

    def __init__(self, cfg: BuildConfig):
        self.cfg = cfg

    def process(self, row: Row) -> Row | list[Row]:
        raise NotImplementedError

    def video_dir(self, row: Row) -> Path:
        """`<out>/work/<lang>/<video_key>/`, created: where every stage keeps the files of one source video."""
        d = Path(self.cfg.work_dir) / row["lang_expected"] / row["video_key"]
        d.mkdir(parents=True, exist_ok=True)
        return d

    def __call__(self, row: Row) -> list[Row]:
        if not is_ok(row) and not (self.scores_soft_drops and origin(row)[0] == "soft"):
            return [row]
        try:
            out = self.process(row)
        except Exception as exc:  # one bad item never kills a run: it becomes a recorded drop
            log.warning("%s: %s failed on %s: %s", self.name, type(exc).__name__, row.get("key"), exc)
            log.debug("%s", traceback.format_exc())
            return [drop(row, "error", self.name, f"{type(exc).__name__}: {exc}")]
        return out if isinstance(out, list) else [out]

    def run_video(self, rows: list[Row]) -> list[Row]:
        """All rows of one source video through this stage (the unit of work in the Ray graph)."""
        out: list[Row] = []
        for row in rows:
            out.extend(self(row))
        return out
