"""Transient or permanent: the one place that decides whether a failure is the media's fault or the machine's.

A *permanent* failure means the media is bad (corrupt, no audio, too long, no face, HTTP 404, ...): the row is
dropped with its reason and the video is ledgered, so no rerun spends time on it again. A *transient* failure
means the environment failed (disk full, a timeout, a reset connection, memory, a killed worker, HTTP 429/5xx):
the item is retried with backoff a bounded number of times (`retry.attempts`) and, if it still fails, its row
becomes `retry_later`; the sink never ledgers such a video, so the next run tries it again.

Classification reads exception types, errno values, HTTP status codes and, for ffmpeg / yt-dlp, the message text
(ffmpeg reports ENOSPC only as "No space left on device" on stderr). It walks `__cause__` / `__context__` and the
wrapped exception of yt-dlp's DownloadError and Ray's task errors, so a wrapped fault is still recognised.
"""

from __future__ import annotations

import errno
import logging
import re
import subprocess
import time
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

TRANSIENT_ERRNOS: frozenset[int] = frozenset(
    getattr(errno, name) for name in (
        "ENOSPC", "EDQUOT", "EFBIG", "ENOMEM", "EAGAIN", "EBUSY", "EIO", "EMFILE", "ENFILE", "EINTR", "ESTALE",
        "ETIMEDOUT", "ECONNRESET", "ECONNREFUSED", "ECONNABORTED", "EPIPE", "ENETDOWN", "ENETUNREACH",
        "ENETRESET", "EHOSTUNREACH", "EHOSTDOWN",
    ) if hasattr(errno, name)
)  # fmt: skip
TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    TimeoutError, ConnectionError, MemoryError, InterruptedError, subprocess.TimeoutExpired,
)  # fmt: skip
# Type names of other libraries' transient errors (matched by name: importing torch or Ray here would be heavy).
TRANSIENT_TYPE_NAMES: frozenset[str] = frozenset({
    "OutOfMemoryError",  # torch.cuda, ray.exceptions (the memory monitor killed a worker)
    "WorkerCrashedError", "ActorDiedError", "RayActorError", "ActorUnavailableError", "NodeDiedError",
    "ObjectLostError", "OwnerDiedError", "ObjectFetchTimedOutError", "GetTimeoutError", "RaySystemError",
    "LocalRayletDiedError", "TaskUnschedulableError", "ActorUnschedulableError",
    "ReadTimeoutError", "ConnectTimeoutError", "NewConnectionError", "ProtocolError",  # urllib3
    "TransportError", "IncompleteRead", "ContentTooShortError",  # yt-dlp networking, http.client
})
# Message text of a transient fault, as ffmpeg / yt-dlp / onnxruntime / this project print it.
TRANSIENT_TEXT = re.compile(
    r"no space left on device|disk quota exceeded|file too large|cannot allocate memory|out of memory"
    r"|failed to allocate memory|bad_alloc|timed out|time-?out|connection (?:reset|refused|aborted)"
    r"|broken pipe|remote end closed|temporary failure in name resolution|network is unreachable"
    r"|resource temporarily unavailable|too many open files|incompleteread|bytes read, \d+ more expected"
    r"|http error (?:408|429|5\d\d)\b|too many requests|service unavailable|bad gateway",
    re.IGNORECASE,
)
HTTP_STATUS = re.compile(r"HTTP Error (\d{3})")
# A site refusing this session rather than the video (yt-dlp's YouTube messages): every video would fail the same
# way until the limit lifts or the session signs in, so such a video is left for the next run, never dropped.
SESSION_REFUSED = re.compile(
    r"confirm you.{1,3}re not a bot|captcha challenge|has been rate-limited|content isn.{1,3}t available, try again later",
    re.IGNORECASE,
)


class Transient(Exception):
    """Raise to mark a failure transient whatever its type; `retry_now=False` leaves it for the next run at once
    (e.g. a download that used up its whole deadline: trying again in this run would only double the wait)."""

    def __init__(self, message: str, retry_now: bool = True):
        super().__init__(message)
        self.retry_now = retry_now


def http_status_transient(status: int) -> bool:
    """429 (rate limited), 408 and 5xx are the server's momentary problem; other 4xx mean the URL is bad."""
    return status in (408, 429) or 500 <= status <= 599


def _chain(exc: BaseException) -> list[BaseException]:
    """exc and everything it wraps (cause, context, yt-dlp's exc_info, Ray's cause), without cycles."""
    out: list[BaseException] = []
    todo: list[Any] = [exc]
    while todo and len(out) < 16:
        e = todo.pop(0)
        if not isinstance(e, BaseException) or any(e is x for x in out):
            continue
        out.append(e)
        info = getattr(e, "exc_info", None)
        wrapped = info[1] if isinstance(info, tuple) and len(info) > 1 else None
        context = None if e.__suppress_context__ else e.__context__  # `raise X from None` hides what X replaced
        todo += [e.__cause__, context, wrapped, getattr(e, "cause", None)]
    return out


def _one_transient(e: BaseException) -> bool | None:
    """True/False when this one exception decides it, None when it says nothing either way."""
    if isinstance(e, Transient):
        return True
    if isinstance(e, TRANSIENT_TYPES) or type(e).__name__ in TRANSIENT_TYPE_NAMES:
        return True
    if isinstance(e, OSError) and e.errno is not None:
        return e.errno in TRANSIENT_ERRNOS
    status = getattr(e, "status", None)
    if isinstance(status, int) and 100 <= status <= 599:  # yt-dlp / urllib HTTPError
        return http_status_transient(status)
    if getattr(e, "timed_out", False):  # media.MediaError from a timeout
        return True
    returncode = getattr(e, "returncode", None)
    if isinstance(returncode, int) and returncode < 0:  # ffmpeg killed by a signal (the OOM killer's SIGKILL)
        return True
    m = HTTP_STATUS.search(str(e))
    if m:
        return http_status_transient(int(m.group(1)))
    return True if TRANSIENT_TEXT.search(str(e)) or TRANSIENT_TEXT.search(str(getattr(e, "stderr", "") or "")) else None


def is_transient(exc: BaseException) -> bool:
    """Whether retrying could help: disk, network, timeout, memory or a killed worker, not the media."""
    for e in _chain(exc):
        verdict = _one_transient(e)
        if verdict is not None:
            return verdict
    return False


def raise_if_transient(exc: BaseException) -> None:
    """For `except` blocks that turn failures into drops: a transient failure must not become a drop."""
    if is_transient(exc):
        raise exc


def describe(exc: BaseException) -> str:
    return (str(exc) if isinstance(exc, Transient) else f"{type(exc).__name__}: {exc}")[:500]


def retrying(fn: Callable[[], T], *, attempts: int, backoff_s: float, max_backoff_s: float, what: str,
             before: Callable[[], None] | None = None, sleep: Callable[[float], object] | None = None) -> T:
    """fn() with up to `attempts` tries while it fails transiently (sleeping backoff_s, 2x, 4x, ... between);
    permanent failures and the last transient one propagate. `before` runs ahead of every try (fault hook);
    `sleep` (default time.sleep) may return early, e.g. when the run is stopping."""
    delay = backoff_s
    for attempt in range(1, max(1, attempts) + 1):
        try:
            if before is not None:
                before()
            return fn()
        except Exception as exc:
            if attempt >= attempts or not is_transient(exc) or not getattr(exc, "retry_now", True):
                raise
            log.warning("%s: transient failure (try %d of %d), retrying in %.1f s: %s",
                        what, attempt, attempts, delay, describe(exc))  # fmt: skip
            (sleep or time.sleep)(delay)
            delay = min(delay * 2, max_backoff_s)
    raise AssertionError("unreachable")
