"""Light-ASD on real clips: does it separate own speech from silence / other speech, and does it find A/V offsets?

Usage: OMP_NUM_THREADS=1 python benchmarks/bench_lightasd.py [--cache DIR] [--weights PATH] [--frames N]
For each real talking clip (normalised + dlib-tracked by benchmarks/kit/sync_media.py, first N frames after a
15-frame audio lead): the upstream 112x112 face crops are scored with their own audio, silence and every other
clip's audio (mean speaking log-odds), and with the own audio moved by -15..15 frames (one visual pass, one audio
pass per lag). offset = argmax of that curve (0 is right for in-sync clips; an added shift moves the curve by the
same amount, so the k=0 reading is what recovery depends on), z = (peak - median) / std of the curve.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a clone

from benchmarks.kit import sync_media  # noqa: E402
from benchmarks.kit.cache import cache_root  # noqa: E402
from pipeline import media  # noqa: E402
from pipeline.models.lightasd import asd_face_crops, audio_features, load_lightasd  # noqa: E402
from pipeline.models.sync_energy import EnergySyncScorer  # noqa: E402
from pipeline.track_io import read_track  # noqa: E402

LEAD = 15


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--cache", default=str(cache_root() / "sync"))
    p.add_argument("--shared", default=str(ROOT.parent / "shared" / "media"))
    p.add_argument("--weights", default="", help="checkpoint (default: <shared>/weights/light_asd_pretrain_AVA_CVPR.model)")
    p.add_argument("--frames", type=int, default=200)
    args = p.parse_args()
    torch.set_num_threads(1)
    weights = args.weights or str(Path(args.shared) / "weights" / "light_asd_pretrain_AVA_CVPR.model")
    model = load_lightasd(weights)
    rows = sync_media.prepare(Path(args.shared), Path(args.cache), sync_media.TALKING_CLIPS + sync_media.EXTRA_CLIPS)
    clips = []
    for r in rows:
        frames = media.read_frames(r["norm_path"])
        audio = media.read_audio(r["audio_path"])
        n = min(len(frames), len(audio) // 640, args.frames + 2 * LEAD)
        crops = asd_face_crops(frames[LEAD : n - LEAD], read_track(r["track_path"])["boxes"][LEAD : n - LEAD])
        energy_off = EnergySyncScorer().score(media.read_frames(r["crop_path"], size=(128, 128))[LEAD : n - LEAD],
                                              audio[: n * 640], audio_lead_frames=LEAD)[0]  # fmt: skip
        clips.append((r["key"], crops, audio[: n * 640], energy_off))
    print(f"weights: {Path(weights).name}")
    print("| clip | frames | own | silence | other (median / max) | offset (k=0) | peak z | energy scorer offset | s per clip |")
    print("|---|---|---|---|---|---|---|---|---|")
    offs, above_sil, above_other, agree = [], 0, 0, 0
    with torch.no_grad():
        for key, crops, audio, energy_off in clips:
            t = time.perf_counter()
            n = len(crops)
            visual = model.model.visualEncoder(torch.from_numpy(crops)[None])

            def score(feats: np.ndarray) -> float:
                a = model.model.audioEncoder(torch.from_numpy(feats)[None])
                return float(model.score_embeddings(visual, a).mean())  # noqa: B023

            full = audio_features(audio, n + 2 * LEAD)  # 4 MFCC rows per frame, frame 0 = LEAD frames before the clip
            curve = np.array([score(full[4 * (LEAD + s) : 4 * (LEAD + s + n)]) for s in range(-LEAD, LEAD + 1)])
            own = curve[LEAD]
            sil = score(audio_features(np.zeros(n * 640, np.float32), n))
            other = [score(audio_features(np.resize(o[LEAD * 640 :], n * 640), n)) for k, _, o, _ in clips if k != key]
            off = int(np.argmax(curve)) - LEAD
            z = (curve.max() - np.median(curve)) / (curve.std() + 1e-9)
            offs.append(off)
            above_sil += own > sil + 3
            above_other += own > np.median(other)
            agree += abs(off - energy_off) <= 1
            print(f"| {key} | {n} | {own:.2f} | {sil:.2f} | {np.median(other):.2f} / {max(other):.2f} | {off:+d} | {z:.2f} "
                  f"| {energy_off:+d} | {time.perf_counter() - t:.1f} |")  # fmt: skip
    m = len(clips)
    print(f"\nown > silence + 3: {above_sil}/{m}; own > median other: {above_other}/{m}; "
          f"|offset(k=0)| <= 1: {sum(abs(o) <= 1 for o in offs)}/{m}; within 1 of the energy scorer: {agree}/{m}")


if __name__ == "__main__":
    main()
