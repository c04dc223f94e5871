"""train / val / test by identity: every clip of one identity lands in one split, decided by a hash of the id.

Why a hash: an identity keeps its split when other videos are added later (a model trained on an earlier
build's train split has not seen a later build's test speakers), and the result needs no state. The share of
identities per split follows `splits.{train,val,test}` on average. A build too small for the hash to fill every
split with a non-zero share (a handful of identities) fills the empty ones in the order train, test, val: it
moves, from the fullest split, the identity whose hash lies nearest the empty split's interval (a split's last
identity moves only into a split earlier in that order), so one identity is train, two are train + test.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

SPLITS: tuple[str, ...] = ("train", "val", "test")


def unit(identity_id: str, seed: str) -> float:
    """A stable number in [0, 1) for an identity."""
    return int(hashlib.sha1(f"{seed}:{identity_id}".encode()).hexdigest()[:15], 16) / 16**15


def _intervals(cfg) -> dict[str, tuple[float, float]]:
    shares = [max(float(getattr(cfg, s)), 0.0) for s in SPLITS]
    total = sum(shares)
    if total <= 0:
        raise ValueError("splits: train + val + test must be > 0")
    out, lo = {}, 0.0
    for s, share in zip(SPLITS, shares, strict=True):
        out[s] = (lo, lo + share / total)
        lo += share / total
    return out


FILL_ORDER: tuple[str, ...] = ("train", "test", "val")  # which empty split a small build fills first


def assign_splits(identities: Iterable[str], cfg) -> dict[str, str]:
    """{identity_id: split} for a SplitsConfig `cfg`."""
    ivals = _intervals(cfg)
    pos = {i: unit(i, cfg.seed) for i in sorted(set(identities))}
    out = {i: next((s for s in SPLITS if ivals[s][0] <= u < ivals[s][1]), SPLITS[0]) for i, u in pos.items()}
    order = [s for s in FILL_ORDER if ivals[s][1] > ivals[s][0]]
    while True:
        members = {s: sorted(i for i in out if out[i] == s) for s in SPLITS}
        empty = [s for s in order if not members[s]]
        if not empty:
            return out
        target = empty[0]
        donors = [s for s in SPLITS if len(members[s]) >= 2]
        if donors:
            donor = max(donors, key=lambda s: (len(members[s]), -SPLITS.index(s)))
        else:  # only lone identities left: one moves up only from a split that matters less
            lower = [s for s in order[order.index(target) + 1 :] if members[s]]
            if not lower:
                return out
            donor = lower[-1]
        lo, hi = ivals[target]
        mover = min(members[donor], key=lambda i: (min(abs(pos[i] - lo), abs(pos[i] - hi)), i))
        out[mover] = target
