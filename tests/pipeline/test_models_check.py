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
