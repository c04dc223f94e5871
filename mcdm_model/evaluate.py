"""Long-term evaluation of MCDM on held-out shards: metrics per clip, drift per minute, FID/FVD when possible.

    python -m mcdm_model.evaluate --shards out/shards --checkpoint runs/mcdm/last.pt --minutes 2 --out runs/eval

For each held-out sample the model generates a long video clip by clip (carrying its memory) from the sample's
first frame and audio; audio and ground truth are looped to the requested length (`--minutes` or `--clips`).
Always computed: SSIM, PSNR, landmark distance, identity similarity to the reference, Sync-C/D style scores (and
the pipeline's own sync scorer when importable); FID / FVD only when Inception / I3D weights sit in
`<models_dir>/metrics/` (metrics.json says which ran). Writes metrics.json and drift.png (per-minute curves).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mcdm_model import metrics
from mcdm_model.config import SIZES, default_models_dir
from mcdm_model.data import decode_clip, list_shards
from mcdm_model.generate import iter_clips, load_model
from mcdm_model.metrics_drift import DRIFT_KEYS, drift_curve, drift_slope, plot_drift
from mcdm_model.metrics_face import FaceAnalyzer
from mcdm_model.metrics_fid import FrechetMetrics
from mcdm_model.metrics_sync import SyncScorer
from pipeline.common import media

log = logging.getLogger(__name__)


def iter_samples(shards: str, cfg: Any, limit: int) -> Any:
    """Decoded held-out clips in shard order; a sample that fails to decode is logged and skipped."""
    import webdataset as wds

    ds = wds.WebDataset(list_shards(shards), shardshuffle=False, empty_check=False)
    n = 0
    for raw in ds:
        if limit and n >= limit:
            return
        try:
            yield decode_clip(raw, cfg)
            n += 1
        except Exception as exc:  # one bad sample must not end the evaluation
            log.warning("skipping %s: %s", raw.get("__key__"), exc)


def _resize(frames: np.ndarray, size: int) -> np.ndarray:
    if frames.shape[1] == size:
        return frames
    interp = cv2.INTER_CUBIC if size > frames.shape[1] else cv2.INTER_AREA
    return np.stack([cv2.resize(f, (size, size), interpolation=interp) for f in frames])


def _summary(rows: list[dict], keys: tuple[str, ...]) -> dict[str, float | None]:
    return {k: metrics.nanmean([np.nan if r.get(k) is None else r[k] for r in rows]) for k in keys}


class SampleEvaluator:
    """Generates one long video for a held-out clip and measures it clip by clip and bin by bin."""

    def __init__(self, model: Any, args: argparse.Namespace, fm: FrechetMetrics) -> None:
        self.model, self.args, self.fm = model, args, fm
        # Detect on every frame: generated and ground-truth frames then get landmarks the same way (identical
        # frames give distance 0), at a cost small next to generation.
        self.face = FaceAnalyzer(detect_every=1, id_stride=args.id_stride)
        self.sync = SyncScorer(self.face, models_dir=args.models_dir)

    def __call__(self, clip: dict, total_frames: int) -> dict[str, Any]:
        a, cfg = self.args, self.model.cfg
        gt, audio, spf = clip["frames"], clip["audio"], cfg.samples_per_frame
        n_real = len(gt)
        idx = np.arange(total_frames) % n_real  # ground truth and audio are looped to the requested length
        audio_long = np.tile(audio[: n_real * spf], math.ceil(total_frames / n_real))[: total_frames * spf]
        gt_big = _resize(gt, a.metric_size)
        box = self.face.detect(gt_big[0])
        gt_lm = self.face.landmarks(gt_big, fallback_box=box)
        ref_emb = self.face.embedding(gt_big[0])
        f = cfg.present_frames  # bins hold whole clips: bin_s is rounded to a multiple of the clip length
        bin_frames = max(f, int(round(a.bin_s * cfg.fps / f)) * f)
        clips, bins, buf, kept = [], [], {"gen": [], "lm": [], "rows": []}, []
        t, t0 = 0, time.perf_counter()
        gen = iter_clips(self.model, gt[0], audio_long, clip["motion"][0], a.steps, a.seed, progress=a.progress)
        for frames in gen:
            ii = idx[t : t + len(frames)]
            big = _resize(frames, a.metric_size)
            lm = self.face.landmarks(big, fallback_box=box)
            ids = metrics.cosine(self.face.embeddings(big, lm), ref_emb) if ref_emb is not None else np.full(len(big), np.nan)
            row = {"ssim": metrics.ssim_frames(frames, gt[ii]), "psnr": metrics.psnr_frames(frames, gt[ii]),
                   "landmark_dist": metrics.landmark_distance(lm, gt_lm[ii]), "identity_sim": ids}
            clips.append({"t_start_s": t / cfg.fps, **{k: metrics.nanmean(v) for k, v in row.items()}})
            buf["gen"].append(frames), buf["lm"].append(lm), buf["rows"].append(row)
            if a.save_videos:
                kept.append(frames)
            t += len(frames)
            if t % bin_frames == 0 or t >= total_frames:  # iter_clips yields f frames (the last may be shorter)
                bins.append(self._close_bin(buf, idx[t - sum(map(len, buf["gen"])) : t], gt, audio_long, t, spf))
                buf = {"gen": [], "lm": [], "rows": []}
        if kept:  # held in memory only with --save-videos
            media.write_video(np.concatenate(kept), Path(a.out) / "videos" / f"{clip['key']}.mp4", cfg.fps, audio_long)
        out = {"key": clip["key"], "frames": total_frames, "real_frames": n_real, "bin_frames": bin_frames,
               "clips": clips, "bins": bins,
               "gen_seconds": time.perf_counter() - t0, "reference_face_found": ref_emb is not None}
        out |= _summary(bins, DRIFT_KEYS)
        return out

    def _close_bin(self, buf: dict, ii: np.ndarray, gt: np.ndarray, audio: np.ndarray, t: int, spf: int) -> dict:
        gen = np.concatenate(buf["gen"])
        lm = np.concatenate(buf["lm"])
        start = t - len(gen)
        s = self.sync.score(_resize(gen, self.args.metric_size), audio[start * spf : t * spf], landmarks=lm)
        self.fm.add(gen, gt[ii])
        rows = {k: np.concatenate([r[k] for r in buf["rows"]]) for k in buf["rows"][0]}
        return {"t_start_s": start / self.model.cfg.fps, **{k: metrics.nanmean(v) for k, v in rows.items()}, **s}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m mcdm_model.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--shards", required=True, help="held-out shards (a .tar or a dir searched for *.tar)")
    p.add_argument("--checkpoint", help="train.py checkpoint; without it a random --size model (warned)")
    p.add_argument("--size", default="MCDM-T", choices=list(SIZES))
    length = p.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, help="generated length per sample in minutes (default 1)")
    length.add_argument("--clips", type=int, help="generated length per sample in clips of present_frames")
    p.add_argument("--max-samples", type=int, default=8, help="held-out samples to evaluate (0 = all)")
    p.add_argument("--bin-s", type=float, default=60.0, help="drift curve bin length in seconds (default a minute)")
    p.add_argument("--steps", type=int, default=25, help="DDIM steps per clip")
    p.add_argument("--metric-size", type=int, default=256, help="frames are resized to this for face/sync metrics")
    p.add_argument("--id-stride", type=int, default=5, help="identity embedding on every n-th frame")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/eval", help="dir for metrics.json, drift.png (and videos/)")
    p.add_argument("--save-videos", action="store_true", help="also write videos/<key>.mp4 (keeps frames in RAM)")
    p.add_argument("--models-dir", default=default_models_dir(), help="weights dir (metrics/ for FID, FVD)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    a = parse_args(argv)
    model = load_model(a.checkpoint, a.size, a.device, a.models_dir)
    cfg = model.cfg
    total = a.clips * cfg.present_frames if a.clips else int(round((a.minutes or 1.0) * 60 * cfg.fps))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    fm = FrechetMetrics(a.models_dir)
    ev = SampleEvaluator(model, a, fm)
    samples = []
    for clip in iter_samples(a.shards, cfg, a.max_samples):
        log.info("sample %s: %d real frames -> %d generated", clip["key"], len(clip["frames"]), total)
        samples.append(ev(clip, total))
    if not samples:
        raise SystemExit(f"no decodable held-out samples under {a.shards}")
    curve = drift_curve(samples, a.bin_s)
    result = {
        "checkpoint": a.checkpoint or f"random init {a.size} (no checkpoint)",
        "frames_per_sample": total, "seconds_per_sample": total / cfg.fps, "steps": a.steps,
        "n_samples": len(samples), **fm.result(),
        "sync_scorer": ev.sync.name,
        "summary": _summary(samples, DRIFT_KEYS),
        "drift": curve | {"slope_per_minute": {k: drift_slope(curve, k) for k in DRIFT_KEYS}},
        "samples": samples,
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=1, allow_nan=False, default=float))
    plot_drift(samples, curve, out / "drift.png")
    log.info("FID: %s | FVD: %s", result["fid_status"], result["fvd_status"])
    log.info("summary: %s", json.dumps(result["summary"]))
    log.info("wrote %s and %s", out / "metrics.json", out / "drift.png")
    return result


if __name__ == "__main__":
    media.require_ffmpeg()
    main()
