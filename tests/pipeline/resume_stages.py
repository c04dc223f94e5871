"""Helpers for the resume / cluster / benchmark runs of the real `python -m pipeline.build`.

Why: those tests are about the sink, the ledger and Ray scale-out, not about any one stage; they run the
stages that are implemented and, while the faces/sync stages are still being written, fill in the clip
files (crop mp4, clip wav, track npz) with ffmpeg from the real normalised video, so shards are non-empty.
"""

from __future__ import annotations

import functools
import inspect
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from pipeline import build, media
from pipeline.record import Row
from pipeline.stages.base import Stage

ROOT = Path(__file__).resolve().parents[2]
# Short real talking clips (one speaker each) from ../shared/media/video_av, 4.5-5 s. vexpress_AOC and
# retalking_face3 are the same HDTF footage (finalize keeps one of them as a duplicate): not the first two.
CLIPS: tuple[str, ...] = ("vexpress_AOC_en_4s.mp4", "retalking_face5_en.mp4", "retalking_face3_en.mp4",
                          "retalking_face2_en.mp4")  # fmt: skip


class FillClipFiles(Stage):
    """Writes the clip files a kept row must carry when the stages that make them are not in the run."""

    name = "faces"
    crop = 64

    def process(self, row: Row) -> Row:
        work = self.cfg.work_dir / row["lang_expected"] / row["video_key"]
        work.mkdir(parents=True, exist_ok=True)
        start, end = float(row["start_s"]), float(row["end_s"])
        n = int(round((end - start) * 25))
        if not row.get("crop_path"):
            row["crop_path"] = str(work / f"{row['key']}_crop.mp4")
            media.ffmpeg("-ss", f"{start:.3f}", "-i", row["norm_path"], "-frames:v", str(n), "-an",
                         "-vf", f"crop='min(iw,ih)':'min(iw,ih)',scale={self.crop}:{self.crop}",
                         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", row["crop_path"])  # fmt: skip
        if not row.get("clip_wav_path"):
            row["clip_wav_path"] = str(work / f"{row['key']}.wav")
            audio = media.read_audio(row["norm_path"], start, end)[: n * 640]
            media.write_wav(np.pad(audio, (0, n * 640 - len(audio))), row["clip_wav_path"])
        if not row.get("track_path"):
            row["track_path"] = str(work / f"{row['key']}_track.npz")
            np.savez(row["track_path"], boxes=np.zeros((n, 4), np.float32), detected=np.zeros(n, bool),
                     fps=np.float32(25), crop_size=np.int32(self.crop))  # fmt: skip
        return row


def implemented(cls: type[Stage]) -> bool:
    return "is being written" not in inspect.getsource(cls.process)


@functools.cache
def stages_spec() -> str:
    """`--stages` for the run: the implemented prefix of build.STAGES, plus FillClipFiles if the run stops early.

    Cached, so every run of a session (reference, killed, resumed) uses the same list."""
    names = []
    for cls in build.STAGES:
        if not implemented(cls):
            names.append(f"{__name__}:FillClipFiles")
            break
        names.append(cls.__name__)
    return ",".join(names)


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
           "--config", str(cfg_yaml), "--stages", stages_spec()]  # fmt: skip
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
