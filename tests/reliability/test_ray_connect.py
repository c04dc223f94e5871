"""Case 5: every way Ray can fail to come up ends in one clear line and exit 2 within a bounded time: a dead
RAY_ADDRESS, an address that accepts connections but never answers, RAY_ADDRESS=auto with no cluster, a local
start that fails (retried once first). Each uses its own empty RAY_TMPDIR, and `auto` runs in its own PID
namespace, so no other build's cluster is ever joined."""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from pipeline import build as build_mod
from tests.reliability.runner import build, fast_config, manifest


@pytest.fixture()
def inputs(tmp_path, shared_media):
    man = manifest(tmp_path / "manifests", {"aoc": str(shared_media / "video_av" / "vexpress_AOC_en_4s.mp4")})
    return man, fast_config(tmp_path)


def _ray_build(tmp_path, inputs, prefix=None, current_cluster: str | None = None, **env):
    """The build on Ray with its own empty RAY_TMPDIR: a short one under /tmp, since Ray's socket paths inside it
    must fit 107 bytes; `current_cluster` pre-seeds it with a `ray start` record (<RAY_TMPDIR>/ray/ray_current_cluster)."""
    man, config = inputs
    with tempfile.TemporaryDirectory(prefix="rt", dir="/tmp") as raytmp:
        if current_cluster is not None:
            (Path(raytmp) / "ray").mkdir()
            (Path(raytmp) / "ray" / "ray_current_cluster").write_text(current_cluster + "\n")
        t0 = time.monotonic()
        proc = build(tmp_path / "out", man, config=config, ray=True, prefix=prefix,
                     extra_env={"RAY_TMPDIR": raytmp, **env}, timeout=300)  # fmt: skip
        return proc, time.monotonic() - t0


def _free_port() -> int:
    """A local port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _own_pid_namespace() -> list[str] | None:
    """A prefix that runs the build where `ps` shows no other process: RAY_ADDRESS=auto falls back to any Ray
    cluster it finds running on the machine (another build's!), so "no cluster" must be made true, not hoped."""
    prefix = ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc"]
    try:
        ok = subprocess.run([*prefix, "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return prefix if ok else None


def _one_error_line(proc) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and proc.stderr.strip().splitlines()[-1] == errors[0], proc.stderr[-2000:]
    return errors[0]


def test_dead_ray_address_is_named_at_once(tmp_path, inputs):
    port = _free_port()
    proc, elapsed = _ray_build(tmp_path, inputs, RAY_ADDRESS=f"127.0.0.1:{port}")
    line = _one_error_line(proc)
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port} (RAY_ADDRESS)" in line
    print(f"dead address refused in {elapsed:.1f} s")


def test_silent_ray_address_gives_up_after_the_connect_timeout(tmp_path, inputs):
    with socket.socket() as srv:  # accepts TCP connections, never says a word
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        port = srv.getsockname()[1]
        proc, elapsed = _ray_build(tmp_path, inputs, RAY_ADDRESS=f"127.0.0.1:{port}", TFW_RAY_CONNECT_TIMEOUT_S="5")
    line = _one_error_line(proc)
    assert f"cannot join the Ray cluster at 127.0.0.1:{port}" in line and "did not answer within 5 s" in line
    assert build_mod.RAY_CONNECT_TIMEOUT_S <= 30  # the default bound
    print(f"silent address given up in {elapsed:.1f} s")


def test_ray_address_auto_without_a_cluster(tmp_path, inputs):
    prefix = _own_pid_namespace()
    if prefix is None:
        pytest.skip("no unprivileged PID namespace here: RAY_ADDRESS=auto could join another build's cluster")
    proc, _ = _ray_build(tmp_path, inputs, prefix=prefix, RAY_ADDRESS="auto")
    assert "cannot join the Ray cluster at auto (RAY_ADDRESS)" in _one_error_line(proc)


def test_local_start_failure_is_retried_once_then_one_line(tmp_path, inputs):
    proc, _ = _ray_build(tmp_path, inputs, RAY_TMPDIR="/dev/null/ray")  # a temp dir Ray cannot create
    assert "could not start a local Ray cluster" in _one_error_line(proc)
    assert proc.stderr.count("trying once more") == 1


def test_no_ray_address_starts_its_own_cluster_past_a_stale_ray_start_record(tmp_path, inputs):
    """A `ray start` on this machine leaves <RAY_TMPDIR>/ray/ray_current_cluster behind (here: one whose cluster is
    gone); a bare ray.init() would try to join it and refuse num_cpus. Without RAY_ADDRESS the build starts its
    own local cluster."""
    proc, _ = _ray_build(tmp_path, inputs, current_cluster=f"127.0.0.1:{_free_port()}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "could not start a local Ray cluster" not in proc.stderr
    assert list((tmp_path / "out" / "ledger").glob("*.json")), "the video was not committed"
