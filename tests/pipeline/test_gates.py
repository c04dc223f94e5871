"""Gates: one decision for the stages and finalize/select; soft gates both ways, hard ones count rebuilds; the
report's sweep counts exactly what `decide` would keep; `pipeline.select` re-selects from the ledger."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from pipeline.config import BuildConfig
from pipeline.gates import BY_NAME, GATES, decide, first_failing, origin
from pipeline.record import drop
from pipeline.sweep import sweep
from tests.helpers.resume_stages import ROOT, run_env
from tests.helpers.sink_media import build_out, make_media, video

SCORES = {"face_px": 300.0, "take_coverage": 1.0, "speech_ratio": 0.8,
          "lang_prob": 0.95, "av_offset_frames": 1, "sync_conf": 5.0, "brightness": 100.0, "sharpness": 80.0,
          "yaw_abs_max": 20.0, "pitch_abs_max": 10.0}  # fmt: skip


def row(**kw) -> dict:
    return {"key": "en-v-s0000", "video_key": "en-v", "status": "ok", "drop_reason": "", "drop_stage": ""} | SCORES | kw


def test_soft_gates_go_both_ways():
    cfg = BuildConfig()
    r = drop(row(sync_conf=2.7), "out_of_sync", "sync")
    assert origin(r) == ("soft", GATES.index(BY_NAME["sync.min_conf"])) and decide(r, cfg).reason == "out_of_sync"
    cfg.sync.min_conf = 2.5
    assert decide(r, cfg).status == "ok"
    cfg.quality.min_sharpness = 90.0  # ... unless a later soft gate now fails it
    d = decide(r, cfg)
    assert (d.status, d.stage, d.reason) == ("dropped", "quality", "blurry") and "min_sharpness" in d.detail


def test_hard_gates_tighten_but_only_count_rebuilds_when_loosened():
    cfg = BuildConfig()
    small = drop(row(face_px=200.0, lang_prob=0.0, sync_conf=None), "small_face", "faces")
    cfg.faces.min_face_px = 180
    d = decide(small, cfg)
    assert (d.status, d.reason, d.rebuild) == ("dropped", "small_face", "faces.min_face_px")
    cfg.faces.min_face_px = 256
    assert decide(small, cfg).rebuild == ""  # still fails: no rebuild would keep it
    kept = row()
    cfg.faces.min_face_px = 320  # tightened: the score exists, so select drops it like a rebuild would
    assert (decide(kept, cfg).stage, decide(kept, cfg).reason) == ("faces", "small_face")
    lang = drop(row(lang_prob=0.5, sync_conf=None), "lang_uncertain", "language")
    assert decide(lang, cfg).reason == "small_face"  # an earlier gate now drops it first, as a rebuild would


def test_structural_drops_stay_and_gate_reasons_without_score_are_structural():
    cfg = BuildConfig()
    cfg.sync.min_conf = 0.0
    brief = drop(row(av_offset_frames=None, sync_conf=None), "out_of_sync", "sync", "too short to measure")
    assert origin(brief)[0] == "structural" and decide(brief, cfg).reason == "out_of_sync"
    multi = drop(row(), "multi_face", "faces")
    assert decide(multi, cfg).status == "dropped"
    cfg.faces.min_face_px = 400  # an earlier... same-stage gate does not re-label a faces structural drop
    assert decide(multi, cfg).reason == "multi_face"
    late = drop(row(), "write_failed", "sink")
    assert decide(late, cfg).reason == "small_face"


def test_stages_and_finalize_decide_alike():
    rng = np.random.default_rng(0)
    cfg = BuildConfig()
    for _ in range(300):
        r = row(**{k: float(v * rng.uniform(0.2, 1.6)) for k, v in SCORES.items()})
        g = first_failing(r, cfg)
        d = decide(dict(r), cfg)
        assert (d.status == "ok") == (g is None) and (g is None or d.reason == g.reason)


def _synthetic_index(n: int = 400) -> pd.DataFrame:
    """Rows as finalize leaves them: ok, soft drops, hard drops (later scores missing), structural drops."""
    rng = np.random.default_rng(1)
    cfg = BuildConfig()
    rows = []
    for i in range(n):
        r = row(key=f"en-v{i}-s0000", video_key=f"en-v{i}", start_s=0.0, end_s=float(rng.uniform(2, 20)),
                **{k: float(v * rng.uniform(0.3, 1.5)) for k, v in SCORES.items()})  # fmt: skip
        if i % 17 == 0:
            drop(r, "download_failed")
        else:
            g = first_failing(r, cfg)
            if g is not None:
                drop(r, g.reason, g.stage)
                if not g.soft:  # the stages stopped here: later scores were never measured
                    for h in GATES[GATES.index(g) + 1 :]:
                        if h.stage != g.stage:
                            r[h.score] = None
        rows.append(r)
    return pd.DataFrame(rows)


def test_sweep_counts_what_decide_keeps():
    df = _synthetic_index()
    cfg = BuildConfig()
    rows = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()} for r in df.to_dict("records")]
    for g in sweep(df, cfg):
        assert g["current"] in g["values"]
        for t, clips, hours, rebuild in zip(g["values"], g["clips"], g["hours"], g["rebuild"], strict=True):
            other = copy.deepcopy(cfg)
            setattr(getattr(other, BY_NAME[g["gate"]].section), BY_NAME[g["gate"]].setting, t)
            ds = [decide(dict(r), other) for r in rows]
            ok = [d.status == "ok" for d in ds]
            assert clips == sum(ok), (g["gate"], t)
            assert hours == pytest.approx(sum(r["end_s"] for r, k in zip(rows, ok, strict=True) if k) / 3600)
            assert rebuild == sum(bool(d.rebuild) for d in ds), (g["gate"], t)


def _select(out, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.select", "--out", str(out), *args], cwd=ROOT,
                          env=run_env(), capture_output=True, text=True, timeout=300)  # fmt: skip


def test_select_cli_reselects_from_the_ledger(tmp_path, shared_media, media_cache):
    from pipeline.config import save_config

    m = make_media(shared_media, media_cache)
    cfg = BuildConfig(out=str(tmp_path))
    save_config(cfg, tmp_path / "config.yaml")
    build_out(cfg, video(m, "en", "s1", kept=2, dropped=1, reason="out_of_sync"), video(m, "en", "s2", kept=1, dropped=1,
              reason="small_face"))  # fmt: skip
    before = pd.read_parquet(tmp_path / "index.parquet").set_index("key")
    assert (before["status"] == "ok").sum() == 3

    dry = _select(tmp_path, "--set", "sync.min_conf=0.5", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["newly_kept"] == 1
    assert pd.read_parquet(tmp_path / "index.parquet")["status"].eq("ok").sum() == 3  # dry run: nothing written

    res = _select(tmp_path, "--set", "sync.min_conf=0.5", "--set", "faces.min_face_px=90")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert (summary["newly_kept"], summary["rebuild_needed"]) == (1, {"faces.min_face_px": 1})
    after = pd.read_parquet(tmp_path / "index.parquet").set_index("key")
    assert after.loc["en-s1-s0002", "status"] == "ok" and after.loc["en-s1-s0002", "shard"] != ""
    assert after.loc["en-s2-s0001", "rebuild_gate"] == "faces.min_face_px"
    assert "min_conf: 0.5" in (tmp_path / "config.yaml").read_text()
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["totals"]["kept"] == 4 and stats["rebuild_needed"] == {"faces.min_face_px": 1}

    bad = _select(tmp_path, "--set", "faces.backend=dlib")
    assert bad.returncode == 2 and "rebuild instead" in bad.stderr
