"""Curation accuracy on labelled media built from ../shared/media (truth known by construction): one table.

    OMP_NUM_THREADS=1 python benchmarks/bench_curation.py [--backend mtcnn,yunet] [--cache /tmp/curation-bench]

Items and truth: benchmarks/kit/curation_media.py (built with ffmpeg into the cache, never into the repo). The
sources are split in two halves by identity; any threshold fitted by `fit()` uses one half and is scored on the
other (fold "fit A / test B", then swapped). Settings are the sample build's (manifests/sample/config.yaml) with
the shipped defaults; `--fit` also refits the sync-confidence and sharpness thresholds per fold. The first run
builds the media and runs the face stage on ~50 clips (about 25 min on one loaded core); reruns read the cache.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.kit.curation_build import DEFAULT_CACHE, Builder  # noqa: E402
from benchmarks.kit.curation_eval import CLASSES, score  # noqa: E402
from benchmarks.kit.curation_run import run_all  # noqa: E402
from pipeline.config import SAMPLE_MANIFESTS, load_config  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "media"
TARGETS = {"shot_f1": 0.95, "sync_shift": 0.90, "auc": 0.95, "multi_as_multi": 1.0, "keep_p": 0.95, "keep_r": 0.8}


def models_dir_for(backend: str, cache: Path, shared: Path) -> str:
    """A models dir holding what `backend` needs: YuNet's upstream ONNX from the shared weights, linked."""
    d = cache / f"models-{backend}"
    if backend == "yunet":
        (d / "yunet").mkdir(parents=True, exist_ok=True)
        link = d / "yunet" / "face_detection_yunet_2026may.onnx"
        if not link.exists():
            link.symlink_to(shared / "weights" / "face_detection_yunet_2026may.onnx")
    d.mkdir(parents=True, exist_ok=True)
    return str(d)


def fmt(m: dict, key: str) -> str:
    v = m[key]
    mark = "" if key not in TARGETS else (" ok" if v >= TARGETS[key] - 1e-9 else " MISS")
    return f"{v:.3f}{mark}"


def table(per: dict[str, dict]) -> str:
    cols = list(per)
    lines = ["| metric | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]

    def row(name: str, fn) -> None:
        lines.append(f"| {name} | " + " | ".join(fn(per[c]) for c in cols) + " |")

    row("shot P / R / F1 (+-0.5 s; true cuts)", lambda m: f"{m['shot_p']:.2f} / {m['shot_r']:.2f} / {fmt(m, 'shot_f1')} ({m['shot_n']})")
    row("sync offset +-1 frame, shifted k=+-3,5,8 (n)", lambda m: f"{fmt(m, 'sync_shift')} ({m['sync_shift_n']})")
    row("sync offset +-1 frame, in-sync k=0 (n)", lambda m: f"{m['sync_k0']:.3f} ({m['sync_k0_n']})")
    row("AUC sync_conf, in-sync vs dubbed (n+/n-)", lambda m: f"{fmt(m, 'auc')} ({m['auc_n'][0]}/{m['auc_n'][1]})")
    for t in CLASSES:
        row(f"faces truth {t}: " + "/".join(CLASSES) + "/other", lambda m, t=t: "/".join(str(m["faces"][t][p]) for p in (*CLASSES, "other")))
    row("multi-face rows dropped multi_face", lambda m: fmt(m, "multi_as_multi"))
    row("language top-1 accuracy (n)", lambda m: f"{m['lang_acc']:.3f} ({m['lang_n']})")
    row("other-language rows dropped lang_mismatch (n)", lambda m: f"{m['mismatch_drop']:.3f} ({m['mismatch_n']})")
    row("good rows dropped by language", lambda m: str(m["good_lang_drops"]))
    row("in-sync studio rows dropped blurry (n)", lambda m: f"{m['studio_blurry']} ({m['studio_n']})")
    row("blur sigma 3 / crf 45 rows dropped, as blurry (n)", lambda m: f"{m['degraded_drop']:.2f}, {m['degraded_blurry']:.2f} ({m['degraded_n']})")
    row("keep precision (kept)", lambda m: f"{fmt(m, 'keep_p')} ({m['kept']})")
    row("keep recall (good segments)", lambda m: f"{fmt(m, 'keep_r')} ({m['good']})")
    row("kept rows mixing two faces", lambda m: str(m["mixed_kept"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", default="mtcnn", help="comma list of faces.backend values (mtcnn, yunet, dlib, ...)")
    p.add_argument("--halves", default="A,B")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--shared", type=Path, default=SHARED)
    p.add_argument("--scorer", default="auto", help="sync.scorer")
    p.add_argument("--misses", action="store_true", help="list every miss under the table")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    halves = tuple(h.strip() for h in args.halves.split(","))
    items = Builder(args.shared, args.cache).items(halves)
    per: dict[str, dict] = {}
    for backend in args.backend.split(","):
        cfg = load_config(Path(SAMPLE_MANIFESTS) / "config.yaml", out=str(args.cache / f"run-{backend}"),
                          models_dir=models_dir_for(backend, args.cache, args.shared), faces={"backend": backend},
                          sync={"scorer": args.scorer})  # fmt: skip
        results = run_all(items, cfg, args.cache / "stages")
        for half in halves:
            per[f"{backend} / test {half}"] = score([r for r in results if r["item"].half == half])
    print(table(per))
    if args.misses:
        for name, m in per.items():
            print(f"\n{name}:")
            for line in m["misses"]:
                print("  ", line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
