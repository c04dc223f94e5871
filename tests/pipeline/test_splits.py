"""Splits by identity: deterministic, stable when identities are added, shares followed, small builds filled."""

from __future__ import annotations

from collections import Counter

from pipeline.config import SplitsConfig
from pipeline.splits import assign_splits


def test_shares_and_stability():
    ids = [f"id-{i:04d}" for i in range(2000)]
    cfg = SplitsConfig()
    out = assign_splits(ids, cfg)
    share = Counter(out.values())
    assert abs(share["train"] / 2000 - 0.8) < 0.04 and abs(share["test"] / 2000 - 0.1) < 0.03
    more = assign_splits(ids + [f"id-new{i}" for i in range(500)], cfg)
    assert all(more[i] == out[i] for i in ids)  # adding identities moves none of the old ones
    assert assign_splits(list(reversed(ids)), cfg) == out
    assert assign_splits(ids, SplitsConfig(seed="other")) != out


def test_small_builds_fill_train_then_test_then_val():
    cfg = SplitsConfig()
    for n, want in ((1, {"train"}), (2, {"train", "test"}), (3, {"train", "test", "val"}), (5, {"train", "test", "val"})):
        for offset in range(20):  # whatever the hashes say
            out = assign_splits([f"p{offset}-{i}" for i in range(n)], cfg)
            assert set(out.values()) == want, (n, offset, out)
    only_train = assign_splits([f"x{i}" for i in range(5)], SplitsConfig(val=0.0, test=0.0))
    assert set(only_train.values()) == {"train"}
