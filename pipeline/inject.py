"""Fault injection for the reliability tests and benchmarks; inert unless the environment variable TFW_FAULTS is set.

`TFW_FAULTS="normalize:enospc:2,faces:oom:3"` fires, at most the given number of times in total, a transient
fault while the named stage (or `*`: any) works. Where a fault fires depends on its kind:

  at an ffmpeg/ffprobe call (`media.run`), as ffmpeg itself reports it:
    enospc     exit 1, "No space left on device" on stderr (only calls that write a file)
    timeout    the call ran past its timeout
    killed     ffmpeg killed by SIGKILL (what the kernel's OOM killer does)
  at the start of each try of one item (`faults.retrying`):
    oom        MemoryError
    diskfull   OSError(ENOSPC)
    reset      ConnectionResetError
    sigkill    the worker process kills itself with SIGKILL (a crashed / OOM-killed Ray worker)

The budget is shared by every process of a build and across reruns through marker files in TFW_FAULTS_DIR (one
O_EXCL file per fired fault); without it the budget is per process. `fired()` counts what has fired.
"""

from __future__ import annotations

import contextvars
import errno
import os
import signal
from pathlib import Path

ENV, STATE_ENV = "TFW_FAULTS", "TFW_FAULTS_DIR"
RUN_KINDS = ("enospc", "timeout", "killed")
STAGE_KINDS = ("oom", "diskfull", "reset", "sigkill")

_stage: contextvars.ContextVar[str] = contextvars.ContextVar("tfw_stage", default="")
_local_counts: dict[str, int] = {}


def set_stage(name: str) -> contextvars.Token:
    return _stage.set(name)


def reset_stage(token: contextvars.Token) -> None:
    _stage.reset(token)


def parse(spec: str) -> list[tuple[str, str, int]]:
    """[(stage, kind, budget)] from "stage:kind:n,..."; ValueError names a bad entry."""
    out = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        stage, _, rest = part.partition(":")
        kind, _, n = rest.partition(":")
        if kind not in RUN_KINDS + STAGE_KINDS or not n.isdigit():
            raise ValueError(f"{ENV}: bad entry {part!r} (stage:kind:count, kinds {RUN_KINDS + STAGE_KINDS})")
        out.append((stage, kind, int(n)))
    return out


def _take(tag: str, budget: int) -> bool:
    """Claim one unit of the budget of `tag`; False once it is spent."""
    state = os.environ.get(STATE_ENV)
    if not state:
        if _local_counts.get(tag, 0) >= budget:
            return False
        _local_counts[tag] = _local_counts.get(tag, 0) + 1
        return True
    Path(state).mkdir(parents=True, exist_ok=True)
    for i in range(budget):
        try:
            os.close(os.open(os.path.join(state, f"{tag}-{i:04d}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return True
        except FileExistsError:
            continue
    return False


def _due(kinds: tuple[str, ...]) -> str | None:
    spec = os.environ.get(ENV)
    if not spec:
        return None
    stage = _stage.get()
    for want, kind, budget in parse(spec):
        if kind in kinds and want in ("*", stage) and _take(f"{want}-{kind}", budget):
            return kind
    return None


def _writes_file(args: list[str]) -> bool:
    return bool(args) and os.path.basename(str(args[0])) == "ffmpeg" and str(args[-1]) != "-"


def at_run(args: list[str], timeout: float) -> None:
    """Called by media.run before it starts ffmpeg/ffprobe."""
    kind = _due(RUN_KINDS if _writes_file(args) else tuple(k for k in RUN_KINDS if k != "enospc"))
    if kind is None:
        return
    from .media import MediaError

    tool = os.path.basename(str(args[0])) if args else "ffmpeg"
    if kind == "enospc":
        raise MediaError(f"{tool} exit 1: av_interleaved_write_frame(): No space left on device | "
                         "Error writing trailer: No space left on device", returncode=1,
                         stderr="No space left on device")  # fmt: skip
    if kind == "timeout":
        raise MediaError(f"{tool} timed out after {timeout:.0f} s", timed_out=True)
    raise MediaError(f"{tool} exit -9: killed by signal 9", returncode=-9)


def at_try() -> None:
    """Called before every try of one item (see faults.retrying)."""
    kind = _due(STAGE_KINDS)
    if kind == "oom":
        raise MemoryError("injected: out of memory")
    if kind == "diskfull":
        raise OSError(errno.ENOSPC, "injected: No space left on device")
    if kind == "reset":
        raise ConnectionResetError(errno.ECONNRESET, "injected: Connection reset by peer")
    if kind == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)


def fired(state_dir: str | Path) -> dict[str, int]:
    """{"<stage>-<kind>": n fired} from a TFW_FAULTS_DIR."""
    counts: dict[str, int] = {}
    for p in Path(state_dir).glob("*-[0-9][0-9][0-9][0-9]"):
        tag = p.name.rsplit("-", 1)[0]
        counts[tag] = counts.get(tag, 0) + 1
    return counts
