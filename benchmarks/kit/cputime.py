"""CPU seconds of a process tree (a child and everything it spawns, e.g. a Ray cluster), read from /proc.

Why: wall time on a shared 2-core machine says little; CPU seconds do not depend on the other jobs. A Ray run's
daemons and workers are descendants of the driver, but some are never reaped by it, so `os.times()` children
totals miss them: instead the tree is polled, each pid's own time kept at its last reading, and a pid that was
reaped by a watched parent is not counted twice (its time moves into the parent's children total).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float, float] | None:
    """(ppid, own CPU s, reaped children's CPU s) of a live pid, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "
    ppid = int(fields[1])
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return ppid, (utime + stime) / _TICK, (cutime + cstime) / _TICK


class TreeCPU:
    """Poll the descendants of `root` every `interval` s. `.orphans()` is the CPU seconds of those never reaped
    into the root's own rusage (re-parented daemons); add the root's rusage (os.times children) for the total."""

    def __init__(self, root: int, interval: float = 0.2):
        self.root, self.interval = root, interval
        self.seen: dict[int, tuple[int, float, float]] = {}  # pid -> last (ppid, own, reaped children)
        self.gone = 0.0  # exited pids whose time reached no watched parent
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        live = {int(e): st for e in os.listdir("/proc") if e.isdigit() and (st := _stat(int(e))) is not None}
        children: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in live.items():
            children.setdefault(ppid, []).append(pid)
        tree, frontier = set(), [self.root, *self.seen]
        while frontier:
            for c in children.get(frontier.pop(), []):
                if c not in tree:
                    tree.add(c)
                    frontier.append(c)
        for pid in [p for p in self.seen if p not in live]:
            ppid, own, kids = self.seen.pop(pid)
            if not (ppid == self.root or ppid in live and (ppid in self.seen or ppid in tree)):
                self.gone += own + kids  # re-parented outside the tree, or its parent died first
        for pid in tree | set(self.seen):
            if pid in live:
                self.seen[pid] = live[pid]

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._poll()
            time.sleep(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def orphans(self) -> float:
        """Time of watched pids that will not show up in the root's rusage (still alive, or reaped elsewhere)."""
        self._poll()
        return self.gone + sum(own + kids for _, own, kids in self.seen.values())


def run_measured(cmd: list[str], **kw) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run cmd; return (completed process, wall s, CPU s of its whole tree, daemons included)."""
    before = os.times()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    meter = TreeCPU(proc.pid)
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    meter.stop()
    after = os.times()
    reaped = after.children_user + after.children_system - before.children_user - before.children_system
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), wall, reaped + meter.orphans()
