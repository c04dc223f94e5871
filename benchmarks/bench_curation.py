"""Curation accuracy on labelled media built from ../shared/media (truth known by construction): one table.

    OMP_NUM_THREADS=1 python benchmarks/bench_curation.py [--backend mtcnn,yunet] [--cache /tmp/curation-bench]
    OMP_NUM_THREADS=1 python benchmarks/bench_curation.py --only shots --misses   # shot figures alone, minutes
    OMP_NUM_THREADS=1 python benchmarks/bench_curation.py --only sync --misses    # sync figures alone (faces on bases)

Items and truth: benchmarks/kit/curation_media.py (built with ffmpeg into the cache, never into the repo). The
sources are split in two halves by identity; any threshold fitted by `fit()` uses one half and is scored on the
other (fold "fit A / test B", then swapped). Settings are the sample build's (manifests/sample/config.yaml) with
the shipped defaults; every run fits, per fold on the fit half, the sync priors (the log-mel one for the offset,
the Whisper-frame one for the confidence unless `--conf-prior none`), the confidence scale (where `--conf-rule`
says) and the sharpness / blockiness thresholds, and `--fit-prior` refits the shipped prior it scores with. The first run
builds the media and runs the face stage on ~50 clips (about 25 min on one loaded core); reruns read the cache.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.kit.curation_build import DEFAULT_CACHE, Builder  # noqa: E402
from benchmarks.kit.curation_eval import CLASSES, score, shot_score  # noqa: E402
from benchmarks.kit.curation_run import Runner, run_all  # noqa: E402
from benchmarks.kit.sync_fit import CONF_RULES, clip_inputs, fit  # noqa: E402
from benchmarks.kit.yunet import link_yunet  # noqa: E402
from pipeline.config import SAMPLE_MANIFESTS, load_config, replace  # noqa: E402
from pipeline.models.sync_prior import PRIOR_PATH, WHISPER_PRIOR_PATH, decision_point  # noqa: E402
from pipeline.models.sync_whisper import WhisperFrames  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "media"
TARGETS = {"shot_f1": 0.95, "sync_shift": 0.90, "auc": 0.95, "multi_as_multi": 1.0, "keep_p": 0.95, "keep_r": 0.8}


def models_dir_for(backend: str, cache: Path, shared: Path) -> str:
    """A models dir holding what `backend` needs: YuNet's upstream ONNX from the shared weights, linked."""
    d = cache / f"models-{backend}"
    d.mkdir(parents=True, exist_ok=True)
    if backend == "yunet":
        link_yunet(d, shared / "weights")
    return str(d)


def fit_half_prior(items, video: dict[str, dict], halves: tuple[str, ...], rule: str = "balanced", featurizer=None):
    """The fused scorer's prior fitted on the in-sync base clips of `halves` (their faces-stage rows)."""
    clips = []
    for it in items:
        if it.kind == "base" and it.half in halves:
            rows = [r for r in video[it.key]["faces"] if r["status"] == "ok"]
            clips += [clip_inputs(r, it.segments[0].identity) for r in rows]
    return fit(clips, rule=rule, featurizer=featurizer)


def quality_values(results: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """(face_detail_px, face_blockiness) of the probed rows, by what they should be: good bases vs degraded."""
    out: dict[str, list[tuple[float, float]]] = {"good": [], "blur": [], "crf45": []}
    for res in results:
        item = res["item"]
        kind = "good" if item.kind == "base" and item.segments[0].reason != "blurry" else item.kind
        if kind in out:
            out[kind] += [(p["quality"].get("face_detail_px", np.nan), p["quality"].get("face_blockiness", np.nan))
                          for p in res["probe"].values()]  # fmt: skip
    return out


def fit_quality(results: list[dict]) -> tuple[float, float]:
    """Blur thresholds fitted on one half: the decision points good vs blurred (detail) and good vs CRF 45 (blocks)."""
    v = quality_values(results)
    detail = decision_point([g[0] for g in v["good"]], [b[0] for b in v["blur"]])
    block = -decision_point([-g[1] for g in v["good"]], [-b[1] for b in v["crf45"]])
    return detail, block


def quality_on(results: list[dict], detail: float, block: float) -> str:
    v = quality_values(results)
    bad = lambda x: x[0] < detail or x[1] > block  # noqa: E731
    return (f"{sum(map(bad, v['good']))}/{len(v['good'])} good dropped, {sum(map(bad, v['blur']))}/{len(v['blur'])} "
            f"blur + {sum(map(bad, v['crf45']))}/{len(v['crf45'])} crf45 dropped")  # fmt: skip


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
    row("blur gates fitted on the fit half, on the test half", lambda m: m.get("quality_fit", "-"))
    row("fused scorer fitted on the fit half: lag_bias / conf_scale", lambda m: f"{m.get('lag_bias', '-')} / {m.get('conf_scale', float('nan')):.3f}")
    return "\n".join(lines)


def shots_only(items, runner: Runner, halves: tuple[str, ...], misses: bool) -> str:
    """The shot rows alone (Download -> Normalize -> ShotSplit on every video item): minutes, no face models."""
    lines = ["| half | shot P / R / F1 (+-0.5 s; true cuts) | false cuts |", "|---|---|---|"]
    notes: list[str] = []
    for half in halves:
        res = [{"item": it, "shots": runner.shot_rows(it)} for it in items if it.half == half and not it.video_of]
        m = shot_score(res)
        lines.append(f"| {half} | {m['shot_p']:.2f} / {m['shot_r']:.2f} / {fmt(m, 'shot_f1')} ({m['shot_n']}) "
                     f"| {m['shot_fp']} |")  # fmt: skip
        notes += [f"\n{half}:", *(f"   {x}" for x in m["misses"])] if misses else []
    return "\n".join(lines + notes)


def fold_prior(items, video: dict[str, dict], fit_halves: tuple[str, ...], cache: Path, backend: str,
               rule: str = "balanced", featurizer=None):
    """The fold's prior fitted on `fit_halves` and saved in the cache: (prior, its path, its content tag)."""
    feats = "" if featurizer is None else f"-{featurizer.name}"
    path = cache / f"prior-{backend}-fit{''.join(fit_halves)}{'' if rule == 'balanced' else '-' + rule}{feats}.npz"
    prior = fit_half_prior(items, video, fit_halves, rule, featurizer)
    prior.save(path)
    return prior, path, hashlib.sha1(path.read_bytes()).hexdigest()[:10]


def fold_sync(cfg, items, video, fit_halves, cache: Path, backend: str, rule: str, featurizer=None):
    """(the fold's config with its fitted prior(s), their tag, the prior that sets conf_scale): the log-mel prior
    for the offset and, with a featurizer, a second prior on its features for the confidence (sync.conf_prior)."""
    prior, path, tag = fold_prior(items, video, fit_halves, cache, backend, rule)
    sync = replace(cfg.sync, prior=str(path), conf_prior="none")
    if featurizer is not None:  # shown: the offset prior's lag_bias, the confidence prior's conf_scale
        cprior, cpath, ctag = fold_prior(items, video, fit_halves, cache, backend, rule, featurizer)
        sync, tag, prior = replace(sync, conf_prior=str(cpath)), f"{tag}+{ctag}", replace(cprior, lag_bias=prior.lag_bias)
    return replace(cfg, sync=sync), tag, prior


def sync_only(items, cfg, cache: Path, halves: tuple[str, ...], backend: str, misses: bool, rule: str = "balanced",
              featurizer=None) -> str:
    """The sync figures alone: faces on the base items, the sync probe on base / shifted / dubbed items per fold."""
    runner = Runner(cfg, cache / "stages")
    video = {it.key: runner.video_rows(it) for it in items if it.kind == "base"}
    lines = ["| fold | sync +-1 frame, shifted (n) | in-sync bases k=0 (n) | AUC in-sync bases vs dubbed (n+/n-) | lag_bias / "
             "conf_scale |", "|---|---|---|---|---|"]  # fmt: skip
    notes: list[str] = []
    for test in halves:
        fit_halves = tuple(h for h in halves if h != test) or (test,)
        fold_cfg, tag, prior = fold_sync(cfg, items, video, fit_halves, cache, backend, rule, featurizer)
        fold = Runner(fold_cfg, cache / "stages", sync_tag=tag)
        res = []
        for it in items:
            if it.half != test or it.kind not in ("base", "shift", "dub"):
                continue
            v = fold.variant_rows(it, video[it.video_of]) if it.video_of else video[it.key]
            res.append({"item": it, "shots": v["shots"], "faces": v["faces"], "lang": [], "rows": [],
                        "probe": fold.probes(it, v["faces"], v["tag"])})  # fmt: skip
        m = score(res)
        name = f"fit {'+'.join(fit_halves)} / test {test}"
        lines.append(f"| {name} | {fmt(m, 'sync_shift')} ({m['sync_shift_n']}) | {m['sync_k0']:.3f} ({m['sync_k0_n']}) "
                     f"| {fmt(m, 'auc')} ({m['auc_n'][0]}/{m['auc_n'][1]}) | {prior.lag_bias} / {prior.conf_scale:.3f} |")
        notes += [f"\n{name}:", *(f"   {x}" for x in m["misses"] if ": read " in x)] if misses else []
    return "\n".join(lines + notes)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", default="mtcnn", help="comma list of faces.backend values (mtcnn, yunet, dlib, ...)")
    p.add_argument("--halves", default="A,B")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--shared", type=Path, default=SHARED)
    p.add_argument("--scorer", default="auto", help="sync.scorer")
    p.add_argument("--misses", action="store_true", help="list every miss under the table")
    p.add_argument("--conf-rule", choices=CONF_RULES, default="dub95",
                   help="where each fold's fitted conf_scale puts sync.min_conf: best balanced accuracy between "
                        "the fit half's own audio and dubs, or the 90th / 95th percentile of its dubs")
    p.add_argument("--fit-prior", action="store_true", help="refit pipeline/models/sync_prior_whisper.npz on every "
                   "half's bases (sync_prior.npz, the log-mel one, with --conf-prior none; it was fitted --conf-rule balanced)")
    p.add_argument("--conf-prior", choices=("none", "whisper"), default="whisper",
                   help="whisper (the default scorer): each fold also fits a prior on Whisper-encoder frames and takes "
                        "the sync confidence from it (sync.conf_prior; pipeline/models/sync_whisper.py); none: the "
                        "log-mel prior gives the confidence too")
    p.add_argument("--only", choices=("all", "shots", "sync"), default="all",
                   help="shots: only the shot figures (stages up to ShotSplit, per half; nothing is fitted for them); "
                   "sync: only the sync figures (faces on the base items; base, shifted and dubbed items per fold)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    halves = tuple(h.strip() for h in args.halves.split(","))
    items = Builder(args.shared, args.cache).items(halves)
    per: dict[str, dict] = {}
    for backend in args.backend.split(","):
        cfg = load_config(Path(SAMPLE_MANIFESTS) / "config.yaml", out=str(args.cache / f"run-{backend}"),
                          models_dir=models_dir_for(backend, args.cache, args.shared), faces={"backend": backend},
                          sync={"scorer": args.scorer, "conf_prior": "none"})  # fmt: skip (folds set their own)
        runner = Runner(cfg, args.cache / "stages")
        if args.only == "shots":  # the shot rows do not depend on the faces backend
            print(shots_only(items, runner, halves, args.misses))
            return 0
        featurizer = WhisperFrames(cfg.models_dir) if args.conf_prior == "whisper" else None
        if args.only == "sync":
            print(sync_only(items, cfg, args.cache, halves, backend, args.misses, args.conf_rule, featurizer))
            return 0
        video = {it.key: runner.video_rows(it) for it in items if not it.video_of}
        if args.fit_prior:
            path = PRIOR_PATH if featurizer is None else WHISPER_PRIOR_PATH
            prior = fit_half_prior(items, video, halves, args.conf_rule, featurizer)
            prior.save(path)
            print(f"wrote {path}: {prior.n_clips} clips, lag_bias {prior.lag_bias}, conf_scale {prior.conf_scale:.3f}")
        results: dict[str, list[dict]] = {}
        folds: dict[str, tuple] = {}
        for test in halves:
            fit_halves = tuple(h for h in halves if h != test) or (test,)
            fold, tag, prior = fold_sync(cfg, items, video, fit_halves, args.cache, backend, args.conf_rule, featurizer)
            results[test] = run_all([i for i in items if i.half == test], fold, args.cache / "stages", sync_tag=tag)
            folds[test] = (fit_halves, prior)
        for test, (fit_halves, prior) in folds.items():  # blur gates: fitted on the other half's probes
            fitted = [r for h in fit_halves for r in results.get(h, [])]
            detail, block = fit_quality(fitted) if fitted else (float("nan"), float("nan"))
            name = f"{backend} fit {'+'.join(fit_halves)} / test {test}"
            per[name] = score(results[test]) | {"lag_bias": prior.lag_bias, "conf_scale": prior.conf_scale,
                                                "quality_fit": f"detail >= {detail:.0f} px, blockiness <= {block:.2f}: "
                                                + quality_on(results[test], detail, block)}  # fmt: skip
    print(table(per))
    if args.misses:
        for name, m in per.items():
            print(f"\n{name}:")
            for line in m["misses"]:
                print("  ", line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
