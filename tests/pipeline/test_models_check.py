"""`python -m pipeline.models` reports the offline defaults as found and upstream files where they are put."""

from __future__ import annotations

from pathlib import Path

from pipeline.models.__main__ import check, main


def test_offline_defaults_found_and_upstream_missing_says_where(tmp_path: Path) -> None:
    rows = {model: (found, where) for _, model, found, where in check(str(tmp_path))}
    assert rows["MTCNN (facenet-pytorch, default)"][0]
    assert all(found for model, (found, _) in rows.items() if model.startswith("dlib"))
    whisper_found, whisper_where = rows["Whisper (upstream wins, else PyPI base)"]
    assert whisper_found and "ct2" in whisper_where
    # the sync confidence prior's encoder is always the PyPI base, even where a larger Whisper is in the models dir
    assert rows["Whisper base, fused confidence (PyPI)"] == (True, str(tmp_path / "_pypi" / "whisper-base-ct2"))
    syncnet_found, syncnet_where = rows["SyncNet (upstream)"]
    assert not syncnet_found and str(tmp_path / "syncnet") in syncnet_where
    assert not rows["insightface buffalo_l (upstream)"][0]
    assert "det_10g.onnx" in rows["insightface buffalo_l (upstream)"][1]


def test_upstream_file_in_place_is_found(tmp_path: Path, shared_media: Path, capsys) -> None:
    (tmp_path / "lightasd").mkdir()
    (tmp_path / "lightasd" / "finetuning_TalkSet.model").symlink_to(
        shared_media / "weights" / "light_asd_finetuning_TalkSet.model"
    )
    rows = {model: (found, where) for _, model, found, where in check(str(tmp_path))}
    assert rows["Light-ASD (upstream)"] == (True, str(tmp_path / "lightasd" / "finetuning_TalkSet.model"))
    assert main(["--models-dir", str(tmp_path)]) == 0
    assert "found   Light-ASD" in capsys.readouterr().out


def test_complete_insightface_pack_is_found(tmp_path: Path, capsys) -> None:
    """A pack with the upstream file names is reported found, with the detector's path (the check is about presence)."""
    pack = tmp_path / "insightface" / "buffalo_l"
    pack.mkdir(parents=True)
    for name in ("det_10g.onnx", "w600k_r50.onnx", "1k3d68.onnx"):
        (pack / name).write_bytes(b"placeholder: presence only")
    rows = {model: (found, where) for _, model, found, where in check(str(tmp_path))}
    assert rows["insightface buffalo_l (upstream)"] == (True, str(pack / "det_10g.onnx"))
    assert main(["--models-dir", str(tmp_path)]) == 0
    assert "found   insightface buffalo_l" in capsys.readouterr().out
    (pack / "w600k_r50.onnx").unlink()  # incomplete: the missing file is named
    found, where = {m: (f, w) for _, m, f, w in check(str(tmp_path))}["insightface buffalo_l (upstream)"]
    assert not found and "w600k_r50.onnx" in where
