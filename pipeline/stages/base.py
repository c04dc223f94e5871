"""What every stage shares: pass-through of dropped rows, fan-out, bounded retries of transient failures, and
turning a failure on one item into a drop (the media is bad) or a `retry_later` (the machine failed).

A stage is a plain class: heavy things load once in `__init__(cfg: BuildConfig)` (once per Ray actor) and
`process(row)` handles one ok row, returning the row (possibly dropped) or a list of rows (fan-out: shots,
face tracks, search results). `__call__` adds the rules every stage obeys, so stage code stays about its job:
a transient failure (pipeline/faults.py) is retried `retry.attempts` times with backoff, each try on a fresh
copy of the row, and then marks the row `retry_later`; any other exception becomes the drop reason `error`.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .. import faults, inject
from ..config import BuildConfig
from ..gates import origin
from ..record import STATUS_RETRY, Row, drop, is_ok, retry_later

log = logging.getLogger(__name__)
T = TypeVar("T")


class Stopped(BaseException):
    """The run is stopping (pipeline/overlap.py set the stage's `stopping`): a BaseException, so no stage turns it
    into a drop, and the unit in hand is left for the next run."""


class Stage:
    name: str = "stage"  # must be a key of record.DROP_REASONS
    # set by the overlapped in-process graph (pipeline/overlap.py): once set, run_video stops between rows
    stopping: threading.Event | None = None
    uses_model: bool = False  # model stages run as Ray actor pools (GPU when present)
    # also process rows a soft gate dropped (pipeline/gates.py), so `pipeline.select` can re-keep them
    scores_soft_drops: bool = False

    @staticmethod
    def units_per_call(cfg: BuildConfig) -> int:
        """Units of work (videos, parts) the Ray graph hands this stage per call; 0 = one at a time. A stage that
        batches a model across clips says more, so its batches fill across videos (pipeline/build.py)."""
        return 0

    def __init__(self, cfg: BuildConfig):
        self.cfg = cfg

    def process(self, row: Row) -> Row | list[Row]:
        raise NotImplementedError

    def video_dir(self, row: Row) -> Path:
        """`<out>/work/<lang>/<video_key>/`, created: where every stage keeps the files of one source video."""
        d = Path(self.cfg.work_dir) / row["lang_expected"] / row["video_key"]
        d.mkdir(parents=True, exist_ok=True)
        return d

    def attempt(self, fn: Callable[[], T], key: object) -> T:
        """fn() retried while it fails transiently (retry.attempts tries, backoff); other failures propagate.
        In an overlapped run the backoff is cut short when the run stops (the next try then raises Stopped)."""
        r = self.cfg.retry
        sleep = self.stopping.wait if self.stopping is not None else None
        return faults.retrying(fn, attempts=r.attempts, backoff_s=r.backoff_s, max_backoff_s=r.max_backoff_s,
                               what=f"{self.name} {key}", before=self._before_try, sleep=sleep)  # fmt: skip

    def _before_try(self) -> None:
        """Ahead of every try: no retry once the run is stopping (a Ctrl-C also kills the ffmpeg being retried)."""
        self.check_stopping()
        inject.at_try()

    def check_stopping(self) -> None:
        if self.stopping is not None and self.stopping.is_set():
            raise Stopped(f"{self.name}: the run is stopping")

    def failed(self, row: Row, exc: BaseException) -> Row:
        """The row after `exc` escaped its retries: retry_later when transient, else the drop reason "error"."""
        if faults.is_transient(exc):
            log.warning("%s: %s left for the next run after transient failures: %s", self.name, row.get("key"),
                        faults.describe(exc))  # fmt: skip
            return retry_later(row, self.name, faults.describe(exc))
        log.warning("%s: %s failed on %s: %s", self.name, type(exc).__name__, row.get("key"), exc)
        log.debug("%s", traceback.format_exc())
        return drop(row, "error", self.name, faults.describe(exc))

    def __call__(self, row: Row) -> list[Row]:
        if not is_ok(row) and not (self.scores_soft_drops and origin(row)[0] == "soft"):
            return [row]
        token = inject.set_stage(self.name)
        try:
            out = self.attempt(lambda: self.process(dict(row)), row.get("key"))
        except Exception as exc:  # one bad item never kills a run: it becomes a drop or a retry_later
            return [self.failed(row, exc)]
        finally:
            inject.reset_stage(token)
        return out if isinstance(out, list) else [out]

    def run_video(self, rows: list[Row]) -> list[Row]:
        """All rows of one source video through this stage (the unit of work in the Ray graph)."""
        out: list[Row] = []
        for row in rows:
            self.check_stopping()
            out.extend(self(row))
        return out

    def apply(self, rows: list[Row]) -> list[Row]:
        """run_video as the build calls it: a video with a retry_later row passes through untouched (the whole
        video is redone by the next run, so working on its other clips now would be wasted)."""
        if any(r.get("status") == STATUS_RETRY for r in rows):
            return rows
        token = inject.set_stage(self.name)
        try:
            return self.run_video(rows)
        finally:
            inject.reset_stage(token)
