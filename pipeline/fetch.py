"""yt-dlp in a child process the download stage can kill: a wall-clock deadline and a byte cap per download.

Why a child: a server that drips a byte every few seconds never trips a per-read socket timeout, and yt-dlp's
`max_filesize` only checks a Content-Length the server may not send. The parent (`run_job`) polls the child and
the bytes it has written to the work dir, and kills the child's whole process group (yt-dlp may run ffmpeg) at
`deadline_s` or `max_bytes`; the child also refuses early through `max_filesize` and a progress hook.

Protocol: `python -m pipeline.fetch` reads one JSON job on stdin and writes one JSON result on stdout:
job    {"op": "download" | "search", "url": str, "opts": {yt-dlp options}, "max_duration_s", "max_bytes",
        "deadline_s"}
result {"ok": bool, "info": {...} | None, "error": str, "transient": bool, "too_large": bool, "too_long": str}
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
INFO_KEYS = ("id", "title", "channel", "uploader", "duration", "license", "webpage_url", "url", "is_live", "ext")
POLL_S = 0.2


class LimitExceeded(Exception):
    """The parent stopped the child: `kind` is "deadline" or "too_large"."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def _dir_bytes(d: Path) -> int:
    total = 0
    for p in d.glob("*"):
        try:
            total += p.stat().st_size if p.is_file() else 0
        except OSError:
            pass
    return total


def run_job(job: dict[str, Any], deadline_s: float, max_bytes: int, watch_dir: Path | None) -> dict[str, Any]:
    """Run one job in a child; LimitExceeded when it passes the deadline or writes more than max_bytes."""
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.fetch"], stdin=subprocess.PIPE, stdout=out,
                                stderr=err, env=env, start_new_session=True)  # fmt: skip
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(job).encode("utf-8"))
        proc.stdin.close()
        t0 = time.monotonic()
        try:
            while proc.poll() is None:
                elapsed = time.monotonic() - t0
                got = _dir_bytes(watch_dir) if watch_dir is not None else 0
                if elapsed > deadline_s:
                    raise LimitExceeded("deadline", f"download deadline of {deadline_s:.0f} s passed "
                                        f"({got} bytes in) (download.deadline_s)")  # fmt: skip
                if got > max_bytes:
                    raise LimitExceeded("too_large", f"more than {max_bytes} bytes (download.max_bytes)")
                time.sleep(POLL_S)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        out.seek(0)
        text = out.read().decode("utf-8", "replace").strip().splitlines()
        if proc.returncode != 0 or not text:
            err.seek(0)
            tail = err.read().decode("utf-8", "replace").strip().splitlines()[-3:]
            return {"ok": False, "info": None, "error": f"yt-dlp child exit {proc.returncode}: {' | '.join(tail)}",
                    "transient": proc.returncode < 0, "too_large": False, "too_long": ""}  # fmt: skip
        return json.loads(text[-1])


def _subset(info: dict | None) -> dict[str, Any] | None:
    if not isinstance(info, dict):
        return None
    out: dict[str, Any] = {k: info[k] for k in INFO_KEYS if isinstance(info.get(k), (str, int, float, bool))}
    entries = info.get("entries")
    if entries is not None:
        out["entries"] = [_subset(e) for e in entries if isinstance(e, dict)]
    return out


def _child(job: dict[str, Any]) -> dict[str, Any]:
    import yt_dlp
    from yt_dlp.utils import DownloadCancelled

    from pipeline import faults

    messages: list[str] = []

    class Logger:
        def debug(self, msg: str) -> None:
            messages.append(msg)

        info = warning = error = debug

    class TooLarge(DownloadCancelled):
        pass

    max_bytes, limit = int(job["max_bytes"]), float(job["max_duration_s"])
    too_long: list[str] = []

    def match_filter(entry: dict, *, incomplete: bool = False) -> str | None:
        if entry.get("is_live"):
            too_long.append("live stream: no duration to check against max_duration_s")
        elif (entry.get("duration") or 0) > limit:
            too_long.append(f"{entry['duration']:.0f} s > max_duration_s {limit:.0f}")
        return too_long[-1] if too_long else None

    def hook(d: dict) -> None:
        if (d.get("downloaded_bytes") or 0) > max_bytes:
            raise TooLarge(f"more than {max_bytes} bytes (download.max_bytes)")

    opts = dict(job["opts"], logger=Logger(), progress_hooks=[hook], max_filesize=max_bytes)
    if job["op"] == "download":
        opts["match_filter"] = match_filter
    private = None
    try:
        if opts.get("cookiefile"):  # yt-dlp saves the jar back on exit: concurrent downloads would share one file
            fd, private = tempfile.mkstemp(prefix="cookies-", suffix=".txt")
            with os.fdopen(fd, "wb") as f:
                f.write(Path(opts["cookiefile"]).read_bytes())
            opts["cookiefile"] = private
        with yt_dlp.YoutubeDL(opts) as ydl:
            info = ydl.extract_info(job["url"], download=job["op"] == "download")
    except Exception as exc:
        big = isinstance(exc, TooLarge)
        return {"ok": False, "info": None, "error": faults.describe(exc), "transient": not big and faults.is_transient(exc),
                "too_large": big, "too_long": ""}  # fmt: skip
    finally:
        if private:
            os.unlink(private)
    refused = next((m for m in messages if "larger than max-filesize" in m), "")
    return {"ok": not refused, "info": _subset(info), "error": refused.strip(), "transient": False,
            "too_large": bool(refused), "too_long": too_long[-1] if too_long else ""}  # fmt: skip


def _die_with_parent(deadline_s: float) -> None:
    """The child never outlives its purpose: SIGKILL when the build dies (Linux prctl PR_SET_PDEATHSIG; a
    `kill -9` of the build's process group does not reach this session), and exit past its own deadline."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:  # the parent is already gone
        os._exit(3)
    import threading

    timer = threading.Timer(deadline_s + 30.0, os._exit, args=(3,))
    timer.daemon = True
    timer.start()


if __name__ == "__main__":
    job = json.loads(sys.stdin.read())
    _die_with_parent(float(job.get("deadline_s") or 3600.0))
    result = _child(job)
    sys.stdout.write("\n" + json.dumps(result, default=str) + "\n")
