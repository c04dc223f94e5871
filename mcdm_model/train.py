"""Train MCDM directly on the pipeline's shards: python -m mcdm_model.train --shards <out>/shards.

Three stages as in the paper: (1) archived-clip prior + denoiser image path (+ the scratch VAE), (2) present-clip
motion-prior diffusion (+ the mel audio encoder), (3) joint fine-tune of the present-clip cross-attention and the
memory temporal attention. AdamW, EMA, checkpoints with exact resume (the loader restarts at the saved batch,
decoding nothing before it), bf16 autocast on GPU, gradient checkpointing, DDP when launched by torchrun
(WORLD_SIZE set; gloo on CPU, nccl on GPU), TensorBoard logs in <out>/tb. Checkpoints hold the config and state
dicts only (no machine paths): they load on any machine.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
import yaml
from torch import nn

from mcdm_model import checkpoint
from mcdm_model.config import SIZES, TrainConfig, load_yaml, model_config, to_dict
from mcdm_model.data import make_loader, to_model
from mcdm_model.model import MCDM, STAGES

log = logging.getLogger("mcdm_model.train")


class StageLoss(nn.Module):
    """forward(batch) -> loss dict, so DDP can wrap the model for one stage."""

    def __init__(self, model: MCDM, stage: str) -> None:
        super().__init__()
        self.model, self.stage = model, stage

    def forward(self, batch: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return self.model.loss(batch, self.stage, generator)


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, TrainConfig]:
    p = argparse.ArgumentParser(prog="python -m mcdm_model.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shards", required=True, help="dir with the pipeline's shards (every *.tar beneath, e.g. "
                   "<out>/shards) or one .tar")
    p.add_argument("--split", choices=["train", "val", "test", "all"], help="split of a build's shards/<split>/ "
                   "(default train; shard dirs without split folders are read whole)")
    p.add_argument("--size", default="MCDM-T", choices=list(SIZES), help="model size: MCDM-T tiny CPU (64²), "
                   "MCDM-S (256²), MCDM-B paper-like (512², SD-1.5 widths)")
    p.add_argument("--config", help="YAML with optional `model:` and `train:` mappings overriding the size/defaults")
    p.add_argument("--stage", choices=[*STAGES, "all"], help="training stage (default all: 1, then 2, then 3)")
    p.add_argument("--steps", type=int, help="optimizer steps per stage (default 1000)")
    p.add_argument("--batch-size", type=int, help="windows per step per process (default 2)")
    p.add_argument("--lr", type=float, help="AdamW learning rate (default 1e-4; the paper uses 1e-5 at 512²)")
    p.add_argument("--out", help="run dir: checkpoints last.pt / ckpt-*.pt, config.yaml, tb/ (default runs/mcdm)")
    p.add_argument("--resume", nargs="?", const="last", help="continue from <out>/last.pt (or the given "
                   "checkpoint): weights, EMA, optimizer, RNG and data position, so the result is identical")
    p.add_argument("--init", help="start from this checkpoint's weights (EMA) with this run's own config: keys the "
                   "new architecture lacks or adds are reported, e.g. an ablation fine-tuned from a shared base")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA only)")
    p.add_argument("--device", help="auto | cpu | cuda (under torchrun: cuda:LOCAL_RANK)")
    p.add_argument("--num-workers", type=int, help="DataLoader workers per process (default 2; 0 = in process)")
    p.add_argument("--chain-clips", type=int, help="consecutive present clips per window (default 2): stage 3 "
                   "builds the last clip's memory over the earlier ones, as generation does")
    p.add_argument("--grad-checkpoint", action="store_true", help="gradient checkpointing in the UNet (memory)")
    p.add_argument("--seed", type=int, help="seed for init, data windows and diffusion noise (default 0)")
    p.add_argument("--log-every", type=int, help="steps between log lines / TensorBoard points (default 10)")
    p.add_argument("--ckpt-every", type=int, help="steps between checkpoints (default 500; always at stage end)")
    p.add_argument("--models-dir", help="local weights dir (SD-1.5 VAE in sd-vae/, wav2vec2 in "
                   "wav2vec2-base-960h/); default $TFW_MODELS_DIR or ~/.cache/talkingface-wild/models")
    args = p.parse_args(argv)
    tcfg = TrainConfig()
    args.model_overrides = {}
    if args.config:
        mc = model_config(args.size)
        load_yaml(args.config, mc, tcfg)
        args.model_overrides = {k: v for k, v in to_dict(mc).items() if v != to_dict(model_config(args.size))[k]}
    for name in ("shards", "split", "stage", "steps", "batch_size", "lr", "out", "bf16", "device", "num_workers",
                 "seed", "log_every", "ckpt_every", "chain_clips", "grad_checkpoint"):
        v = getattr(args, name)
        if v is not None and v is not False:
            setattr(tcfg, name, str(v) if name == "stage" else v)
    if args.models_dir:
        args.model_overrides["models_dir"] = args.models_dir
    return args, tcfg


def setup_distributed(tcfg: TrainConfig) -> tuple[torch.device, int, int]:
    """(device, rank, world) — initialises the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    want = tcfg.device if tcfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if want.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda requested but no CUDA device is available")
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) if world > 1 else 0)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if tcfg.bf16 and device.type != "cuda":
        raise SystemExit("--bf16 needs a CUDA device (bf16 autocast on CPU is slow and not supported here)")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, rank, world


def main(argv: list[str] | None = None) -> dict:
    """Run training; returns {'history': [(stage, step, loss), ...], 'out', 'step': last step, 'model'}."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args, tcfg = parse_args(argv)
    device, rank, world = setup_distributed(tcfg)
    out = Path(tcfg.out)
    resume = None
    if args.resume:
        resume = checkpoint.load(out / "last.pt" if args.resume == "last" else args.resume)
    mcfg = model_config(args.size, **args.model_overrides)
    torch.manual_seed(tcfg.seed)
    if resume is not None:  # the architecture the checkpoint recorded, no models dir needed
        model = MCDM.from_config(resume["model_config"]).to(device)
    else:
        model = MCDM(mcfg).to(device)
    mcfg = model.cfg  # with the pretrained parts that were actually found
    if args.init and resume is None:
        init = checkpoint.load(args.init)
        missing, unexpected = model.load_state_dict(init["ema"] or init["model"], strict=False)
        log.info("init from %s: %d keys kept as initialised, %d unused", args.init, len(missing), len(unexpected))
    if tcfg.grad_checkpoint:
        model.denoiser.unet.enable_gradient_checkpointing()
    log.info("MCDM %s: %.2f M parameters (UNet %.2f M)", args.size, sum(p.numel() for p in model.parameters()) / 1e6,
             sum(p.numel() for p in model.denoiser.parameters()) / 1e6)
    ema = checkpoint.EMA(model, tcfg.ema_decay)
    if resume is not None:
        model.load_state_dict(resume["model"])
        ema.load(resume["ema"])
    writer = None
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump({"model": to_dict(mcfg, portable=True), "train": to_dict(tcfg),
                                                         "size": args.size}, sort_keys=False))
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"))
    stages = list(STAGES) if tcfg.stage == "all" else [tcfg.stage]
    history: list[tuple[str, int, float]] = []
    start_stage, start_step = (resume["stage"], resume["stage_step"]) if resume else (stages[0], 0)
    if start_stage not in stages:
        raise SystemExit(f"checkpoint is at stage {start_stage}, not among --stage {tcfg.stage}")
    if start_step >= tcfg.steps and start_stage != stages[-1]:  # that stage was finished: go on to the next
        start_stage, start_step, resume = stages[stages.index(start_stage) + 1], 0, None
    step = 0
    for stage in stages[stages.index(start_stage):]:
        first = 0 if stage != start_stage else start_step
        step = run_stage(model, ema, stage, first, tcfg, mcfg, args.size, device, rank, world, writer, history,
                         resume if stage == start_stage else None)
    if writer is not None:
        writer.close()
    if world > 1:
        dist.barrier()
    return {"history": history, "out": str(out), "step": step, "model": model}


def run_stage(model: MCDM, ema: checkpoint.EMA, stage: str, first: int, tcfg: TrainConfig, mcfg, size: str,
              device: torch.device, rank: int, world: int, writer, history: list, resume: dict | None) -> int:
    """Train one stage from step `first` to tcfg.steps; returns the last step."""
    if first >= tcfg.steps:
        log.info("stage %s already at step %d of %d: nothing to do", stage, first, tcfg.steps)
        return first
    params = model.stage_parameters(stage)
    keep = {id(p) for p in params}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
    opt = torch.optim.AdamW(params, lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    gen = torch.Generator(device=device)
    gen.manual_seed(tcfg.seed * 7919 + 104729 * rank + int(stage))
    if resume is not None:
        opt.load_state_dict(resume["optimizer"])
        gen.set_state(resume["generator"].to("cpu"))
        torch.set_rng_state(resume["torch_rng"])
    net: nn.Module = StageLoss(model, stage)
    if world > 1:
        ddp_kw = {"device_ids": [device.index]} if device.type == "cuda" else {}
        net = nn.parallel.DistributedDataParallel(net, find_unused_parameters=True, **ddp_kw)
    data_cfg = TrainConfig(**{**vars(tcfg), "seed": tcfg.seed + 1000 * int(stage)})
    batches = iter(make_loader(tcfg.shards, mcfg, data_cfg, start=first, pin_memory=device.type == "cuda"))
    t0, clips = time.perf_counter(), 0
    step = first
    for step in range(first + 1, tcfg.steps + 1):
        batch = to_model(next(batches), device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=tcfg.bf16):
            losses = net(batch, gen)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        if tcfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, tcfg.grad_clip)
        opt.step()
        ema.update(model, step)
        clips += batch["present"].shape[0] * world
        history.append((stage, step, float(losses["loss"].detach())))
        if writer is not None and (step % tcfg.log_every == 0 or step == tcfg.steps):
            rate = clips / (time.perf_counter() - t0)
            for k, v in losses.items():
                writer.add_scalar(f"stage{stage}/{k}", float(v.detach()), step)
            writer.add_scalar(f"stage{stage}/clips_per_s", rate, step)
            log.info("stage %s step %d/%d loss %.4f (%.2f clips/s)", stage, step, tcfg.steps, history[-1][2], rate)
        if rank == 0 and (step % tcfg.ckpt_every == 0 or step == tcfg.steps):
            payload = {"model": model.state_dict(), "ema": ema.state_dict(model), "optimizer": opt.state_dict(),
                       "generator": gen.get_state(), "torch_rng": torch.get_rng_state(), "stage": stage, "stage_step": step, "size": size,
                       "model_config": to_dict(mcfg, portable=True), "train_config": to_dict(tcfg), "data_batch": step}
            checkpoint.save(Path(tcfg.out) / "last.pt", payload)
            if step % tcfg.ckpt_every == 0:
                checkpoint.save(Path(tcfg.out) / f"ckpt-s{stage}-{step:07d}.pt", payload)
    return step


if __name__ == "__main__":
    main()
