"""Resume: SIGKILL the real `python -m pipeline.build` at random points, rerun to completion, compare keys.

The reference is an uninterrupted run on the same manifest; after 2 kills (whole process group, as a crashed
node would lose it) and a final rerun, the shards must hold exactly the reference's keys, none twice, and the
index must list every clip once. Runs in-process (--no-ray) to stay fast; test_cluster covers Ray.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from tests.pipeline.resume_stages import ROOT, index_keys, shard_keys, stages_spec, write_manifest

N_VIDEOS = 2
KILLS = 2


def build_cmd(out: Path, manifests: Path, cfg_yaml: Path, ray: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "pipeline.build", "--lang", "en", "--manifests", str(manifests), "--out", str(out),
           "--config", str(cfg_yaml), "--stages", stages_spec()]  # fmt: skip
    return cmd if ray else [*cmd, "--no-ray"]


def run_env() -> dict[str, str]:
    return os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}


def run_clean(out: Path, manifests: Path, cfg_yaml: Path, ray: bool = False, env: dict | None = None) -> float:
    """One uninterrupted build; returns its wall time."""
    t0 = time.time()
    proc = subprocess.run(build_cmd(out, manifests, cfg_yaml, ray), cwd=ROOT, env=env or run_env(),
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return time.time() - t0


def setup_inputs(tmp: Path, shared_media: Path, n_videos: int = N_VIDEOS) -> tuple[Path, Path]:
    from tests.pipeline.resume_stages import CLIPS

    manifests = write_manifest(tmp / "manifests", shared_media, CLIPS[:n_videos])
    cfg_yaml = tmp / "build.yaml"
    cfg_yaml.write_text("sink:\n  shard_max_count: 1\n")  # a commit (ledger + rename) after every kept video
    return manifests, cfg_yaml


def test_kill9_and_resume_gives_the_same_keys(tmp_path, shared_media):
    manifests, cfg_yaml = setup_inputs(tmp_path, shared_media)
    clean = tmp_path / "clean"
    t_clean = run_clean(clean, manifests, cfg_yaml)
    want_shards, want_index = sorted(shard_keys(clean)), sorted(index_keys(clean))
    assert want_shards, "the reference run kept no clip: nothing to compare"

    seed = int(os.environ.get("TFW_RESUME_SEED", random.randrange(10**6)))
    rng = random.Random(seed)
    out = tmp_path / "resumed"
    history = []
    for _ in range(KILLS):
        delay = rng.uniform(0.25, 0.75) * t_clean
        proc = subprocess.Popen(build_cmd(out, manifests, cfg_yaml), cwd=ROOT, env=run_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        try:
            proc.wait(timeout=delay)
            history.append(f"finished before the kill at {delay:.1f}s")
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the build and everything it started
            proc.wait()
            ledgers = len(list((out / "ledger").glob("*.json"))) if (out / "ledger").exists() else 0
            history.append(f"killed at {delay:.1f}s with {ledgers} videos committed")
    run_clean(out, manifests, cfg_yaml)

    got = shard_keys(out)
    why = f"seed={seed} (TFW_RESUME_SEED), t_clean={t_clean:.1f}s, {history}"
    assert [k for k, n in Counter(got).items() if n > 1] == [], why
    assert sorted(got) == want_shards, why
    assert sorted(index_keys(out)) == want_index, why
    assert not list(out.rglob("*.tmp")), why
    assert sorted(p.stem for p in (out / "ledger").glob("*.json")) == sorted(p.stem for p in (clean / "ledger").glob("*.json"))
