"""MCDM training throughput: loader clips/s (decode + windows) vs train-step clips/s per stage, as a table.

    OMP_NUM_THREADS=1 python benchmarks/bench_train.py [--shards <out>/shards] [--size MCDM-T] [--batch-size 2]

A "clip" is one training window (reference + archived frames + present clip + audio). Without --shards, a small
shard is built from the real HDTF clips in ../shared/media (same format as the pipeline's sink). The loader is
timed alone (num_workers 0 and 2); train steps are timed on a batch already in memory, so the two numbers say
whether data loading or compute bounds a run. Timed on whatever device --device picks (CPU here).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from mcdm_model.config import SIZES, TrainConfig, model_config  # noqa: E402
from mcdm_model.data import make_loader, to_model  # noqa: E402
from mcdm_model.model import MCDM, STAGES  # noqa: E402


def shared_media() -> Path:
    return Path(os.environ.get("TFW_SHARED_MEDIA", ROOT.parent / "shared" / "media"))


def build_shards(tmp: Path, size: int) -> Path:
    from benchmarks.kit.fixture_shards import write_shards

    v = shared_media() / "video_av"
    write_shards(tmp, [(v / "hdtf_WDA_AOC_en_8s.mp4", 0.0, 8.0), (v / "hdtf_WDA_KatieHill_en_8s.mp4", 0.0, 8.0)],
                 crop_size=size)
    return tmp / "shards"


def time_loader(shards: Path, cfg, tcfg: TrainConfig, batches: int) -> float:
    it = iter(make_loader(shards, cfg, tcfg))
    next(it)  # worker start-up and the first decode are not throughput
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * tcfg.batch_size / (time.perf_counter() - t0)


def time_steps(model: MCDM, batch: dict, stage: str, steps: int) -> float:
    params = model.stage_parameters(stage)
    opt = torch.optim.AdamW(params, lr=1e-4)
    for i in range(steps + 1):
        if i == 1:
            t0 = time.perf_counter()
        loss = model.loss(batch, stage)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * batch["present"].shape[0] / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shards", help="shard dir (default: build one from ../shared/media)")
    p.add_argument("--size", default="MCDM-T", choices=list(SIZES))
    p.add_argument("--crop", type=int, default=512, help="crop size of the built shards (the sink's default 512)")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    cfg = model_config(args.size, models_dir=os.environ.get("TFW_MODELS_DIR", "/nonexistent"))
    with tempfile.TemporaryDirectory() as tmp:
        shards = Path(args.shards) if args.shards else build_shards(Path(tmp), args.crop)
        rows = []
        for workers in (0, 2):
            tcfg = TrainConfig(batch_size=args.batch_size, num_workers=workers)
            rows.append((f"loader, {workers} workers", time_loader(shards, cfg, tcfg, args.batches)))
        torch.manual_seed(0)
        model = MCDM(cfg).to(args.device)
        batch = to_model(next(iter(make_loader(shards, cfg, TrainConfig(batch_size=args.batch_size)))), args.device)
        for stage in STAGES:
            rows.append((f"train step, stage {stage}", time_steps(model, batch, stage, args.steps)))
    n = sum(x.numel() for x in model.parameters())
    src = args.shards or f"2 real HDTF clips, {args.crop}² crops"
    print(f"\nshards: {src}; MCDM {args.size} ({n / 1e6:.2f} M params), {cfg.image_size}² px, F={cfg.present_frames} "
          f"A={cfg.archived_frames}, batch {args.batch_size}, device {args.device}, torch threads "
          f"{torch.get_num_threads()}\n")
    print("| what | clips/s |\n|---|---|")
    for name, rate in rows:
        print(f"| {name} | {rate:.2f} |")


if __name__ == "__main__":
    main()
