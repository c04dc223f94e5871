"""stats.json + report.html from index.parquet: hours and clips per language and split, the drop funnel, score
histograms, takes by length, identities per language, and the threshold sweep (pipeline/sweep.py).

Why a report: a curation run is judged by what it kept and why it dropped the rest; this page answers both per
language without any tool but a browser (self-contained: plots are inline base64 PNGs, no scripts, no network).
Works with zero kept clips and with any score column missing (stages that did not run).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .config import BuildConfig
from .record import STAGES, STATUS_OK

# Scores summarised in stats.json (when present); the first ones also get a histogram in the report.
HIST_SCORES: tuple[str, ...] = ("lang_prob", "sync_conf", "av_offset_frames", "sharpness", "face_px")
SCORES: tuple[str, ...] = HIST_SCORES + (
    "clip_s", "speech_ratio", "brightness", "face_coverage", "n_faces", "yaw_abs_max", "pitch_abs_max",
)  # fmt: skip
N_EXAMPLES = 3


def load_index(out: str | Path) -> pd.DataFrame:
    """index.parquet with the columns the report relies on (lang, status, drop_stage/reason, clip_s) filled in."""
    df = pd.read_parquet(Path(out) / "index.parquet")
    for col in ("key", "video_key", "status", "drop_stage", "drop_reason", "lang_expected", "start_s", "end_s"):
        if col not in df:
            df[col] = None
    lang = df["lang_expected"].where(df["lang_expected"].notna() & (df["lang_expected"] != ""))
    df["report_lang"] = lang.fillna(df["key"].astype(str).str.split("-").str[0])
    df["kept"] = df["status"] == STATUS_OK
    start, end = pd.to_numeric(df["start_s"], errors="coerce"), pd.to_numeric(df["end_s"], errors="coerce")
    df["clip_s"] = (end - start).where(end > start)
    df["drop_stage"] = df["drop_stage"].fillna("").astype(str)
    df["drop_reason"] = df["drop_reason"].fillna("").astype(str)
    return df


def _summary(values: pd.Series) -> dict[str, float] | None:
    v = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
    if not len(v):
        return None
    p10, p50, p90 = np.percentile(v, [10, 50, 90])
    return {"n": int(len(v)), "mean": float(v.mean()), "min": float(v.min()), "p10": float(p10),
            "p50": float(p50), "p90": float(p90), "max": float(v.max())}  # fmt: skip


def _funnel(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Per stage in pipeline order: clips dropped there (by reason) and clips still alive after it."""
    dropped = df[~df["kept"]]
    stages = list(STAGES) + sorted(set(dropped["drop_stage"]) - set(STAGES))  # unknown stages last, never lost
    out, alive = [], len(df)
    for stage in stages:
        here = dropped[dropped["drop_stage"] == stage]
        alive -= len(here)
        reasons = {str(r): int(n) for r, n in here["drop_reason"].value_counts().sort_index().items()}
        out.append({"stage": stage or "unknown", "dropped": int(len(here)), "remaining": int(alive), "reasons": reasons})
    return out


def _group_stats(df: pd.DataFrame) -> dict[str, Any]:
    kept = df[df["kept"]]
    scores = {}
    for col in SCORES:
        if col in df:
            s = {"kept": _summary(kept[col]), "all": _summary(df[col])}
            if s["all"] is not None:
                scores[col] = s
    return {
        "videos": int(df["video_key"].nunique()),
        "clips": int(len(df)),
        "kept": int(len(kept)),
        "dropped": int(len(df) - len(kept)),
        "hours_kept": float(kept["clip_s"].fillna(0).sum() / 3600.0),
        "funnel": _funnel(df),
        "scores": scores,
    }


TAKE_BINS_S: tuple[float, ...] = (0, 10, 20, 40, 60, 120, 300, 600, float("inf"))


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    return df[name] if name in df else pd.Series([None] * len(df), index=df.index, dtype=object)


def _dataset_stats(df: pd.DataFrame) -> dict[str, Any]:
    """Hours per language per split, takes by kept length, identities per language, rows needing a rebuild."""
    kept = df[df["kept"]].copy()
    kept["split"] = _col(kept, "split").fillna("")
    splits: dict[str, dict[str, dict[str, float]]] = {}
    for (split, lang), g in sorted(kept.groupby(["split", "report_lang"])):
        splits.setdefault(str(split), {})[str(lang)] = {"clips": int(len(g)), "hours": float(g["clip_s"].fillna(0).sum() / 3600)}
    take = _col(kept, "take_id").fillna(kept["key"])
    lengths = kept.groupby(take)["clip_s"].sum().to_numpy(dtype=float) if len(kept) else np.zeros(0)
    windows = kept.groupby(take).size() if len(kept) else pd.Series(dtype=int)
    counts, _ = np.histogram(lengths, bins=np.array(TAKE_BINS_S))
    bins = [f"{int(a)}-{int(b)} s" if np.isfinite(b) else f">= {int(a)} s" for a, b in zip(TAKE_BINS_S, TAKE_BINS_S[1:], strict=False)]
    ident = _col(kept, "identity_id")
    identities = {str(lang): int(ident[kept["report_lang"] == lang].nunique()) for lang in sorted(kept["report_lang"].unique())}
    rebuild = _col(df, "rebuild_gate").dropna()
    return {
        "splits": splits,
        "takes": {"n": int(len(lengths)), "multi_window": int((windows > 1).sum()), "longest_s": float(lengths.max(initial=0.0)),
                  "by_length": dict(zip(bins, (int(c) for c in counts), strict=True)), "lengths_s": sorted(lengths.tolist())},
        "identities": {"total": int(ident.nunique()), "by_language": identities},
        "rebuild_needed": {str(k): int(v) for k, v in rebuild[rebuild != ""].value_counts().sort_index().items()},
    }  # fmt: skip


def compute_stats(df: pd.DataFrame, cfg: BuildConfig | None = None) -> dict[str, Any]:
    totals = _group_stats(df)
    languages = {lang: _group_stats(g) for lang, g in sorted(df.groupby("report_lang"), key=lambda x: x[0])}
    out = {"totals": totals, "languages": languages, **_dataset_stats(df)}
    if cfg is not None:
        from .sweep import sweep

        out["sweep"] = sweep(df, cfg)
    return out


# ---- HTML ---------------------------------------------------------------------------------------------------
def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(pid: str, title: str, b64: str) -> str:
    return f'<figure><img id="plot-{pid}" alt="{html.escape(title)}" src="data:image/png;base64,{b64}"><figcaption>{html.escape(title)}</figcaption></figure>'


def _plots(df: pd.DataFrame, stats: dict[str, Any]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs: list[str] = []
    langs = list(stats["languages"])
    if langs:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.2))
        a1.bar(langs, [stats["languages"][x]["hours_kept"] for x in langs], color="#3a7")
        a1.set_title("hours kept")
        x = np.arange(len(langs))
        a2.bar(x - 0.2, [stats["languages"][g]["kept"] for g in langs], 0.4, label="kept", color="#3a7")
        a2.bar(x + 0.2, [stats["languages"][g]["dropped"] for g in langs], 0.4, label="dropped", color="#c55")
        a2.set_xticks(x, langs)
        a2.set_title("clips")
        a2.legend()
        figs.append(_img("languages", "Hours and clips per language", _png(fig)))

        stages = [f["stage"] for f in stats["totals"]["funnel"]]
        fig, ax = plt.subplots(figsize=(10, 3.2))
        width = 0.8 / len(langs)
        for i, lang in enumerate(langs):
            drops = {f["stage"]: f["dropped"] for f in stats["languages"][lang]["funnel"]}
            ax.bar(np.arange(len(stages)) + i * width, [drops.get(s, 0) for s in stages], width, label=lang)
        ax.set_xticks(np.arange(len(stages)) + 0.4 - width / 2, stages)
        ax.set_ylabel("clips dropped")
        ax.set_title("drop funnel: clips dropped per stage")
        ax.legend(ncol=min(len(langs), 10), fontsize=8)
        figs.append(_img("funnel", "Drop funnel per stage per language", _png(fig)))

    lengths = stats.get("takes", {}).get("lengths_s") or []
    if lengths:
        fig, ax = plt.subplots(figsize=(4.8, 2.8))
        ax.hist(lengths, bins=np.array(TAKE_BINS_S[:-1] + (max(max(lengths), TAKE_BINS_S[-2]) + 1,)), color="#37a")
        ax.set_xscale("symlog", linthresh=10)
        ax.set_title("takes by kept length (s)")
        figs.append(_img("takes", "Takes by length", _png(fig)))
    sw = stats.get("sweep") or []
    if sw:
        cols = 4
        fig, axes = plt.subplots((len(sw) + cols - 1) // cols, cols, figsize=(12, 2.4 * ((len(sw) + cols - 1) // cols)),
                                 squeeze=False)  # fmt: skip
        for ax, g in zip(axes.ravel(), sw, strict=False):
            ax.plot(g["values"], g["clips"], "o-", color="#3a7", ms=3, label="kept")
            if any(g["rebuild"]):
                ax.plot(g["values"], np.add(g["clips"], g["rebuild"]), ":", color="#c55", label="+ rebuild")
            ax.axvline(g["current"], color="k", lw=1, ls="--")
            ax.set_title(g["label"], fontsize=9)
            ax.tick_params(labelsize=7)
        for ax in axes.ravel()[len(sw):]:
            ax.axis("off")
        fig.suptitle("clips kept per threshold (dashed: today's setting)", fontsize=10)
        fig.tight_layout()
        figs.append(_img("sweep", "Threshold sweep", _png(fig)))

    for col in ("clip_s",) + HIST_SCORES:
        if col not in df:
            continue
        values = pd.to_numeric(df[col], errors="coerce")
        if values.notna().sum() == 0:
            continue
        fig, ax = plt.subplots(figsize=(4.8, 2.8))
        kept = values[df["kept"]].dropna()
        bins = np.histogram_bin_edges(values.dropna(), bins=20)
        ax.hist(values.dropna(), bins=bins, color="#bbb", label="all clips")
        if len(kept):
            ax.hist(kept, bins=bins, color="#3a7", alpha=0.8, label="kept")
        ax.set_title("clip duration (s)" if col == "clip_s" else col)
        ax.legend(fontsize=8)
        figs.append(_img(f"hist-{col}", f"Histogram of {col}", _png(fig)))
    return figs


def _table(tid: str, header: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            v = "" if math.isnan(v) else f"{v:.4g}"
        return f"<td>{html.escape(str(v))}</td>"

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(v) for v in r) + "</tr>" for r in rows)
    return f'<table id="{tid}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def render_html(df: pd.DataFrame, stats: dict[str, Any], title: str) -> str:
    t = stats["totals"]
    langs = stats["languages"]
    parts = [f"<h1>{html.escape(title)}</h1>",
             _table("totals", ["videos", "clips", "kept", "dropped", "hours kept"],
                    [[t["videos"], t["clips"], t["kept"], t["dropped"], t["hours_kept"]]]),
             "<h2>Per language</h2>",
             _table("languages", ["language", "videos", "clips", "kept", "dropped", "hours kept"],
                    [[k, v["videos"], v["clips"], v["kept"], v["dropped"], v["hours_kept"]] for k, v in langs.items()])]  # fmt: skip
    parts.append("<h2>Drop funnel</h2>")
    funnel_rows = [[lang, f["stage"], f["dropped"], f["remaining"], ", ".join(f"{r}: {n}" for r, n in f["reasons"].items())]
                   for lang, v in langs.items() for f in v["funnel"]]  # fmt: skip
    parts.append(_table("funnel", ["language", "stage", "dropped", "remaining", "reasons"], funnel_rows))
    dropped = df[~df["kept"]]
    reason_rows = []
    for (stage, reason), g in dropped.groupby(["drop_stage", "drop_reason"], sort=False):
        order = STAGES.index(stage) if stage in STAGES else len(STAGES)
        reason_rows.append((order, [stage, reason, len(g), " ".join(g["key"].astype(str).head(N_EXAMPLES))]))
    parts.append("<h2>Drop reasons</h2>")
    parts.append(_table("reasons", ["stage", "reason", "clips", "example keys"], [r for _, r in sorted(reason_rows, key=lambda x: x[0])]))
    score_rows = []
    for name, sc in t["scores"].items():
        kept = sc["kept"] or {"n": 0}
        score_rows.append([name] + [kept.get(k, float("nan")) for k in ("n", "mean", "p10", "p50", "p90")]
                          + [sc["all"]["n"], sc["all"]["mean"]])  # fmt: skip
    parts.append("<h2>Scores</h2>")
    parts.append(_table("scores", ["score", "kept n", "kept mean", "kept p10", "kept p50", "kept p90", "all n", "all mean"], score_rows))
    parts.append("<h2>Splits (by identity)</h2>")
    parts.append(_table("splits", ["split", "language", "clips", "hours"],
                        [[sp, lang, v["clips"], v["hours"]] for sp, by in stats.get("splits", {}).items() for lang, v in by.items()]))
    tk = stats.get("takes", {})
    parts.append(f"<h2>Takes</h2><p id=\"takes-summary\">{tk.get('n', 0)} takes kept, {tk.get('multi_window', 0)} of "
                 f"several windows, longest {tk.get('longest_s', 0.0):.1f} s</p>")
    parts.append(_table("takes", ["kept length", "takes"], [[b, n] for b, n in tk.get("by_length", {}).items()]))
    ids = stats.get("identities", {})
    parts.append("<h2>Identities</h2>")
    parts.append(_table("identities", ["language", "identities"],
                        [[k, v] for k, v in ids.get("by_language", {}).items()] + [["all", ids.get("total", 0)]]))
    parts.append("<h2>Threshold sweep</h2><p>Clips and hours kept if one gate's threshold moved (all others as "
                 "today); <b>rebuild</b>: rows a hard gate dropped that would pass, but whose later scores were "
                 "never measured. Change a threshold with <code>python -m pipeline.select --out OUT --set "
                 "sync.min_conf=2.5</code>.</p>")
    sweep_rows = [[g["label"], g["gate"], v, c, h, rb, "today" if v == float(f"{g['current']:.4g}") else ""]
                  for g in stats.get("sweep", []) for v, c, h, rb in zip(g["values"], g["clips"], g["hours"], g["rebuild"], strict=True)]  # fmt: skip
    parts.append(_table("sweep", ["gate", "setting", "threshold", "clips", "hours", "rebuild", "today"], sweep_rows))
    rb = stats.get("rebuild_needed", {})
    if rb:
        parts.append(_table("rebuild", ["gate", "rows a rebuild might keep"], [[k, v] for k, v in rb.items()]))
    parts.append("<h2>Plots</h2>")
    plots = _plots(df, stats)
    parts.append("".join(plots) if plots else '<p id="no-plots">No clips to plot.</p>')
    style = ("body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:.5em 0}"
             "#sweep tr:has(td:last-child:not(:empty)){font-weight:bold;background:#efe}"
             "td,th{border:1px solid #ccc;padding:2px 8px;font-size:13px}th{background:#eee}"
             "figure{display:inline-block;margin:.5em}img{max-width:100%}")  # fmt: skip
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")  # fmt: skip


def write_report(cfg: BuildConfig, pending: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
    """Write <out>/stats.json and <out>/report.html from <out>/index.parquet; returns the stats dict.

    `pending`: videos left for the next run after transient failures (not in the index; default: what
    <out>/pending.json lists). Both files are written to a temp name and renamed, so a full disk never leaves a
    truncated report."""
    from .sink import read_pending, write_atomic

    out = Path(cfg.out)
    pending = read_pending(out) if pending is None else pending
    df = load_index(out)
    stats = compute_stats(df, cfg)
    stats["pending"] = {"videos": len(pending), "video_keys": sorted(pending)}
    page = render_html(df, stats, f"Talking-face curation report: {out.resolve().name}")
    if pending:
        note = (f'<p id="pending">{len(pending)} source videos are left for the next run after transient failures '
                f"(disk, network, timeouts): {html.escape(' '.join(sorted(pending)[:20]))}; see pending.json.</p>")
        page = page.replace("<h2>Per language</h2>", note + "<h2>Per language</h2>", 1)
    write_atomic(out / "stats.json", json.dumps(stats, indent=1, sort_keys=False).encode("utf-8"))
    write_atomic(out / "report.html", page.encode("utf-8"))
    return stats
