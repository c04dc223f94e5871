"""The per-clip self-calibrated sync scorer against the energy and fused scorers, held out by half: one table.

    OMP_NUM_THREADS=1 python benchmarks/bench_sync_selfcal.py [--cache /tmp/curation-bench]

Clips: the curation benchmark's in-sync base items (benchmarks/kit/curation_media.py), cut into clips by the real
shot and faces stages (cached in --cache; shared with bench_curation.py). Per clip: its own audio (truth 0), the
audio delayed by k = +-3, 5, 8 frames (truth k; cut from the source's own audio around the clip, so no padding),
and two other speakers' audio of the same half (dubs). The fused scorer's prior (and its lag bias and confidence
scale) is fitted on the other half; the self-calibrated scorer fits nothing across clips.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_curation import SHARED, models_dir_for  # noqa: E402
from benchmarks.kit.curation_build import DEFAULT_CACHE, Builder  # noqa: E402
from benchmarks.kit.curation_eval import auc  # noqa: E402
from benchmarks.kit.curation_run import Runner  # noqa: E402
from benchmarks.kit.sync_fit import LEAD, clip_inputs, fit  # noqa: E402
from benchmarks.kit.sync_selfcal import SelfCalSyncScorer  # noqa: E402
from pipeline.config import SAMPLE_MANIFESTS, load_config  # noqa: E402
from pipeline.models.sync_energy import HOP, EnergySyncScorer  # noqa: E402
from pipeline.models.sync_fused import FusedSyncScorer, _z  # noqa: E402
from pipeline.stages.sync import read_context_audio  # noqa: E402

KS = (-8, -5, -3, 3, 5, 8)
WIDE = LEAD + max(KS)


def base_clips(cache: Path) -> list[dict]:
    """Every faces-stage clip of the base items: scorer inputs plus WIDE frames of audio context."""
    items = Builder(SHARED, cache).items(("A", "B"))
    cfg = load_config(Path(SAMPLE_MANIFESTS) / "config.yaml", out=str(cache / "run-mtcnn"),
                      models_dir=models_dir_for("mtcnn", cache, SHARED), faces={"backend": "mtcnn"})  # fmt: skip
    runner = Runner(cfg, cache / "stages")
    clips = []
    for it in (i for i in items if i.kind == "base"):
        for r in (r for r in runner.video_rows(it)["faces"] if r["status"] == "ok"):
            c = clip_inputs(r, it.segments[0].identity)
            c |= {"half": it.half, "key": r["key"], "n": len(c["frames"])}
            c["wide"] = read_context_audio(r["audio_path"], float(r["start_s"]), c["n"], WIDE)
            clips.append(c)
    return clips


def delayed(c: dict, k: int) -> np.ndarray:
    """The clip's context audio (LEAD frames before the clip) with the sound delayed by k frames."""
    s = (WIDE - LEAD - k) * HOP
    return c["wide"][s : s + (c["n"] + 2 * LEAD) * HOP]


def evaluate(score, clips: list[dict], half: str) -> dict:
    """score(clip, audio) -> (offset, conf): +-1-frame recovery on the shifts and at k = 0, AUC own vs dubbed."""
    mine = [c for c in clips if c["half"] == half]
    hits, k0, pos, neg, misses = [], [], [], [], []
    for c in mine:
        for k in (0, *KS):
            off, conf = score(c, delayed(c, k))
            (k0 if k == 0 else hits).append(abs(off - k) <= 1)
            if k == 0:
                pos.append(conf)
            if abs(off - k) > 1:
                misses.append(f"{c['key']} k={k} read {off}")
        for o in [o for o in mine if o["identity"] != c["identity"]][:2]:
            neg.append(score(c, np.resize(o["audio"][LEAD * HOP :], len(c["audio"])))[1])
    return {"shift": float(np.mean(hits)), "n": len(hits), "k0": f"{sum(k0)}/{len(k0)}", "auc": auc(pos, neg),
            "misses": misses}  # fmt: skip


def clips_from_args(doc: str, argv: list[str] | None) -> tuple[argparse.Namespace, list[dict]]:
    """(--cache / --misses, the base clips): the command line these held-out sync benchmarks share."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--misses", action="store_true")
    args = p.parse_args(argv)
    return args, base_clips(args.cache)


def main(argv: list[str] | None = None) -> int:
    args, clips = clips_from_args(__doc__, argv)
    energy = EnergySyncScorer(15)
    fused = {h: FusedSyncScorer(15, prior=fit([c for c in clips if c["half"] != h])) for h in "AB"}
    selfcal = {ctx: SelfCalSyncScorer(15, ctx=ctx) for ctx in (2, 3)}
    pix = SelfCalSyncScorer(15, mouth_pca=8)

    def fused_plus_selfcal(h: str):
        def f(c, a):
            cf = fused[h].curve(c, a, audio_lead_frames=LEAD)
            tot = cf.values + _z(selfcal[2].lag_values(c, a, LEAD))
            return int(np.argmax(tot)) - 15, cf.conf
        return f

    variants = {
        "energy": lambda h: lambda c, a: energy.score(c, a, audio_lead_frames=LEAD),
        "fused (prior fitted on the other half)": lambda h: lambda c, a: fused[h].score(c, a, audio_lead_frames=LEAD),
        "self-calibrated, context +-2": lambda h: lambda c, a: selfcal[2].score(c, a, audio_lead_frames=LEAD),
        "self-calibrated, context +-3": lambda h: lambda c, a: selfcal[3].score(c, a, audio_lead_frames=LEAD),
        "self-calibrated +-2, + 8 mouth-pixel PCs": lambda h: lambda c, a: pix.score(c, a, audio_lead_frames=LEAD),
        "fused + z(self-calibrated +-2) curves": fused_plus_selfcal,
    }
    print(TABLE_HEAD)
    notes = [n for name, make in variants.items() for n in table_rows(name, make, clips, args.misses)]
    print("\n".join(notes))
    return 0


TABLE_HEAD = "| scorer | test half | shifts +-1 frame (n) | k=0 +-1 | AUC own vs dubbed |\n|---|---|---|---|---|"


def table_rows(name: str, make, clips: list[dict], misses: bool) -> list[str]:
    """Print one scorer's row per test half (make(half) -> score(clip, audio)); its misses when asked."""
    notes = []
    for h in "AB":
        m = evaluate(make(h), clips, h)
        print(f"| {name} | {h} | {m['shift']:.3f} ({m['n']}) | {m['k0']} | {m['auc']:.3f} |", flush=True)
        notes += [f"{name} / {h}: " + "; ".join(m["misses"])] if misses else []
    return notes


if __name__ == "__main__":
    sys.exit(main())
