"""Cases 9-10: stats.json and report.html are replaced atomically (a size-limited write leaves the old report
whole); sample .json files hold no host paths; a rerun with nothing to do stops before any stage is built."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from tests.reliability.runner import build, fast_config, index_rows, last_line, manifest, shard_json


@pytest.fixture(scope="module")
def built(tmp_path_factory, shared_media):
    """One finished build of two real clips listed by paths relative to the manifest (as the sample lists them)."""
    tmp = tmp_path_factory.mktemp("outputs")
    man = tmp / "manifests"
    man.mkdir()
    clips = {"aoc": "vexpress_AOC_en_4s.mp4", "face5": "retalking_face5_en.mp4"}  # two people (no duplicate)
    rel = {k: os.path.relpath(shared_media / "video_av" / v, man) for k, v in clips.items()}
    manifest(man, rel)
    config = fast_config(tmp)
    out = tmp / "out"
    proc = build(out, man, config=config)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, man, config, rel


def test_sample_json_holds_no_host_paths(built, shared_media):
    out, _, _, rel = built
    samples = shard_json(out)
    assert len(samples) == 2
    host = [str(out.parent), str(shared_media), os.path.expanduser("~")]
    for key, meta in samples.items():
        assert not [k for k in meta if k.endswith("_path")], meta
        assert meta["source"] == rel[meta["source_id"]]  # the manifest's own text, relative to its folder
        for k, v in meta.items():
            if isinstance(v, str) and k != "source":
                assert not v.startswith("/") and not any(h in v for h in host), (key, k, v)
    # the index is for the build machine: it keeps the work paths
    assert all(r["video_path"].startswith("/") for r in index_rows(out))


def test_rerun_with_nothing_to_do_builds_no_stage(built):
    out, man, config, _ = built
    stages = "Download,Normalize,ShotSplit,tests.reliability.runner:NoModelsAllowed"
    proc = build(out, man, config=config, stages=stages)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "nothing to do" in proc.stderr and "kept 2 clips" in last_line(proc)


def test_full_disk_while_writing_the_report_keeps_the_old_one(built, tmp_path):
    """The rerun under a real per-file size limit (RLIMIT_FSIZE) big enough for every file but report.html."""
    out0, man, config, _ = built
    out = tmp_path / "out"
    shutil.copytree(out0, out)
    report, stats = (out / "report.html").read_bytes(), (out / "stats.json").read_bytes()
    others = max((out / n).stat().st_size for n in ("stats.json", "index.parquet", "config.yaml"))
    limit = others + 4096
    assert limit < len(report), "the report must be the one file over the limit"
    proc = build(out, man, config=config, prefix=["prlimit", f"--fsize={limit}", "--"])
    assert proc.returncode == 3, proc.stderr[-3000:]  # transient: rerun the same command
    assert "File too large" in last_line(proc) and "rerun the same command" in last_line(proc)
    assert (out / "report.html").read_bytes() == report  # whole, not truncated
    assert json.loads((out / "stats.json").read_bytes()) == json.loads(stats)
    assert not list(out.glob("*.tmp"))
    again = build(out, man, config=config)  # the limit lifted
    assert again.returncode == 0 and (out / "report.html").read_bytes().rstrip().endswith(b"</html>")
