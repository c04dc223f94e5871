"""Long-term evaluation of MCDM on held-out shards: metrics per clip, drift per minute, FID/FVD when possible.

    python -m mcdm_model.evaluate --shards out/shards --checkpoint runs/mcdm/last.pt --minutes 2 --out runs/eval
    python -m mcdm_model.evaluate --shards out/shards --split test --takes --checkpoint runs/mcdm/last.pt

For each held-out sample the model generates a video clip by clip (carrying its memory) from the sample's first
frame and its own audio, as long as the sample's real footage (a long take when the dataset joins them), or
`--minutes` / `--clips` if shorter. The ground truth is never looped: metrics that compare with it (SSIM, PSNR,
landmark distance, FID / FVD) are scored only where it exists; with `--loop-audio` generation continues past it on
repeated audio and only the metrics that need no ground truth (identity to the reference, face rate, LSE-C/D) are
scored there. No face in a frame gives NaN landmarks / identity and lowers `face_rate`. FID / FVD run only when
their weights sit in `<models_dir>/metrics/`, E-FID is not_run (metrics.json says which ran). Writes metrics.json
and drift.png (per-minute curves).
With --takes a sample is a whole take (its consecutive windows joined, followed by prev_key in shard order) and is
generated for its real length, so the drift curve covers minutes of one real speaker without looping; the take is
held in memory decoded at the model's image size (a 5-minute take at 64² is ~90 MB, at 512² ~6 GB).
"""

from __future__ import annotations

import argparse
import functools
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
from mcdm_model.data import decode_clip, join_predecessor, list_shards
from mcdm_model.diffusion import SAMPLERS
from mcdm_model.generate import iter_clips, load_model
from mcdm_model.metrics_drift import DRIFT_KEYS, drift_curve, drift_slope, plot_drift
from mcdm_model.metrics_face import FaceAnalyzer, face_rate
from mcdm_model.metrics_fid import FrechetMetrics
from mcdm_model.metrics_sync import SyncScorer
from mcdm_model.video_io import VideoSink

log = logging.getLogger(__name__)


def iter_samples(shards: str | list[str], cfg: Any, limit: int, split: str | None = None) -> Any:
    """Decoded held-out clips in shard order; a sample that fails to decode is logged and skipped."""
    import webdataset as wds

    ds = wds.WebDataset(list_shards(shards, split), shardshuffle=False, empty_check=False)
    n = 0
    for raw in ds:
        if limit and n >= limit:
            return
        try:
            yield decode_clip(raw, cfg)
            n += 1
        except Exception as exc:  # one bad sample must not end the evaluation
            log.warning("skipping %s: %s", raw.get("__key__"), exc)


def _join(parts: list[dict]) -> dict:
    """One take from its windows in order (data.join_predecessor, window after window), named by its take_id."""
    meta = dict(parts[0]["meta"]) | {"windows": [p["key"] for p in parts]}
    take = functools.reduce(join_predecessor, parts)
    return take | {"key": parts[0]["meta"].get("take_id") or parts[0]["key"], "meta": meta, "offset": 0}


def iter_takes(shards: str | list[str], cfg: Any, limit: int, split: str | None = None) -> Any:
    """Whole takes: runs of clips each naming the one before as prev_key, joined into one long clip."""
    run: list[dict] = []
    n = 0
    for clip in iter_samples(list_shards(shards, split), cfg, 0):
        if run and clip["meta"].get("prev_key") and clip["meta"]["prev_key"] == run[-1]["key"]:
            run.append(clip)
            continue
        if run:
            yield _join(run)
            n += 1
            if limit and n >= limit:
                return
        run = [clip]
    if run:
        yield _join(run)


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
        self.face = FaceAnalyzer(id_stride=args.id_stride, models_dir=args.models_dir)
        self.sync = SyncScorer(self.face, models_dir=args.models_dir)

    def __call__(self, clip: dict, total_frames: int) -> dict[str, Any]:
        a, cfg = self.args, self.model.cfg
        gt, spf = clip["frames"], cfg.samples_per_frame
        n_real = len(gt)
        reps = math.ceil(total_frames / n_real) if a.loop_audio else 1
        total_frames = total_frames if a.loop_audio else min(total_frames, n_real)
        audio_long = np.tile(clip["audio"][: n_real * spf], reps)[: total_frames * spf]
        gt_big = _resize(gt, a.metric_size)
        gt_lm = self.face.landmarks(gt_big)
        ref_emb = self.face.embedding(gt_big[0])
        f = cfg.present_frames  # bins hold whole clips: bin_s is rounded to a multiple of the clip length
        bin_frames = max(f, int(round(a.bin_s * cfg.fps / f)) * f)
        clips, bins, buf = [], [], {"gen": [], "lm": [], "rows": []}
        t, t0 = 0, time.perf_counter()
        sink = VideoSink(Path(a.out) / "videos" / f"{clip['key']}.mp4", cfg.image_size, cfg.fps) if a.save_videos else None
        gen = iter_clips(self.model, gt[0], audio_long, clip["motion"][0], a.steps, a.seed, progress=a.progress,
                         guidance=a.guidance, sampler=a.sampler)
        for frames in gen:
            n = len(frames)
            big = _resize(frames, a.metric_size)
            lm = self.face.landmarks(big)
            ids = metrics.cosine(self.face.embeddings(big, lm), ref_emb) if ref_emb is not None else np.full(n, np.nan)
            real = np.arange(t, t + n) < n_real  # ground truth exists here
            ii = np.minimum(np.arange(t, t + n), n_real - 1)
            nan = np.full(n, np.nan)
            row = {"ssim": np.where(real, metrics.ssim_frames(frames, gt[ii]), nan),
                   "psnr": np.where(real, metrics.psnr_frames(frames, gt[ii]), nan),
                   "landmark_dist": np.where(real, metrics.landmark_distance(lm, gt_lm[ii]), nan),
                   "identity_sim": ids, "face_rate": np.isfinite(lm.reshape(n, -1)).all(1).astype(float)}
            clips.append({"t_start_s": t / cfg.fps, **{k: metrics.nanmean(v) for k, v in row.items()}})
            buf["gen"].append(frames), buf["lm"].append(lm), buf["rows"].append(row)
            if sink is not None:
                sink.write(frames)
            t += n
            if t % bin_frames == 0 or t >= total_frames:  # iter_clips yields f frames (the last may be shorter)
                bins.append(self._close_bin(buf, gt, audio_long, t, spf, n_real))
                buf = {"gen": [], "lm": [], "rows": []}
        if sink is not None:
            sink.close()
        out = {"key": clip["key"], "frames": total_frames, "real_frames": n_real, "bin_frames": bin_frames,
               "clips": clips, "bins": bins, "gt_face_rate": face_rate(gt_lm),
               "gen_seconds": time.perf_counter() - t0, "reference_face_found": ref_emb is not None}
        out |= _summary(bins, DRIFT_KEYS)
        return out

    def _close_bin(self, buf: dict, gt: np.ndarray, audio: np.ndarray, t: int, spf: int, n_real: int) -> dict:
        gen = np.concatenate(buf["gen"])
        lm = np.concatenate(buf["lm"])
        start = t - len(gen)
        s = self.sync.score(_resize(gen, self.args.metric_size), audio[start * spf : t * spf], landmarks=lm)
        if start < n_real:  # Fréchet features only against real ground truth
            k = min(t, n_real) - start
            self.fm.add(gen[:k], gt[start : start + k])
        rows = {k: np.concatenate([r[k] for r in buf["rows"]]) for k in buf["rows"][0]}
        return {"t_start_s": start / self.model.cfg.fps, **{k: metrics.nanmean(v) for k, v in rows.items()}, **s}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m mcdm_model.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--shards", required=True, help="held-out shards (a .tar or a dir searched for *.tar)")
    p.add_argument("--split", default="test", choices=["train", "val", "test", "all"],
                   help="split of a build's shards/<split>/ (default test; dirs without split folders are read whole)")
    p.add_argument("--takes", action="store_true", help="evaluate whole takes (consecutive windows joined), each "
                   "for its real length; --minutes / --clips are then ignored")
    p.add_argument("--checkpoint", help="train.py checkpoint; without it a random --size model (warned)")
    p.add_argument("--size", default="MCDM-T", choices=list(SIZES))
    length = p.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, help="generated length per sample in minutes (default 1)")
    length.add_argument("--clips", type=int, help="generated length per sample in clips of present_frames")
    p.add_argument("--max-samples", type=int, default=8, help="held-out samples to evaluate (0 = all)")
    p.add_argument("--bin-s", type=float, default=60.0, help="drift curve bin length in seconds (default a minute)")
    p.add_argument("--steps", type=int, default=25, help="sampler steps per clip")
    p.add_argument("--sampler", default="ddim", choices=list(SAMPLERS), help="ddim | dpm++ (DPM-Solver++)")
    p.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale (1 = off)")
    p.add_argument("--loop-audio", action="store_true", help="generate past the real footage on repeated audio "
                   "(scored there only by identity, face rate and LSE-C/D; never against looped ground truth)")
    p.add_argument("--metric-size", type=int, default=256, help="frames are resized to this for face/sync metrics")
    p.add_argument("--id-stride", type=int, default=5, help="identity embedding on every n-th frame")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/eval", help="dir for metrics.json, drift.png (and videos/)")
    p.add_argument("--save-videos", action="store_true", help="also write videos/<key>.mp4 (streamed to ffmpeg)")
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
    source = iter_takes if a.takes else iter_samples
    for clip in source(list_shards(a.shards, a.split), cfg, a.max_samples):
        n = len(clip["frames"]) if a.takes else total
        log.info("sample %s: %d real frames -> %d generated", clip["key"], len(clip["frames"]), n)
        samples.append(ev(clip, n) | ({"windows": clip["meta"]["windows"]} if a.takes else {}))
    if not samples:
        raise SystemExit(f"no decodable held-out samples under {a.shards}")
    curve = drift_curve(samples, a.bin_s)
    result = {
        "checkpoint": a.checkpoint or f"random init {a.size} (no checkpoint)",
        "frames_requested": None if a.takes else total, "frames_per_sample": [s["frames"] for s in samples],
        "steps": a.steps, "sampler": a.sampler, "guidance": a.guidance, "face_model": ev.face.identity_model,
        "split": a.split, "takes": a.takes,
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
    main()
