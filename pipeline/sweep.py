"""Threshold sweep: how many clips and hours each gate would keep at other thresholds, from index.parquet alone.

One gate moves while every other stays at today's setting. A row counts as surviving when it would be kept by
`gates.decide` (the rule `pipeline.select` applies): rows that reached the soft gates are re-decided on their
scores; a row a hard gate (faces, language) dropped that would pass at the new value was never measured further,
so it is counted apart, as "rebuild" (it may or may not survive a rebuild). Rows dropped for other reasons
(download, no face, duplicates, write failures) stay dropped. Pure numpy over the index: fine for millions of rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .gates import GATES, Gate, origin

N_VALUES = 11


def _scores(df: pd.DataFrame, g: Gate) -> np.ndarray:
    if g.score not in df:
        return np.full(len(df), np.nan)
    v = pd.to_numeric(df[g.score], errors="coerce").to_numpy(dtype=float)
    if g.unless and g.unless in df:  # as Gate.value: the gate does not apply where its replacement was measured
        v = np.where(np.isfinite(pd.to_numeric(df[g.unless], errors="coerce").to_numpy(dtype=float)), np.nan, v)
    return np.abs(v) if g.use_abs else v


def _fails(v: np.ndarray, g: Gate, t: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        f = v < t if g.keep == "min" else v > t
    return f & np.isfinite(v)


def grid(v: np.ndarray, current: float) -> list[float]:
    """Quantiles of the observed scores plus today's threshold, rounded to 4 significant digits."""
    v = v[np.isfinite(v)]
    vals = list(np.quantile(v, np.linspace(0, 1, N_VALUES))) if len(v) else []
    out = sorted({float(f"{x:.4g}") for x in [*vals, current]})
    return out


def classify(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(eligible, hard, candidate gate mask (rows x gates)) for the index rows."""
    n, k = len(df), len(GATES)
    elig, hard, cand = np.zeros(n, bool), np.zeros(n, bool), np.zeros((n, k), bool)
    wanted = ("status", "drop_stage", "drop_reason", *(g.score for g in GATES), *(g.unless for g in GATES if g.unless))
    cols = [c for c in dict.fromkeys(wanted) if c in df]
    for i, row in enumerate(df[cols].to_dict("records")):
        kind, last = origin({k_: (None if isinstance(v, float) and np.isnan(v) else v) for k_, v in row.items()})
        if kind in ("ok", "soft"):
            elig[i], cand[i] = True, True
        elif kind == "hard":
            hard[i], cand[i, : last + 1] = True, True
    return elig, hard, cand


def sweep(df: pd.DataFrame, cfg: Any) -> list[dict[str, Any]]:
    """Per gate: {gate, label, current, values, clips, hours, rebuild} (lists aligned with values)."""
    if not len(df):
        return []
    clip_s = (pd.to_numeric(df.get("end_s"), errors="coerce") - pd.to_numeric(df.get("start_s"), errors="coerce"))
    clip_s = clip_s.fillna(0).clip(lower=0).to_numpy(dtype=float)
    elig, hard, cand = classify(df)
    scores = [_scores(df, g) for g in GATES]
    fails = np.stack([_fails(v, g, g.threshold(cfg)) for v, g in zip(scores, GATES, strict=True)], axis=1)
    out = []
    seen: set[str] = set()
    for j, g in enumerate(GATES):
        if g.name in seen or not np.isfinite(scores[j]).any():
            continue
        seen.add(g.name)
        same = [i for i, h in enumerate(GATES) if h.name == g.name]  # a setting used by two gates moves both
        cur = g.threshold(cfg)
        res = {"gate": g.name, "label": g.label, "stage": g.stage, "soft": g.soft, "keep": g.keep, "current": cur,
               "values": [], "clips": [], "hours": [], "rebuild": []}  # fmt: skip
        for t in grid(scores[j], cur):
            f = fails.copy()
            for i in same:
                f[:, i] = _fails(scores[i], GATES[i], t)
            ok = ~(f & cand).any(axis=1)
            survive, unknown = elig & ok, hard & ok
            res["values"].append(t)
            res["clips"].append(int(survive.sum()))
            res["hours"].append(float(clip_s[survive].sum() / 3600))
            res["rebuild"].append(int(unknown.sum()))
        out.append(res)
    return out
