"""Sync scorer accuracy + speed on real clips: recovery of known audio shifts and in-sync vs mismatched AUC.

Usage: OMP_NUM_THREADS=1 python benchmarks/bench_sync.py [--cache DIR] [--clips N]
For each real talking clip in ../shared/media/video_av (normalised to 25 fps / 16 kHz, face-cropped with dlib by
tests/pipeline/sync_media.py): the audio is delayed by k in -10..10 frames and the scorer must find k (+-1);
then the same video is scored against every other clip's audio (another speaker's speech) and the AUC of the
confidence (own in-sync audio vs others) is reported. Prints one row per clip and a total row.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "pipeline")]

import sync_media  # noqa: E402

from pipeline import media  # noqa: E402
from pipeline.models.sync_energy import EnergySyncScorer  # noqa: E402

LEAD = 15  # frames of audio context before (and after) the scored window


def auc(pos: list[float], neg: list[float]) -> float:
    p, n = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float(((p > n) + 0.5 * (p == n)).mean())


def evaluate(rows: list[dict], scorer, shifts=range(-10, 11)) -> dict:
    """Per-clip recovery of shifts and confidences; windows skip LEAD frames at each end for audio context."""
    clips = []
    for row in rows:
        frames = media.read_frames(row["crop_path"])
        track = dict(np.load(row["track_path"]))
        audio = media.read_audio(row["audio_path"])
        n = min(len(frames), len(audio) // sync_media.HOP)
        clips.append({"key": row["key"], "frames": frames[LEAD : n - LEAD], "audio": audio[: n * sync_media.HOP],
                      "lms": track["landmarks_crop"][LEAD : n - LEAD], "mouth_open": track["mouth_open"][LEAD : n - LEAD]})  # fmt: skip
    out, t_total, calls = [], 0.0, 0
    for i, c in enumerate(clips):
        video = {"frames": c["frames"], "landmarks_crop": c["lms"], "mouth_open": c["mouth_open"]}
        hits, found = 0, {}
        for k in shifts:
            t = time.perf_counter()
            off, conf = scorer.score(video, sync_media.shift_audio(c["audio"], k), audio_lead_frames=LEAD)
            t_total, calls = t_total + time.perf_counter() - t, calls + 1
            hits += abs(off - k) <= 1
            found[k] = off
            if k == 0:
                off0, conf0 = off, conf
        rel = sum(abs(found[k] - off0 - k) <= 1 for k in shifts)  # shift recovered relative to the clip's own offset
        mis = []
        for j, o in enumerate(clips):
            if j != i:
                other = np.resize(o["audio"], len(c["audio"]))
                mis.append(scorer.score(video, other, audio_lead_frames=LEAD)[1])
        out.append({"key": c["key"], "frames": len(c["frames"]), "off0": off0, "conf0": conf0, "hits": hits, "rel": rel,
                    "n_shifts": len(shifts), "mis": mis})  # fmt: skip
    rec = sum(r["hits"] for r in out) / sum(r["n_shifts"] for r in out)
    rel = sum(r["rel"] for r in out) / sum(r["n_shifts"] for r in out)
    a = auc([r["conf0"] for r in out], [m for r in out for m in r["mis"]])
    return {"clips": out, "recovery": rec, "relative": rel, "auc": a, "s_per_call": t_total / max(calls, 1)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--cache", default="/tmp/tfw_bench_sync")
    p.add_argument("--clips", type=int, default=0, help="use only the first N clips (0 = all)")
    p.add_argument("--shared", default=str(ROOT.parent / "shared" / "media"))
    args = p.parse_args()
    names = sync_media.TALKING_CLIPS + sync_media.EXTRA_CLIPS
    names = names[: args.clips] if args.clips else names
    Path(args.cache).mkdir(parents=True, exist_ok=True)
    rows = sync_media.prepare(Path(args.shared), Path(args.cache), names)
    res = evaluate(rows, EnergySyncScorer())
    print("| clip | frames | offset (k=0) | conf in-sync | k recovered +-1 | k - offset(0) recovered +-1 "
          "| conf mismatched (median/max) |")
    print("|---|---|---|---|---|---|---|")
    for r in res["clips"]:
        print(f"| {r['key']} | {r['frames']} | {r['off0']} | {r['conf0']:.2f} | {r['hits']}/{r['n_shifts']} | {r['rel']}/{r['n_shifts']} | "
              f"{np.median(r['mis']):.2f} / {max(r['mis']):.2f} |")  # fmt: skip
    print(f"| **all ({len(rows)} clips)** | | | | **{res['recovery']:.1%}** | **{res['relative']:.1%}** "
          f"| **AUC {res['auc']:.3f}** |")
    pos = np.array([r["conf0"] for r in res["clips"]])
    neg = np.array([m for r in res["clips"] for m in r["mis"]])
    print(f"\nat min_conf 3.0: in-sync kept {np.mean(pos >= 3.0):.0%}, mismatched rejected {np.mean(neg < 3.0):.0%}")
    print(f"scorer time per call (after decoding): {res['s_per_call'] * 1000:.1f} ms")


if __name__ == "__main__":
    main()
