"""CPU seconds of a process tree (a child and everything it spawns, e.g. a Ray cluster), read from /proc.

Why: wall time on a shared 2-core machine says little; CPU seconds do not depend on the other jobs. A Ray run's
daemons and workers are descendants of the driver, but their time never reaches the driver's rusage (raylet does
not wait for its workers the way a shell does), so `os.times()` children totals miss them. Instead the tree is
polled and each pid's own user+system time is kept at its last reading: a process that lives less than one poll
interval is missed, as is the last interval of each process (an under-count of at most `interval` CPU s each).
"""

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
    """Poll the tree under `root` (root included) every `interval` s; `.total()` = the sum of each pid's own CPU s."""

    def __init__(self, root: int, interval: float = 0.1):
        self.root, self.interval = root, interval
        self.own: dict[int, float] = {}  # pid -> own CPU s at its last reading (kept after it exits)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        live = {int(e): st for e in os.listdir("/proc") if e.isdigit() and (st := _stat(int(e))) is not None}
        children: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in live.items():
            children.setdefault(ppid, []).append(pid)
        tree, frontier = {self.root}, [self.root, *self.own]  # re-parented pids stay watched, with their children
        while frontier:
            for c in children.get(frontier.pop(), []):
                if c not in tree:
                    tree.add(c)
                    frontier.append(c)
        for pid in tree | set(self.own):
            if pid in live:
                self.own[pid] = live[pid][1]

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._poll()
            time.sleep(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def total(self) -> float:
        return sum(self.own.values())


def run_measured(cmd: list[str], **kw) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run cmd; return (completed process, wall s, CPU s of its whole tree, daemons included)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    meter = TreeCPU(proc.pid)
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    meter.stop()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), wall, meter.total()


def process_cpu(children: bool = False) -> float:
    """CPU seconds of this process (all threads) so far; with `children`, plus its reaped children (ffmpeg)."""
    t = os.times()
    return t.user + t.system + ((t.children_user + t.children_system) if children else 0.0)
