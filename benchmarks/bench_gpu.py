"""MCDM on one GPU: training steps/s, peak memory and MFU in bf16 for MCDM-S / MCDM-B, and a 1-GPU torchrun run.

    python benchmarks/bench_gpu.py                         # MCDM-S and MCDM-B, stages 1 and 3, bf16, batch 1
    python benchmarks/bench_gpu.py --size MCDM-B --batch-size 2 --grad-checkpoint
    python benchmarks/bench_gpu.py --torchrun              # also: torchrun --nproc_per_node 1 (nccl) on real shards

Each step is a real `MCDM.loss` + backward + AdamW step under bf16 autocast on a synthetic batch of the size's
shape (pixels in [-1, 1], random audio and motion): data loading is measured by bench_train.py. FLOPs per step
are counted once with torch.utils.flop_counter (forward + backward); MFU = FLOPs/s / --peak-tflops (H100/H200
dense bf16: 989). The torchrun check builds 2 shards from ../shared/media and trains MCDM-T 4 steps per stage with
--bf16 through the nccl process group. Needs CUDA; on a CPU machine it says so and exits 0. Prints a table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def synthetic_batch(cfg, tcfg, b: int, device):
    import torch

    s, a, f = cfg.image_size, cfg.archived_frames, cfg.present_frames * tcfg.chain_clips
    img = lambda *shape: torch.rand(*shape, device=device) * 2 - 1  # noqa: E731
    return {"ref": img(b, 3, s, s), "archived": img(b, a, 3, s, s), "present": img(b, f, 3, s, s),
            "audio": torch.randn(b, f * cfg.samples_per_frame, device=device) * 0.1,
            "motion_ref": torch.randn(b, 105, device=device), "motion_archived": torch.randn(b, a, 105, device=device),
            "motion": torch.randn(b, f, 105, device=device)}


def bench(size: str, stage: str, a: argparse.Namespace) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from mcdm_model.config import TrainConfig, model_config
    from mcdm_model.model import MCDM

    dev = torch.device("cuda")
    torch.manual_seed(0)
    model = MCDM(model_config(size, models_dir=a.models_dir)).to(dev).train()
    if a.grad_checkpoint:
        model.denoiser.unet.enable_gradient_checkpointing()
    params = model.stage_parameters(stage)
    keep = {id(p) for p in params}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
    opt = torch.optim.AdamW(params, lr=1e-5)
    batch = synthetic_batch(model.cfg, TrainConfig(), a.batch_size, dev)
    gen = torch.Generator(device=dev).manual_seed(0)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model.loss(batch, stage, gen)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    with FlopCounterMode(display=False) as fc:
        step()
    flops = fc.get_total_flops()
    for _ in range(a.warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / a.steps
    return {"size": size, "stage": stage, "steps_s": 1 / dt, "clips_s": a.batch_size / dt,
            "peak_gb": torch.cuda.max_memory_allocated() / 2**30, "tflop_step": flops / 1e12,
            "mfu": flops / dt / (a.peak_tflops * 1e12), "params_m": sum(p.numel() for p in model.parameters()) / 1e6}


def torchrun_check() -> str:
    from benchmarks.kit.fixture_shards import write_shards

    media = Path(os.environ.get("TFW_SHARED_MEDIA", ROOT.parent / "shared" / "media"))
    with tempfile.TemporaryDirectory() as tmp:
        v = media / "video_av"
        write_shards(Path(tmp), [(v / "hdtf_WDA_AOC_en_8s.mp4", 1.0, 4.0), (v / "hdtf_WDA_KatieHill_en_8s.mp4", 1.0, 4.0)])
        cmd = ["torchrun", "--standalone", "--nproc_per_node", "1", "-m", "mcdm_model.train", "--shards",
               f"{tmp}/shards", "--size", "MCDM-T", "--steps", "4", "--bf16", "--device", "cuda", "--out", f"{tmp}/run",
               "--models-dir", f"{tmp}/none", "--num-workers", "2"]
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        ok = p.returncode == 0 and Path(f"{tmp}/run/last.pt").exists()
        return f"torchrun 1 GPU nccl: {'ok' if ok else 'FAILED'} (rc {p.returncode}) {p.stderr.strip()[-400:] if not ok else ''}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", action="append", help="MCDM-S / MCDM-B (default both)")
    p.add_argument("--stage", action="append", help="1 / 3 (default both)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--grad-checkpoint", action="store_true")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="the GPU's dense bf16 peak")
    p.add_argument("--models-dir", default=os.environ.get("TFW_MODELS_DIR", "/nonexistent"))
    p.add_argument("--torchrun", action="store_true")
    a = p.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("not measured: no CUDA GPU on this machine")
        return
    rows = [bench(s, st, a) for s in a.size or ["MCDM-S", "MCDM-B"] for st in a.stage or ["1", "3"]]
    print(f"GPU: {torch.cuda.get_device_name()}, bf16 autocast, batch {a.batch_size}, grad checkpoint {a.grad_checkpoint}")
    print("| size | stage | params M | steps/s | clips/s | peak GB | TFLOP/step | MFU |\n|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['size']} | {r['stage']} | {r['params_m']:.0f} | {r['steps_s']:.2f} | {r['clips_s']:.2f} | "
              f"{r['peak_gb']:.1f} | {r['tflop_step']:.2f} | {r['mfu']:.1%} |")
    if a.torchrun:
        print(torchrun_check())


if __name__ == "__main__":
    main()
