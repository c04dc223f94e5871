"""Cases 6-8: a manifest folder's config.yaml may set thresholds only; the --out lock comes before any write;
ids that sanitise to one key are refused naming both manifest lines. All with the real command line."""

from __future__ import annotations

import fcntl

import pytest

from pipeline.record import safe_id
from tests.reliability.runner import build, index_rows, last_line, manifest, shard_keys


@pytest.fixture()
def clip(shared_media):
    return str(shared_media / "video_av" / "vexpress_AOC_en_4s.mp4")


def _refused(proc) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return last_line(proc)


@pytest.mark.parametrize("yaml_text, key", [
    ("out: {victim}\n", "out"),
    ("models_dir: /etc\n", "models_dir"),
    ("actors: 64\nnum_gpus: 8\n", "actors"),
    ("download: {max_duration_s: 1.0e9, max_bytes: 1.0e15}\n", "download"),
    ("language: {whisper: /etc/passwd}\n", "language.whisper"),
    ("faces: {crop_size: 4096, min_face_px: 100}\n", "faces.crop_size"),
    ("retry: {attempts: 1000}\n", "retry"),
])  # fmt: skip
def test_manifest_config_may_not_set_paths_or_limits(tmp_path, clip, yaml_text, key):
    victim = tmp_path / "other_build"
    victim.mkdir()
    (victim / "config.yaml").write_text("theirs\n")
    man = manifest(tmp_path / "manifests", {"aoc": clip})
    (man / "config.yaml").write_text(yaml_text.replace("{victim}", str(victim)))
    out = tmp_path / "out"
    line = _refused(build(out, man))
    assert f"{man / 'config.yaml'}: a manifest folder's config.yaml may set thresholds only" in line
    assert key in line and "--config" in line
    assert (victim / "config.yaml").read_text() == "theirs\n" and sorted(p.name for p in victim.iterdir()) == ["config.yaml"]
    assert not out.exists()  # refused before anything was written


def test_manifest_thresholds_apply_and_explicit_config_is_trusted(tmp_path, clip):
    man = manifest(tmp_path / "manifests", {"aoc": clip})
    (man / "config.yaml").write_text("faces: {min_face_px: 100}\nquality: {min_sharpness: 5.0}\n")
    out = tmp_path / "out"
    proc = build(out, man, "--stages", "Download")
    assert proc.returncode == 0, proc.stderr[-2000:]
    saved = (out / "config.yaml").read_text()
    assert "min_face_px: 100" in saved and "min_sharpness: 5.0" in saved
    # the same keys, and an out dir, given explicitly with --config: the user's own file is trusted
    mine = tmp_path / "mine.yaml"
    mine.write_text(f"out: {tmp_path / 'out2'}\ndownload: {{max_duration_s: 60}}\n")
    proc = build(tmp_path / "unused", man, "--stages", "Download", "--config", str(mine), stages=None)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_locked_out_dir_is_refused_before_anything_is_written(tmp_path, clip):
    man = manifest(tmp_path / "manifests", {"aoc": clip})
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.yaml").write_text("the running build's config\n")
    with open(out / ".sink.lock", "a+") as held:  # a build is running on this dir (it holds the lock)
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        line = _refused(build(out, man))
    assert "another build is writing to" in line
    assert (out / "config.yaml").read_text() == "the running build's config\n"
    assert sorted(p.name for p in out.iterdir()) == [".sink.lock", "config.yaml"]


def test_ids_that_sanitise_to_one_key_are_refused_naming_both_lines(tmp_path, clip, shared_media):
    other = str(shared_media / "video_av" / "retalking_face5_en.mp4")  # not face3: the same footage as the clip
    twin = safe_id("Clip.A")  # "clip_a_<hash>": a valid id in its own right
    man = manifest(tmp_path / "manifests", {"ok1": clip, "Clip.A": clip, twin: other})
    line = _refused(build(tmp_path / "out", man))
    csv = man / "en.csv"
    assert f"{csv}:4: id {twin!r} gives key 'en-{twin}', the same as id 'Clip.A' on {csv}:3" in line
    assert not (tmp_path / "out").exists()
    # apart, both build, each under its own key
    man2 = manifest(tmp_path / "m2", {"Clip.A": clip, "clip_b": other})
    proc = build(tmp_path / "out2", man2)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(r["video_key"] for r in index_rows(tmp_path / "out2")) == sorted({f"en-{twin}", "en-clip_b"})
    assert len(shard_keys(tmp_path / "out2")) == 2
