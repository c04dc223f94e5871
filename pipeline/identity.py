"""Identities across the whole build: cluster clip identity embeddings, one stable id per cluster.

Why cluster at all: the faces stage knows who is on screen within one shot (its tracker), but not that the anchor of
video 12 is the anchor of video 380; without that, train and test share speakers and a model's test scores measure
memorisation. The unit is a take (consecutive windows of one tracked speaker), its embedding the normalised mean of
its windows' embeddings, so a take can never be cut across two identities (or two splits).

Clustering uses scikit-learn on cosine distance: average-linkage agglomerative clustering below
`max_agglomerative` units (needs the n x n distance matrix), DBSCAN with min_samples=1 above it (single linkage at
`dbscan_eps`, memory linear in n). Both thresholds come from benchmarks/bench_identity.py on real faces
(benchmarks/RESULTS_identity.md). Embeddings of different sizes (dlib 128-D vs ArcFace 512-D) are clustered apart.
Cluster ids are named after their smallest member, so the same input always gives the same ids.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

import numpy as np

log = logging.getLogger(__name__)

METHODS = ("auto", "agglomerative", "dbscan")


def normalise(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float64)
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, 1e-12)


def cluster(embs: np.ndarray, threshold: float, method: str = "agglomerative", dbscan_eps: float | None = None) -> np.ndarray:
    """Cluster labels (0..k-1) for rows of `embs` (unit vectors): cosine distance below `threshold` joins."""
    embs = normalise(embs)
    n = len(embs)
    if n == 0:
        return np.zeros(0, int)
    if n == 1:
        return np.zeros(1, int)
    if method == "agglomerative":
        from sklearn.cluster import AgglomerativeClustering

        model = AgglomerativeClustering(n_clusters=None, distance_threshold=threshold, metric="cosine", linkage="average")
        return model.fit_predict(embs)
    if method == "dbscan":
        from sklearn.cluster import DBSCAN

        eps = threshold if dbscan_eps is None else dbscan_eps
        return DBSCAN(eps=eps, min_samples=1, metric="cosine", algorithm="brute").fit_predict(embs)
    raise ValueError(f"identity.method must be one of {METHODS}, got {method!r}")


def pick_method(method: str, n: int, max_agglomerative: int) -> str:
    if method not in METHODS:
        raise ValueError(f"identity.method must be one of {METHODS}, got {method!r}")
    if method == "auto":
        return "agglomerative" if n <= max_agglomerative else "dbscan"
    return method


def identity_name(members: Sequence[str]) -> str:
    """A stable id for a cluster: a hash of its smallest member (a take id)."""
    return "id-" + hashlib.sha1(min(members).encode("utf-8")).hexdigest()[:12]


def assign_identities(units: dict[str, np.ndarray], cfg) -> dict[str, str]:
    """{unit: identity_id} for every unit (take id -> its embedding); `cfg` is an IdentityConfig."""
    by_dim: dict[int, list[str]] = {}
    for unit, e in units.items():
        by_dim.setdefault(int(np.asarray(e).size), []).append(unit)
    out: dict[str, str] = {}
    for dim, names in sorted(by_dim.items()):
        names = sorted(names)
        embs = np.stack([np.asarray(units[u], np.float64).reshape(-1) for u in names])
        method = pick_method(cfg.method, len(names), cfg.max_agglomerative)
        threshold = cfg.threshold if dim == 128 else cfg.threshold_512
        eps = cfg.dbscan_eps if dim == 128 else cfg.dbscan_eps_512
        labels = cluster(embs, threshold, method, eps)
        groups: dict[int, list[str]] = {}
        for name, lab in zip(names, labels, strict=True):
            groups.setdefault(int(lab), []).append(name)
        for members in groups.values():
            ident = identity_name(members)
            out.update(dict.fromkeys(members, ident))
        log.info("identity: %d takes (%d-D) -> %d identities (%s)", len(names), dim, len(groups), method)
    return out


def purity(labels_true: Sequence, labels_pred: Sequence) -> tuple[float, float]:
    """(purity, inverse purity): share of items in their cluster's majority identity, and in their identity's
    largest cluster. Purity alone is 1.0 for singletons; inverse purity alone is 1.0 for one big cluster."""
    from collections import Counter

    t, p = list(labels_true), list(labels_pred)
    if not t:
        return 1.0, 1.0
    by_pred: dict = {}
    by_true: dict = {}
    for a, b in zip(t, p, strict=True):
        by_pred.setdefault(b, Counter())[a] += 1
        by_true.setdefault(a, Counter())[b] += 1
    pur = sum(c.most_common(1)[0][1] for c in by_pred.values()) / len(t)
    inv = sum(c.most_common(1)[0][1] for c in by_true.values()) / len(t)
    return pur, inv
