"""Score the pipeline's rows on the benchmark's items against the truth known by construction.

Each output row is matched to the truth segment that covers most of it. Metrics (one half at a time):
  shots     detected cuts (the middle of the trimmed gap between consecutive shots) vs true cuts, +-0.5 s
  sync      |offset - k| <= 1 frame on the shifted items (probe: the sync stage on every row faces kept);
            AUC of sync_conf, in-sync rows (bases, cut segments) vs dubbed rows (another speaker's audio)
  faces     confusion of the faces stage's decision (one / multi / none / small) per row
  language  top-1 == spoken language on rows with speech; other-language items dropped as lang_mismatch
  keep      precision: kept rows lying in one good segment (>= 90 % of the row) with the audio re-aligned to
            within +-1 frame of the truth; recall: good segments with such a kept row over >= 50 % of them
  quality   in-sync studio rows dropped as blurry (should be none); blur / crf45 rows dropped
"""

from __future__ import annotations

import numpy as np

from .curation_media import Item, Segment

FACE_CLASS = {"multi_face": "multi", "no_face": "none", "track_broken": "none", "small_face": "small"}
CLASSES = ("one", "multi", "none", "small")
STUDIO = {"aoc", "vexaoc", "face3", "katie", "face2", "face5"}  # HDTF-style studio crops


def seg_for(item: Item, row: dict) -> tuple[Segment | None, float]:
    """The truth segment covering most of the row, and the fraction of the row it covers."""
    a, b = float(row["start_s"]), float(row["end_s"])
    best, cover = None, 0.0
    for s in item.segments:
        ov = max(0.0, min(b, s.end) - max(a, s.start))
        if ov > cover:
            best, cover = s, ov
    return best, cover / max(b - a, 1e-6)


def mixes_faces(item: Item, row: dict, min_s: float = 0.5) -> bool:
    """True when the row spans two segments of different people by more than min_s each."""
    a, b = float(row["start_s"]), float(row["end_s"])
    ids = {s.identity for s in item.segments if min(b, s.end) - max(a, s.start) > min_s and s.faces == "one"}
    return len(ids) > 1


def match_cuts(res: dict, tol: float = 0.5) -> tuple[list[float], list[float], list[float]]:
    """(found cuts that hit a true cut, false cuts, missed true cuts) of one item: a found cut is the midpoint of
    the gap between consecutive shot rows, matched greedily to the first true cut within `tol` s."""
    rows = sorted(res["shots"], key=lambda r: r.get("start_s", 0.0))
    found = [(float(p["end_s"]) + float(q["start_s"])) / 2 for p, q in zip(rows, rows[1:], strict=False)]
    truth, hits, false = list(res["item"].cuts), [], []
    for c in found:
        hit = next((t for t in truth if abs(t - c) <= tol), None)
        if hit is None:
            false.append(c)
        else:
            truth.remove(hit)
            hits.append(c)
    return hits, false, truth


def shot_counts(res: dict, tol: float = 0.5) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of one item's cuts."""
    hits, false, missed = match_cuts(res, tol)
    return len(hits), len(false), len(missed)


def shot_misses(res: dict, tol: float = 0.5) -> list[str]:
    """The item's false and missed cuts, for `--misses`."""
    _, false, missed = match_cuts(res, tol)
    key = res["item"].key
    return [f"{key}: false cut at {c:.2f} s" for c in false] + [f"{key}: missed cut at {t:.2f} s" for t in missed]


def shot_score(results: list[dict]) -> dict:
    """Shot precision / recall / F1 over one half's video items ({"item", "shots"} each; variants skipped)."""
    tp = fp = fn = 0
    misses: list[str] = []
    for res in results:
        if not res["item"].video_of:
            a, b, c = shot_counts(res)
            tp, fp, fn = tp + a, fp + b, fn + c
            misses += shot_misses(res)
    prec, rec = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    return {"shot_p": prec, "shot_r": rec, "shot_f1": 2 * prec * rec / max(prec + rec, 1e-9), "shot_n": tp + fn,
            "shot_fp": fp, "misses": misses}  # fmt: skip


def auc(pos: list[float], neg: list[float]) -> float:
    if not pos or not neg:
        return float("nan")
    p, n = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float(((p > n) + 0.5 * (p == n)).mean())


def kept_correct(item: Item, row: dict) -> bool:
    seg, cover = seg_for(item, row)
    if seg is None or cover < 0.9 or not seg.good or mixes_faces(item, row):
        return False
    return seg.k is None or abs(int(row.get("sync_shift_frames", 0)) - seg.k) <= 1


def score(results: list[dict], min_clip_s: float = 2.0, trim_s: float = 0.5) -> dict:
    """All metrics over one half's results (the Runner's outputs)."""
    tp = fp = fn = 0
    shifted, insync0, pos, neg = [], [], [], []
    conf = {t: {p: 0 for p in (*CLASSES, "other")} for t in CLASSES}
    lang_ok, lang_n, mis_drop, mis_n, good_lang_drops = 0, 0, 0, 0, 0
    kept, correct, good_total, good_found, mixed = 0, 0, 0, 0, 0
    studio_blurry, studio_n, degraded_drop, degraded_blurry, degraded_n = 0, 0, 0, 0, 0
    misses: list[str] = []
    for res in results:
        item = res["item"]
        if not item.video_of:
            a, b, c = shot_counts(res)
            tp, fp, fn = tp + a, fp + b, fn + c
            for r in res["faces"]:
                if r.get("drop_stage") in ("shots", "download", "normalize"):
                    continue
                seg, _ = seg_for(item, r)
                pred = "one" if r["status"] == "ok" or r.get("drop_reason") == "extreme_pose" else FACE_CLASS.get(r.get("drop_reason"), "other")
                if seg is not None:
                    conf[seg.faces][pred] += 1
        for key, p in res["probe"].items():
            s = p["sync"]
            seg, _ = seg_for(item, s)
            if seg is None or "av_offset_frames" not in s:
                continue
            if item.kind == "shift":
                ok = abs(int(s["av_offset_frames"]) - seg.k) <= 1
                shifted.append(ok)
                if not ok:
                    misses.append(f"{key}: read {s['av_offset_frames']} for k={seg.k}")
            if item.kind in ("base", "cuts", "xfade") and seg.k == 0 and seg.faces == "one":
                insync0.append(abs(int(s["av_offset_frames"])) <= 1)
                pos.append(float(s["sync_conf"]))
            if item.kind in ("dub", "otherlang"):
                neg.append(float(s["sync_conf"]))
            q = p["quality"]
            if item.kind == "base" and item.meta.get("source") in STUDIO:
                studio_n += 1
                studio_blurry += q.get("drop_reason") == "blurry"
        for r in res["lang"]:
            seg, _ = seg_for(item, r)
            if seg is None or not r.get("lang"):
                continue
            if seg.lang:
                lang_n += 1
                lang_ok += r["lang"] == seg.lang
            if seg.good and r.get("drop_stage") == "language":
                good_lang_drops += 1
        for r in res["rows"]:
            seg, _ = seg_for(item, r)
            if item.kind == "otherlang" and r.get("drop_stage") not in ("faces", "shots"):
                mis_n += 1
                mis_drop += r.get("drop_reason") == "lang_mismatch"
            if item.kind in ("blur", "crf45"):
                degraded_n += 1
                degraded_drop += r["status"] != "ok"
                degraded_blurry += r.get("drop_reason") == "blurry"
            if r["status"] == "ok":
                kept += 1
                good = kept_correct(item, r)
                correct += good
                mixed += mixes_faces(item, r)
                if not good:
                    misses.append(f"kept {r['key']} ({item.kind}) wrongly: shift {r.get('sync_shift_frames')} truth {seg}")
        for sg in item.segments:
            usable = (sg.end - sg.start) - trim_s * sum(0 < c < item.duration for c in item.cuts if c in (sg.start, sg.end))
            if not sg.good or usable < min_clip_s:
                continue
            good_total += 1
            hit = any(
                r["status"] == "ok" and kept_correct(item, r)
                and min(float(r["end_s"]), sg.end) - max(float(r["start_s"]), sg.start) >= 0.5 * usable
                for r in res["rows"]
            )  # fmt: skip
            good_found += hit
            if not hit:
                why = next((f"{r['drop_reason']} ({r.get('drop_detail', '')})" for r in res["rows"]
                            if r["status"] != "ok" and seg_for(item, r)[0] is sg), "no row")  # fmt: skip
                misses.append(f"good {item.key} [{sg.start:.1f},{sg.end:.1f}) not kept: {why}")
    prec = tp / max(tp + fp, 1)
    rec = tp / max(tp + fn, 1)
    multi = conf["multi"]
    return {
        "shot_p": prec, "shot_r": rec, "shot_f1": 2 * prec * rec / max(prec + rec, 1e-9), "shot_n": tp + fn,
        "sync_shift": float(np.mean(shifted)) if shifted else float("nan"), "sync_shift_n": len(shifted),
        "sync_k0": float(np.mean(insync0)) if insync0 else float("nan"), "sync_k0_n": len(insync0),
        "auc": auc(pos, neg), "auc_n": (len(pos), len(neg)),
        "faces": conf, "multi_as_multi": multi["multi"] / max(sum(multi.values()), 1),
        "lang_acc": lang_ok / max(lang_n, 1), "lang_n": lang_n, "mismatch_drop": mis_drop / max(mis_n, 1),
        "mismatch_n": mis_n, "good_lang_drops": good_lang_drops,
        "keep_p": correct / max(kept, 1), "keep_r": good_found / max(good_total, 1), "kept": kept,
        "good": good_total, "mixed_kept": mixed,
        "studio_blurry": studio_blurry, "studio_n": studio_n,
        "degraded_drop": degraded_drop / max(degraded_n, 1), "degraded_blurry": degraded_blurry / max(degraded_n, 1),
        "degraded_n": degraded_n, "misses": misses,
    }
