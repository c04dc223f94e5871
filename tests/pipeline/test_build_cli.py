"""The build's command line: bad input stops it with one clear line and exit 2, before any work is done."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _build(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.build", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_hostile_manifest_line_is_named(tmp_path: Path) -> None:
    (tmp_path / "en.csv").write_text("id,source,license,note\nok,ytsearch5:news anchor,x,\nbad,--exec=rm -rf /,x,\n")
    proc = _build("--lang", "en", "--manifests", str(tmp_path), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert f"error: {tmp_path / 'en.csv'}:3:" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "shards").exists()


def test_unknown_setting_and_language(tmp_path: Path) -> None:
    (tmp_path / "cfg.yaml").write_text("faces: {min_face_pixels: 100}\n")
    proc = _build("--config", str(tmp_path / "cfg.yaml"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "unknown setting 'min_face_pixels'" in proc.stderr
    proc = _build("--lang", "xx", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "unknown language" in proc.stderr
    proc = _build("--sequential", "--out", str(tmp_path / "out"))  # a mode of --no-ray only
    assert proc.returncode == 2 and "--sequential is a mode of --no-ray" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_help_explains_the_options() -> None:
    proc = _build("--help")
    assert proc.returncode == 0
    for flag in ("--lang", "--manifests", "--out", "--config", "--models-dir", "--num-gpus", "--actors", "--transcribe",
                 "--no-ray", "--sequential"):
        assert flag in proc.stdout
