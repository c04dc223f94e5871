"""DDP under the torchrun environment: 2 gloo processes on CPU train on different data with gradients in sync."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from mcdm_model import train  # imported here so the forked workers inherit it (no re-import per process)
from mcdm_model.config import model_config
from mcdm_model.model import MCDM


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, shards: str, out: str, models_dir: str, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE="2")
    torch.set_num_threads(1)
    result = train.main(["--shards", shards, "--out", out, "--models-dir", models_dir, "--stage", "1", "--steps",
                         "2", "--batch-size", "1", "--device", "cpu", "--num-workers", "0"])
    torch.save({"state": result["model"].state_dict(), "history": result["history"]}, Path(out) / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


def test_ddp_two_gloo_processes_stay_in_sync(mcdm_shards: Path, tmp_path: Path, no_models_dir: str) -> None:
    out = tmp_path / "ddp"
    out.mkdir()
    mp.start_processes(_worker, args=(str(mcdm_shards), str(out), no_models_dir, _free_port()), nprocs=2,
                       join=True, start_method="fork")
    r0, r1 = (torch.load(out / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["history"][0][2] != r1["history"][0][2]  # each rank trained on its own data / noise
    assert r0["state"].keys() == r1["state"].keys()
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), f"{k} differs between ranks: gradients not in sync"
    torch.manual_seed(0)
    init = MCDM(model_config("MCDM-T", models_dir=no_models_dir)).state_dict()
    assert any(not torch.equal(init[k], r0["state"][k]) for k in init)  # it did train
    assert (out / "last.pt").exists()  # rank 0 wrote the checkpoint


@pytest.mark.gpu
def test_torchrun_one_gpu_nccl_bf16(mcdm_tiny_shard: Path, tmp_path: Path, no_models_dir: str) -> None:
    """`torchrun --nproc_per_node 1` with the nccl backend and bf16 autocast trains and writes a checkpoint."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", "-m",
           "mcdm_model.train", "--shards", str(mcdm_tiny_shard), "--out", str(tmp_path / "r"), "--models-dir",
           no_models_dir, "--steps", "2", "--bf16", "--device", "cuda", "--num-workers", "1"]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    assert p.returncode == 0, p.stderr[-2000:]
    ckpt = torch.load(tmp_path / "r" / "last.pt", weights_only=False)
    assert (ckpt["stage"], ckpt["stage_step"]) == ("3", 2)
