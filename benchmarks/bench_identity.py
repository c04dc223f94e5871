"""Identity clustering on real faces: purity, inverse purity and number of clusters per threshold and method.

    python benchmarks/bench_identity.py [--cache /tmp/dataset-identity]

The items are the clip embeddings of benchmarks/kit/identity_media.py (16 people: 12 talking clips cut into 2-s
segments, Ocasio-Cortez in three different files, and 4 single photos). Calibration follows the project rule: the
people are split into two halves, the threshold is tuned on one half (best harmonic mean of purity and inverse
purity, the middle of the best interval) and reported on the other, then swapped. The pipeline default is the
mean of the two tuned values.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.kit.identity_media import identity_set  # noqa: E402
from pipeline.identity import cluster, purity  # noqa: E402

GRID = np.round(np.arange(0.01, 0.20001, 0.005), 4)


def score(embs: np.ndarray, labels: list[str], t: float, method: str) -> tuple[float, float, int]:
    pred = cluster(embs, t, method, dbscan_eps=t)
    p, inv = purity(labels, pred)
    return p, inv, len(set(pred.tolist()))


def tune(embs: np.ndarray, labels: list[str], method: str) -> float:
    f = []
    for t in GRID:
        p, inv, _ = score(embs, labels, t, method)
        f.append(2 * p * inv / (p + inv))
    f = np.array(f)
    best = np.flatnonzero(f >= f.max() - 1e-9)
    run = best[: np.argmax(np.diff(np.r_[best, 10**9]) > 1) + 1]  # the first contiguous best interval
    return float(GRID[run].mean())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default="/tmp/dataset-identity")
    ap.add_argument("--media", default=str(Path(__file__).resolve().parents[2] / "shared" / "media"))
    a = ap.parse_args()
    embs, labels, _ = identity_set(Path(a.media), Path(a.cache))
    people = sorted(set(labels))
    print(f"{len(labels)} items, {len(people)} people")
    d = 1 - embs @ embs.T
    lab = np.array(labels)
    iu = np.triu_indices(len(lab), 1)
    same = (lab[:, None] == lab[None, :])[iu]
    print(f"cosine distance: same person max {d[iu][same].max():.4f}, different people min {d[iu][~same].min():.4f}")
    halves = [people[0::2], people[1::2]]
    for method in ("agglomerative", "dbscan"):
        print(f"\n## {method}\n| threshold | purity | inverse purity | clusters (true {len(people)}) |\n|---|---|---|---|")
        for t in GRID[::2]:
            p, inv, k = score(embs, labels, t, method)
            print(f"| {t:.3f} | {p:.3f} | {inv:.3f} | {k} |")
        tuned = []
        print("\n| tuned on | threshold | reported on | purity | inverse purity | clusters / people |\n|---|---|---|---|---|---|")
        for i in (0, 1):
            fit = [j for j, x in enumerate(labels) if x in halves[i]]
            rep = [j for j, x in enumerate(labels) if x in halves[1 - i]]
            t = tune(embs[fit], [labels[j] for j in fit], method)
            tuned.append(t)
            p, inv, k = score(embs[rep], [labels[j] for j in rep], t, method)
            print(f"| half {i} | {t:.4f} | half {1 - i} | {p:.3f} | {inv:.3f} | {k} / {len(halves[1 - i])} |")
        t = float(np.mean(tuned))
        p, inv, k = score(embs, labels, t, method)
        print(f"\ndefault {method} threshold {t:.4f}: all items purity {p:.3f}, inverse purity {inv:.3f}, "
              f"{k} clusters for {len(people)} people")
    return 0


if __name__ == "__main__":
    sys.exit(main())
