"""The in-process graph with its stages overlapped: one thread per stage, videos handed on through small queues.

Why: one video at a time through every stage leaves a core idle whenever a stage waits on one process (the
language model while no ffmpeg runs, the face detector while the shot split could run on the next video). With a
thread per stage, video 2 is in FaceTrack while video 1 is in SyncFilter, as Ray's streaming executor does,
without Ray's daemons. Each stage instance is only ever called from its own thread (cv2 dnn nets are not
thread-safe), the heavy work releases the GIL (ffmpeg children, onnxruntime, OpenCV, torch), and the units come
out in the order they went in.

The last stage (Commit, which writes the ledger) runs in the caller's thread, as in the sequential graph: a
Ctrl-C lands there, so a video whose ffmpeg the same Ctrl-C killed is never committed as a drop. On the way out
(Ctrl-C, an error, the stream closed) the stage threads stop between rows (`Stage.stopping`) and are joined
before the caller goes on: finalize then runs alone, and no thread is inside a native library (ctranslate2,
torch) when the interpreter exits, which aborts the process ("terminate called without an active exception").
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator

from .record import Row
from .stages.base import Stage, Stopped

log = logging.getLogger(__name__)

Unit = list[Row]
_END = object()  # the stream is over
_POLL_S = 0.2  # how often a blocked thread looks at the stop flag
JOIN_S = 120.0  # how long the way out waits for a stage thread to finish the row in hand


class _Failed:
    """An exception raised in a stage thread, carried downstream to be raised in the caller's thread."""

    def __init__(self, exc: BaseException):
        self.exc = exc


def _put(q: queue.Queue, item: object, stop: threading.Event) -> bool:
    """q.put that gives up when the run stops (the consumer went away); False then."""
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event) -> object:
    while not stop.is_set():
        try:
            return q.get(timeout=_POLL_S)
        except queue.Empty:
            continue
    return _END


def _feed(videos: Iterable[Unit], out: queue.Queue, stop: threading.Event) -> None:
    try:
        for unit in videos:
            if not _put(out, unit, stop):
                return
    except BaseException as exc:  # noqa: BLE001 - carried to the caller
        _put(out, _Failed(exc), stop)
        return
    _put(out, _END, stop)


def _work(stage: Stage, split: Callable[[list[Row]], list[Unit]], inq: queue.Queue, out: queue.Queue,
          stop: threading.Event) -> None:
    """Apply `stage` to each unit from `inq`; a failure is passed on (and ends this thread's work)."""
    while True:
        item = _get(inq, stop)
        if item is _END or isinstance(item, _Failed):
            _put(out, item, stop)
            return
        try:
            units = split(stage.apply(item))  # type: ignore[arg-type]
        except Stopped:
            return
        except BaseException as exc:  # noqa: BLE001 - carried to the caller
            _put(out, _Failed(exc), stop)
            return
        for unit in units:
            if not _put(out, unit, stop):
                return


def run_overlapped(stages: list[Stage], videos: Iterable[Unit], split: Callable[[list[Row]], list[Unit]],
                   depth: int = 1) -> Iterator[Unit]:
    """The units that come out of the last stage, as `run_local` yields them (same order), with every stage but
    the last running in its own thread. `split` regroups a stage's output into units (`build.group_by_video`);
    `depth` is how many units wait between two stages (memory stays bounded by the number of stages).
    Closing the iterator early (or an exception in the caller) stops the threads between rows and joins them
    (JOIN_S in all; a thread still busy then is left behind, a daemon, and logged)."""
    if not stages:
        yield from videos
        return
    stop = threading.Event()
    queues = [queue.Queue(maxsize=depth) for _ in stages]
    threads = [threading.Thread(target=_feed, args=(videos, queues[0], stop), name="overlap-feed", daemon=True)]
    for i, stage in enumerate(stages[:-1]):
        stage.stopping = stop
        threads.append(threading.Thread(target=_work, args=(stage, split, queues[i], queues[i + 1], stop),
                                        name=f"overlap-{stage.name}", daemon=True))  # fmt: skip
    for t in threads:
        t.start()
    last = stages[-1]
    try:
        while True:
            item = queues[-1].get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield from split(last.apply(item))  # type: ignore[arg-type]
    finally:
        stop.set()
        deadline = time.monotonic() + JOIN_S
        for t in threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                log.warning("overlap: %s is still busy after %.0f s; leaving without it", t.name, JOIN_S)
        for stage in stages[:-1]:
            stage.stopping = None
