"""Helpers of the reliability tests: the stand-in stages, a fault-free reference run, a size-limited tmpfs.

The builds run in a subprocess exactly as a user runs them (benchmarks/kit/faultkit.py). Most use the stand-in
stages (Download, Normalize, ShotSplit and tests/helpers/stand_in_stages.py's FillClipFiles, which cuts the clip
files from the real normalised video): these tests are about what happens around the stages, not about faces or
sync; Ray only where Ray is the point. A fault-free run of the same manifest is the reference a faulty run must end up equal to.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

from benchmarks.kit import faultkit
from benchmarks.kit.faultkit import FaultServer, index_rows, manifest, pending, shard_json, shard_keys
from pipeline.stages.base import Stage
from tests.helpers.resume_stages import CLIPS  # short real talking clips, one speaker each

__all__ = ["CLIPS", "FaultServer", "index_rows", "manifest", "pending", "shard_json", "shard_keys"]

STAND_IN = "Download,Normalize,ShotSplit,tests.helpers.stand_in_stages:FillClipFiles"
# Fast retries and one shard per kept video (so a lost or duplicated video shows in the shard list).
FAST_YAML = "retry: {attempts: 2, backoff_s: 0.05}\nsink: {shard_max_count: 1}\n"


def build(out: Path, manifests: Path, *args: str, stages: str | None = STAND_IN, **kw) -> subprocess.CompletedProcess:
    return faultkit.build(out, manifests, *args, stages=stages, **kw)


def clip_manifest(dirpath: Path, shared_media: Path, clips: tuple[str, ...] = CLIPS) -> Path:
    return manifest(dirpath, {Path(c).stem.lower(): str(shared_media / "video_av" / c) for c in clips})


def fast_config(dirpath: Path, extra: str = "") -> Path:
    dirpath.mkdir(parents=True, exist_ok=True)
    path = dirpath / "build.yaml"
    path.write_text(FAST_YAML + extra)
    return path


def assert_same_result(out: Path, reference: Path) -> None:
    """No good clip lost or duplicated, every clip once in the index, every drop with its reason, nothing left."""
    got, want = shard_keys(out), shard_keys(reference)
    assert [k for k, n in Counter(got).items() if n > 1] == [], "duplicated samples"
    assert sorted(got) == sorted(want), f"kept keys differ: missing {set(want) - set(got)}, extra {set(got) - set(want)}"
    rows = index_rows(out)
    assert sorted(r["key"] for r in rows) == sorted(r["key"] for r in index_rows(reference))
    assert all(r["drop_reason"] for r in rows if r["status"] != "ok"), "a drop without its reason"
    assert {r["status"] for r in rows} <= {"ok", "dropped"}
    assert pending(out) == [] and not list(out.rglob("*.tmp"))


# Lines Ray's log monitor forwards from the raylet and workers ("(raylet) ...", "(MapWorker pid=12) ..."), often
# ANSI-coloured: they reach the driver's stderr asynchronously, so they may land after the build's own last line.
_RAY_FORWARDED = re.compile(r"^(\x1b\[[0-9;]*m)*\((raylet|\S[^\n]*? pid=\d+[^)]*|pid=\d+[^)]*)\)")


def last_line(proc: subprocess.CompletedProcess) -> str:
    """The build's final line: the summary on stdout, or the one error line on stderr (Ray's forwarded logs aside)."""
    text = proc.stdout if proc.stdout.strip() else proc.stderr
    lines = [x for x in text.strip().splitlines() if x.strip() and not _RAY_FORWARDED.match(x.strip())]
    return lines[-1] if lines else ""


_REFS: dict[str, Path] = {}


def reference(tmp_path_factory, manifests: Path, config: Path, stages: str = STAND_IN) -> Path:
    """The out dir of one fault-free run of this manifest + config (cached per session)."""
    tag = f"{manifests}|{config}|{stages}"
    if tag not in _REFS:
        out = tmp_path_factory.mktemp("reference") / "out"
        proc = build(out, manifests, config=config, stages=stages)
        assert proc.returncode == 0, proc.stderr[-3000:]
        _REFS[tag] = out
    return _REFS[tag]


def can_mount_tmpfs() -> bool:
    """Whether this machine lets an unprivileged user namespace mount a size-limited tmpfs."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            "d=$(mktemp -d) && mount -t tmpfs -o size=1m tmpfs $d && umount $d && rmdir $d"],
                           capture_output=True, timeout=30)  # fmt: skip
    return probe.returncode == 0


def on_tmpfs(mountpoint: Path, size: str) -> list[str]:
    """A command prefix running the rest with a `size` tmpfs mounted on `mountpoint` (gone when it exits)."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    return ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
            f'mount -t tmpfs -o size={size} tmpfs "{mountpoint}" && exec "$@"', "sh"]  # fmt: skip


class NoModelsAllowed(Stage):
    """A model stage that refuses to be built: a rerun with nothing to do must never construct a stage."""

    name = "faces"
    uses_model = True

    def __init__(self, cfg):
        raise RuntimeError("a model stage was built although nothing was left to do")
