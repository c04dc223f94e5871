"""Sync scorer accuracy + speed on real clips: recovery of known audio shifts and in-sync vs mismatched AUC.

Usage: OMP_NUM_THREADS=1 python benchmarks/bench_sync.py [--cache DIR] [--clips N] [--reference syncnet]
For each real talking clip in ../shared/media/video_av (normalised to 25 fps / 16 kHz, face-cropped with dlib by
benchmarks/kit/sync_media.py): the audio is delayed by k in -10..10 frames and the scorer must find k (+-1);
then the same video is scored against every other clip's audio (another speaker's speech) and the AUC of the
confidence (own in-sync audio vs others) is reported. Prints one row per clip and a total row.
"In sync" is by default each source re-aligned by its hand-read offset (two sources are off: SOURCE_OFFSETS in
benchmarks/kit/sync_media.py, read with benchmarks/sync_sheet.py); --reference source takes the files as they are,
--reference syncnet re-aligns by upstream SyncNet's reading (weights not offline; benchmarks/RESULTS_sync.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a clone

from benchmarks.kit import sync_media  # noqa: E402
from benchmarks.kit.cache import cache_root  # noqa: E402
from pipeline.config import BuildConfig, default_models_dir  # noqa: E402
from pipeline.models.sync_energy import EnergySyncScorer  # noqa: E402
from pipeline.models.sync_loader import load_sync_scorer  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--cache", default=str(cache_root() / "sync"))
    p.add_argument("--clips", type=int, default=0, help="use only the first N clips (0 = all)")
    p.add_argument("--shared", default=str(ROOT.parent / "shared" / "media"))
    p.add_argument("--reference", choices=["annotated", "source", "syncnet"], default="annotated",
                   help="what counts as in sync: the sources re-aligned by the hand-read offsets in "
                   "sync_media.SOURCE_OFFSETS (default), the source files as they are, or the sources re-aligned "
                   "by SyncNet's reading (needs syncnet_v2.model under --models-dir)")
    p.add_argument("--scorer", choices=["energy", "syncnet"], default="energy", help="the scorer under test")
    p.add_argument("--models-dir", default=default_models_dir())
    args = p.parse_args()
    names = sync_media.TALKING_CLIPS + sync_media.EXTRA_CLIPS
    names = names[: args.clips] if args.clips else names
    Path(args.cache).mkdir(parents=True, exist_ok=True)
    rows = sync_media.prepare(Path(args.shared), Path(args.cache), names)
    reference = sync_media.SOURCE_OFFSETS if args.reference == "annotated" else None
    cfg = BuildConfig(models_dir=args.models_dir)
    cfg.sync.scorer = "syncnet"  # the pipeline's loader: a clear error names the weights path when absent
    try:
        syncnet = load_sync_scorer(cfg) if "syncnet" in (args.reference, args.scorer) else None
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    if syncnet is not None and args.reference == "syncnet":
        reference = sync_media.reference_offsets(sync_media.load_clips(rows), syncnet)
        print("SyncNet k=0 offsets of the sources (audio moved by minus these):", reference)
    scorer = syncnet if args.scorer == "syncnet" else EnergySyncScorer()
    res = sync_media.evaluate(sync_media.load_clips(rows, reference), scorer)
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
    if reference:
        raw = sync_media.evaluate(sync_media.load_clips(rows), scorer, mismatched=False)
        print(f"absolute recovery taking every source file as in sync: {raw['recovery']:.1%}")


if __name__ == "__main__":
    main()
