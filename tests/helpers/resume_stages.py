"""Helpers for the resume / cluster runs of the real `python -m pipeline.build` (every stage, as a researcher runs it).

Why: those tests are about the sink, the ledger and Ray scale-out, so the gates are opened (setup_inputs) and the
shortest real clips are used; each run is a subprocess so it can be killed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Short real talking clips (one speaker each) from ../shared/media/video_av, 4.5-5 s. vexpress_AOC and
# retalking_face3 are the same HDTF footage (finalize keeps one of them as a duplicate): not the first two.
CLIPS: tuple[str, ...] = ("vexpress_AOC_en_4s.mp4", "retalking_face5_en.mp4", "retalking_face3_en.mp4",
                          "retalking_face2_en.mp4")  # fmt: skip


def write_manifest(dirpath: Path, shared_media: Path, clips: tuple[str, ...] = CLIPS) -> Path:
    """An en.csv of local sources (absolute paths, read in place)."""
    dirpath.mkdir(parents=True, exist_ok=True)
    lines = ["id,source,license,note"] + [f"{Path(c).stem.lower()},{shared_media / 'video_av' / c},test," for c in clips]
    (dirpath / "en.csv").write_text("\n".join(lines) + "\n")
    return dirpath


def shard_keys(out: Path) -> list[str]:
    """Every sample key in every committed shard (with repeats, so duplicates show)."""
    import webdataset as wds

    urls = sorted(str(p) for p in (out / "shards").rglob("*.tar"))
    return [s["__key__"] for s in wds.WebDataset(urls, shardshuffle=False, empty_check=False)] if urls else []


def build_cmd(out: Path, manifests: Path, cfg_yaml: Path, ray: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "pipeline.build", "--lang", "en", "--manifests", str(manifests), "--out", str(out),
           "--config", str(cfg_yaml)]  # fmt: skip
    return cmd if ray else [*cmd, "--no-ray"]


def run_env(**extra: str) -> dict[str, str]:
    """The build subprocess env: repo root importable (Ray workers too), one thread per process."""
    return os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0", **extra}


def run_build(out: Path, manifests: Path, cfg_yaml: Path, ray: bool = False, env: dict | None = None) -> float:
    """One uninterrupted `python -m pipeline.build`; returns its wall time."""
    t0 = time.time()
    proc = subprocess.run(build_cmd(out, manifests, cfg_yaml, ray), cwd=ROOT, env=env or run_env(),
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return time.time() - t0


def setup_inputs(tmp: Path, shared_media: Path, n_videos: int) -> tuple[Path, Path]:
    """A manifest of the `n_videos` shortest clips and a config that commits a shard after every kept video."""
    manifests = write_manifest(tmp / "manifests", shared_media, CLIPS[:n_videos])
    cfg_yaml = tmp / "build.yaml"
    # Commit a shard after every kept video, and open the score gates: these runs test the sink, the ledger and
    # Ray, so which clips pass the sync / quality thresholds must not decide whether there is anything to compare.
    cfg_yaml.write_text(
        "sink:\n  shard_max_count: 1\nsync:\n  min_conf: 0.0\n  max_offset_frames: 15\n"
        "quality:\n  min_sharpness: 0.0\n  min_brightness: 0.0\n  min_face_detail_px: 0.0\n  max_blockiness: 1000.0\n"
    )
    return manifests, cfg_yaml


_REFERENCE: dict[int, tuple[Path, Path, Path, float]] = {}


def reference_run(tmp_path_factory, shared_media: Path, n_videos: int) -> tuple[Path, Path, Path, float]:
    """(out, manifests, cfg_yaml, wall s) of one uninterrupted single-node run, shared by the tests in a session."""
    if n_videos not in _REFERENCE:
        tmp = tmp_path_factory.mktemp(f"reference{n_videos}")
        manifests, cfg_yaml = setup_inputs(tmp, shared_media, n_videos)
        wall = run_build(tmp / "out", manifests, cfg_yaml)
        _REFERENCE[n_videos] = (tmp / "out", manifests, cfg_yaml, wall)
    return _REFERENCE[n_videos]


def index_keys(out: Path) -> list[str]:
    import pyarrow.parquet as pq

    return pq.read_table(out / "index.parquet", columns=["key"]).column("key").to_pylist()
