"""The fault campaign of benchmarks/bench_faults.py on the stand-in stages (the benchmark runs every real stage):
50 transient faults (HTTP 503/429/resets from a real server, ENOSPC / timeouts / SIGKILL of ffmpeg in normalize,
MemoryError / ENOSPC in the clip stage) and at most two reruns give exactly the fault-free build's kept keys."""

from __future__ import annotations

import pytest

from benchmarks.kit.faultkit import fault_campaign
from tests.reliability.runner import CLIPS, STAND_IN

# 4 tries per item: 3 faults in a row are absorbed, 4 leave the video for the next run. 12 + 19 + 19 = 50 faults,
# sized so that every one has fired by the end of the second run and the third (second rerun) is clean.
HTTP = {"vexpress_aoc_en_4s": ["503", "429", "reset"], "retalking_face3_en": ["reset", "503", "429"],
        "retalking_face5_en": ["429", "reset", "503"], "retalking_face2_en": ["503", "503", "reset"]}  # fmt: skip
PLAN = "normalize:enospc:7,normalize:timeout:6,normalize:killed:6,faces:oom:10,faces:diskfull:9"
CONFIG = "retry: {attempts: 4, backoff_s: 0.05}\nsink: {shard_max_count: 1}\ndownload: {retries: 1}\n"


@pytest.mark.slow
def test_fifty_transient_faults_and_two_reruns_lose_nothing(tmp_path, shared_media):
    r = fault_campaign(tmp_path / "campaign", shared_media, CLIPS, HTTP, PLAN, CONFIG, stages=STAND_IN)
    assert r["planned"] == 50 and r["fired"] == 50, r
    assert len(r["runs"]) <= 3 and r["runs"][-1][0] == 0, r["runs"]
    assert r["runs"][0][0] == 3  # the first run left work for the next one
    assert r["got"] == r["want"] and r["want"] and not r["duplicates"] and r["reasons_ok"], r
