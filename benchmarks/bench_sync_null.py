"""Does a per-clip reference fix the sync confidence's per-speaker scale? The fused confidence against its null.

    OMP_NUM_THREADS=1 python benchmarks/bench_sync_null.py [--cache /tmp/curation-bench] [--rotations 8]

Why: keep recall on half B is low because half B's in-sync speakers score as low as half A's dubs (RESULTS_sync
G). A reference that the pipeline can always compute is the same video against the clip's own audio rotated by
at least a second (same voice, same loudness, no sync): if a speaker's confidence scale showed in that null, the
confidence in units of it would separate own audio from dubs with one threshold for every speaker.

Clips: the curation benchmark's in-sync base items cut by the real shot and faces stages (bench_sync_selfcal's
`base_clips`, cached in --cache). Per clip: the fused scorer's unscaled confidence (its prior fitted on the other
half) on the clip's own audio, on every other identity's audio of the same half (dubs), and on each of those
audios rotated by --rotations evenly spaced amounts of >= 1 s (the null; the clip's audio is what the pipeline
has, so a dub's null is the dub rotated). Printed: per clip the own reading against its null, and per rule the
AUC own vs dubs and the share of in-sync clips a threshold fitted on the other half keeps.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_sync_selfcal import base_clips  # noqa: E402
from benchmarks.kit.curation_build import DEFAULT_CACHE  # noqa: E402
from benchmarks.kit.curation_eval import auc  # noqa: E402
from benchmarks.kit.sync_fit import LEAD, fit  # noqa: E402
from pipeline.models.sync_energy import HOP  # noqa: E402
from pipeline.models.sync_fused import FusedSyncScorer  # noqa: E402
from pipeline.models.sync_prior import decision_point  # noqa: E402

Reading = tuple[float, np.ndarray]  # (confidence on the audio as given, confidences on its rotations)
RULES: dict[str, Callable[[Reading], float]] = {
    "raw (today)": lambda r: r[0],
    "z against the null": lambda r: (r[0] - r[1].mean()) / (r[1].std() + 1e-9),
    "minus the null's max": lambda r: r[0] - r[1].max(),
}


def readings(clips: list[dict], n_rot: int) -> dict[str, dict]:
    """Per clip key: half, the own reading and the dubs' readings, each with its null."""
    out = {}
    for h in "AB":
        scorer = FusedSyncScorer(15, prior=fit([c for c in clips if c["half"] != h]), conf_scale=1.0)
        mine = [c for c in clips if c["half"] == h]
        for c in mine:
            rot = np.linspace(25, c["n"] + 2 * LEAD - 25, n_rot).round().astype(int)  # >= 1 s at 25 fps

            def read(audio: np.ndarray, c=c, rot=rot, scorer=scorer) -> Reading:
                conf = [scorer.raw(c, a, audio_lead_frames=LEAD)[1] for a in (audio, *(np.roll(audio, r * HOP) for r in rot))]
                return conf[0], np.asarray(conf[1:])

            dubs = [read(np.resize(o["audio"][LEAD * HOP :], len(c["audio"]))) for o in mine if o["identity"] != c["identity"]]
            out[c["key"]] = {"half": h, "own": read(c["audio"]), "dubs": dubs}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--rotations", type=int, default=8, help="rotations of the audio in each null")
    args = p.parse_args(argv)
    reads = readings(base_clips(args.cache), args.rotations)
    print("| test half | clip | own | null mean / sd / max | null readings >= own |\n|---|---|---|---|---|")
    for key, r in reads.items():
        own, null = r["own"]
        print(f"| {r['half']} | {key} | {own:.2f} | {null.mean():.2f} / {null.std():.2f} / {null.max():.2f} | "
              f"{int((null >= own).sum())}/{len(null)} |")  # fmt: skip
    print("\n| rule | test half | AUC own vs dubs | own (sorted) | dubs median / p90 / max | in-sync kept at the "
          "other half's decision point | dubs kept |\n|---|---|---|---|---|---|---|")
    for name, rule in RULES.items():
        pos = {h: [rule(r["own"]) for r in reads.values() if r["half"] == h] for h in "AB"}
        neg = {h: [rule(d) for r in reads.values() if r["half"] == h for d in r["dubs"]] for h in "AB"}
        for h, other in (("A", "B"), ("B", "A")):
            cut = decision_point(pos[other], neg[other])
            print(f"| {name} | {h} | {auc(pos[h], neg[h]):.3f} | {' '.join(f'{v:.2f}' for v in sorted(pos[h]))} | "
                  f"{np.median(neg[h]):.2f} / {np.percentile(neg[h], 90):.2f} / {max(neg[h]):.2f} | "
                  f"{np.mean(np.asarray(pos[h]) >= cut):.2f} | {np.mean(np.asarray(neg[h]) >= cut):.2f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
