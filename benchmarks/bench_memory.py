"""Constant-memory proof for MCDM long generation: peak memory and time for 2, 8, 32 clips.

    python benchmarks/bench_memory.py                       # CPU, MCDM-T at 128² (latent 16²), 2 DDIM steps
    python benchmarks/bench_memory.py --device cuda --size MCDM-S --image-size 256

Two variants of the same model and weights, generating clip by clip through MCDM.generate_clip:
- memory: MCDM's MemoryTemporalAttention (one EMA slot per token carried between clips);
- full:   every temporal-attention block swapped for FullTemporalAttention, which keeps all past frames.
Each (variant, clips) point runs in a fresh subprocess. Peak memory: CUDA max_memory_allocated on GPU; on CPU the
peak RSS (VmHWM, reset through /proc/self/clear_refs after model load and a warm-up clip) minus the RSS at that
reset. Frames are discarded as they come, so only the model's own state can grow. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status (Linux only)")


def run_one(a: argparse.Namespace) -> dict:
    """Generate `a.clips` clips with one variant; return timing and memory as a dict."""
    import torch

    from mcdm_model.config import model_config
    from mcdm_model.model import MCDM
    from mcdm_model.modules.temporal_attention import FullTemporalAttention

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = model_config(a.size, image_size=a.image_size, models_dir=str(ROOT / ".no-models"))
    model = MCDM(cfg)
    if a.variant == "full":
        for block in model.modules():
            if hasattr(block, "temporal") and hasattr(block.temporal, "core"):
                old = block.temporal
                block.temporal = FullTemporalAttention(old.core.dim, old.core.heads)
                block.temporal.core.load_state_dict(old.core.state_dict())
    dev = torch.device(a.device)
    model = model.to(dev).eval()
    ref = model.encode_reference(torch.zeros(1, 3, cfg.image_size, cfg.image_size, device=dev))
    audio = torch.randn(1, cfg.present_frames * cfg.samples_per_frame, device=dev) * 0.1
    gen = torch.Generator(device=dev).manual_seed(0)
    _, warm = model.generate_clip(ref, None, audio, None, steps=a.steps, generator=gen)  # warm-up: first clip
    model.generate_clip(ref, None, audio, warm, steps=a.steps, generator=gen)  # ... and one that has a memory
    del warm
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM (peak RSS) to the current RSS
        base = _rss_kb("VmRSS") * 1024
    t0, c0 = time.perf_counter(), time.process_time()
    memory = None
    for _ in range(a.clips):
        frames, memory = model.generate_clip(ref, None, audio, memory, steps=a.steps, generator=gen)
        del frames
    if dev.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = _rss_kb("VmHWM") * 1024
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    state = [t for t in (memory.temporal or []) if t is not None] + [memory.archived, memory.motion]
    state_bytes = sum(t.numel() * t.element_size() for t in state if t is not None)
    return {"variant": a.variant, "clips": a.clips, "frames": a.clips * cfg.present_frames, "time_s": elapsed, "cpu_s": cpu,
            "peak_mb": peak / 2**20, "peak_delta_mb": (peak - base) / 2**20, "state_mb": state_bytes / 2**20}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--counts", type=int, nargs="+", default=[2, 8, 32])
    p.add_argument("--size", default="MCDM-T")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=2, help="DDIM steps per clip")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--variants", nargs="+", default=["memory", "full"])
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--variant", help=argparse.SUPPRESS)
    p.add_argument("--clips", type=int, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        print(json.dumps(run_one(a)))
        return
    # Large tensors come from mmap and go back to the OS when freed, so RSS follows live memory (not the heap's
    # high-water mark); one malloc arena keeps thread-local heaps out of the numbers.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_ARENA_MAX="1", OMP_NUM_THREADS=str(a.threads))
    rows = []
    for variant in a.variants:
        for n in a.counts:
            cmd = [sys.executable, __file__, "--one", "--variant", variant, "--clips", str(n), "--size", a.size,
                   "--image-size", str(a.image_size), "--steps", str(a.steps), "--device", a.device,
                   "--threads", str(a.threads)]  # fmt: skip
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
    unit = "CUDA max_memory_allocated" if a.device.startswith("cuda") else "peak RSS"
    print(f"MCDM {a.size} {a.image_size}², {a.steps} DDIM steps/clip, device {a.device}, {a.threads} thread(s); "
          f"peak = {unit}, delta = peak minus memory after warm-up")
    print(f"{'variant':<8} {'clips':>5} {'frames':>6} {'wall s':>8} {'cpu s':>8} {'cpu s/clip':>10} {'peak MB':>9} "
          f"{'delta MB':>9} {'peak x':>7} {'delta x':>8} {'state MB':>9}")
    for r in rows:
        first = next(x for x in rows if x["variant"] == r["variant"])
        print(f"{r['variant']:<8} {r['clips']:>5} {r['frames']:>6} {r['time_s']:>8.2f} {r['cpu_s']:>8.2f} "
              f"{r['cpu_s'] / r['clips']:>10.3f} "
              f"{r['peak_mb']:>9.1f} {r['peak_delta_mb']:>9.1f} {r['peak_mb'] / first['peak_mb']:>7.3f} "
              f"{r['peak_delta_mb'] / max(first['peak_delta_mb'], 1e-9):>8.2f} {r['state_mb']:>9.3f}")


if __name__ == "__main__":
    main()
