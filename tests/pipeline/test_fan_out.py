"""Fan-out by shot: a long video travels as several units of work (parts) and is still committed as one video."""

from __future__ import annotations

import json

from pipeline import sink
from pipeline.index import done_videos, read_ledger
from pipeline.ledger_parts import PARTS_DIR, commit_part
from pipeline.stages.shots import fan_out
from tests.reliability.runner import (
    STAND_IN,
    assert_same_result,
    build,
    fast_config,
    index_rows,
    manifest,
    reference,
)


def test_fan_out_groups_consecutive_clips_up_to_part_s():
    assert fan_out([5.0, 5.0, 5.0, 20.0, 1.0], 10.0) == [0, 0, 1, 2, 3]
    assert fan_out([300.0, 2.0], 120.0) == [0, 1]  # a clip longer than part_s is a part alone
    assert fan_out([5.0] * 4, 120.0) == [0, 0, 0, 0]


def _rows(n: int) -> list[dict]:
    return [{"key": f"en-v-s{i:04d}", "video_key": "en-v", "status": "ok", "part_index": i, "part_count": n}
            for i in range(n)]  # fmt: skip


def test_parts_merge_once_all_are_in_and_a_killed_run_redoes_the_video(tmp_path):
    out, rows = tmp_path / "out", _rows(3)
    assert not commit_part(out, "en-v", [rows[2]], {"en-v-s0002": {"video": "x"}})
    assert not commit_part(out, "en-v", [rows[0]], {})
    assert done_videos(out) == set()  # not done until every part is in
    sink.recover(out)  # the run was killed here: its parts go, the next run redoes the video whole
    assert not (out / PARTS_DIR).exists() or not any((out / PARTS_DIR).iterdir())
    assert [commit_part(out, "en-v", [rows[i]], {}) for i in (1, 0)] == [False, False]
    assert commit_part(out, "en-v", [rows[2]], {"en-v-s0002": {"video": "x"}})  # the last part writes the entry
    [entry] = read_ledger(out)
    assert [r["key"] for r in entry["rows"]] == ["en-v-s0000", "en-v-s0001", "en-v-s0002"]
    assert entry["prints"] == {"en-v-s0002": {"video": "x"}}
    assert not (out / PARTS_DIR / "en-v").exists()


def test_a_long_video_fans_out_on_ray_and_gives_the_unsplit_result(tmp_path, tmp_path_factory, concat_clip,
                                                                    shared_media):  # fmt: skip
    """The 4-shot concat with part_s 6: four parts (one clip each) on a local Ray, against the same manifest in
    one unit per video: the same keys, each once, one ledger entry per video, no part left."""
    m = manifest(tmp_path / "m", {"concat": str(concat_clip.path),
                                  "aoc": str(shared_media / "video_av" / "hdtf_WDA_AOC_en_8s.mp4")})  # fmt: skip
    ref = reference(tmp_path_factory, m, fast_config(tmp_path / "ref"))
    out = tmp_path / "out"
    proc = build(out, m, config=fast_config(tmp_path / "fan", "shots: {part_s: 6}\n"), ray=True,
                 stages=STAND_IN.replace("ShotSplit,", "ShotSplit,tests.helpers.stand_in_stages:NoteWorker,"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_result(out, ref)
    pids = {line.split()[1] for line in (out / "workers.txt").read_text().splitlines() if "concat" in line}
    assert len(pids) >= 2, pids  # the parts of the one long video ran in more than one worker process
    concat = [r for r in index_rows(out) if r["video_key"] == "en-concat"]
    assert sorted({int(r["part_index"]) for r in concat}) == [0, 1, 2, 3]
    assert {int(r["part_count"]) for r in concat} == {4}
    assert sorted(json.loads(p.read_text())["video_key"] for p in (out / "ledger").glob("*.json")) == ["en-aoc", "en-concat"]
    assert not (out / PARTS_DIR).exists() or not any((out / PARTS_DIR).iterdir())
