"""Scale-out: the real build joins a 2-node local Ray cluster (RAY_ADDRESS) and gives the single-node run's keys.

Both nodes live on this machine (ray.cluster_utils.Cluster, 2 logical CPUs each); the build subprocess is an
external driver, exactly as on a real cluster. While it runs, the test watches each node's raylet for worker
processes running pipeline stages, so "both nodes did work" is observed rather than assumed.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from pipeline import build
from pipeline.config import BuildConfig
from tests.helpers.resume_stages import ROOT, build_cmd, index_keys, reference_run, run_env, shard_keys

N_VIDEOS = 2


def _children(ppid: int) -> list[str]:
    """Command lines of the direct children of `ppid` (Ray names busy workers `ray::<task or actor>`)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == ppid:
                out.append((d / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace"))
        except (OSError, IndexError, ValueError):
            continue
    return out


@pytest.fixture
def cluster():
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    worker = c.add_node(num_cpus=2)
    c.wait_for_nodes()
    raylets = {name: node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
               for name, node in (("head", c.head_node), ("worker", worker))}  # fmt: skip
    yield c, raylets
    c.shutdown()


@pytest.mark.slow  # two Ray nodes and three builds
def test_two_node_cluster_gives_single_node_keys(tmp_path, tmp_path_factory, shared_media, cluster):
    clean, manifests, cfg_yaml, _ = reference_run(tmp_path_factory, shared_media, N_VIDEOS)
    c, raylets = cluster
    out = tmp_path / "cluster"
    busy: dict[str, set[str]] = {name: set() for name in raylets}
    proc = subprocess.Popen(build_cmd(out, manifests, cfg_yaml, ray=True), cwd=ROOT,
                            env=run_env(RAY_ADDRESS=c.address), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip
    log: list[str] = []
    reader = threading.Thread(target=lambda: log.extend(proc.stdout), daemon=True)
    reader.start()
    deadline = time.time() + 400
    while proc.poll() is None and time.time() < deadline:
        for name, pid in raylets.items():
            busy[name] |= {cmd[:60].strip() for cmd in _children(pid) if cmd.startswith(("ray::MapWorker", "ray::FlatMap"))}
        time.sleep(0.3)
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    reader.join(timeout=10)
    assert proc.returncode == 0, "".join(log)[-3000:]

    got = shard_keys(out)
    assert got and [k for k, n in Counter(got).items() if n > 1] == []
    assert sorted(got) == sorted(shard_keys(clean))
    assert sorted(index_keys(out)) == sorted(index_keys(clean))
    # both nodes ran pipeline stages (so the driver joined this cluster via RAY_ADDRESS instead of starting one)
    assert all(busy.values()), f"stage workers seen per node: {busy}"


class _FakeDataset:
    """Records how run_ray wires each stage into Ray Data (no Ray started)."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, dict]] = []
        self.repartitioned: list[tuple[int, dict]] = []

    def flat_map(self, fn, **kwargs):
        self.calls.append((fn, kwargs))
        return self

    def map_batches(self, fn, **kwargs):
        self.calls.append((fn, kwargs))
        return self

    def repartition(self, **kwargs):
        self.repartitioned.append((len(self.calls), kwargs))
        return self

    def iter_rows(self):
        return iter(())


def test_model_stages_are_gpu_actor_pools_and_cpu_stages_tasks(monkeypatch):
    import ray

    fake = _FakeDataset()
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray.data, "from_items", lambda items, **kw: fake)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 12.0, "GPU": 2.0})
    cfg = BuildConfig(num_gpus=0.25, actors=3)
    assert list(build.run_ray(cfg, [[{"video_key": "en-x"}]])) == []
    assert len(fake.calls) == len(build.STAGES)
    for cls, (fn, kw) in zip(build.STAGES, fake.calls, strict=True):
        if cls.uses_model:  # an actor pool: a callable class built once per actor, on a quarter of a GPU
            batched = cls.units_per_call(cfg) > 0  # Whisper: map_batches over many videos' units of work
            assert fn is (build._RayBatchStage if batched else build._RayStage), cls.__name__
            assert kw["fn_constructor_args"][0] is cls
            assert not batched or kw["batch_size"] == cls.units_per_call(cfg)
            pool = kw["compute"]  # ActorPoolStrategy, not the deprecated concurrency=
            assert (pool.min_size, pool.max_size, kw["num_gpus"], kw["num_cpus"]) == (3, 3, 0.25, 1), cls.__name__
            assert "concurrency" not in kw
            assert (kw["max_restarts"], kw["max_task_retries"]) == (3, 3)  # retry.worker_crashes
        else:  # a task per video, no GPU
            assert not isinstance(fn, type) and kw["num_cpus"] == 1 and "num_gpus" not in kw, cls.__name__
            assert kw["max_retries"] == 3 and "ray_remote_args_fn" not in kw
    assert {cls.uses_model for cls in build.STAGES} == {True, False}
    # fan-out: one streaming repartition to a row per block, right after ShotSplit
    assert fake.repartitioned == [(build.STAGES.index(build.ShotSplit) + 1, {"target_num_rows_per_block": 1})]
    assert any(cls.units_per_call(cfg) > 0 for cls in build.STAGES)

    fake.calls.clear()
    list(build.run_ray(BuildConfig(), [[{"video_key": "en-x"}]]))  # CPU only: no GPU request at all
    assert all(not kw.get("num_gpus") for _, kw in fake.calls)
    n_model = sum(cls.uses_model for cls in build.STAGES)
    pools = [kw["compute"] for _, kw in fake.calls if "compute" in kw]
    # actors: 0 (default): each model stage autoscales from 1 to its share of the cluster's 12 CPUs
    assert len(pools) == n_model and {(p.min_size, p.max_size) for p in pools} == {(1, 12 // n_model)}


def test_actor_pool_share_follows_cluster_resources():
    n = 3
    gpu = build.actor_pool(BuildConfig(num_gpus=0.25), n, {"CPU": 64.0, "GPU": 3.0})  # 3 GPUs / 0.25 / 3 stages
    assert (gpu.min_size, gpu.max_size) == (1, 4)
    tiny = build.actor_pool(BuildConfig(), n, {"CPU": 2.0})  # fewer CPUs than stages: still one actor each
    assert (tiny.min_size, tiny.max_size) == (1, 1)
    fixed = build.actor_pool(BuildConfig(actors=2), n, {"CPU": 64.0})
    assert (fixed.min_size, fixed.max_size) == (2, 2)
