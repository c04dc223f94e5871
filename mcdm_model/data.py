"""WebDataset stream of the pipeline's shards -> MCDM training windows.

A window = reference frame (any frame of the clip), A archived frames right before the present clip, the present
clip of F frames, its aligned audio (640 samples per frame: the sink already shifted audio to A/V offset 0) and
motion tokens (mcdm_model.motion) for all of them. Shards are resampled per rank and worker (ResampledShards,
seeded by rank*1000+worker), so every process sees a different, endless, reproducible stream; a finite pass
(resampled=False) splits shards by node and worker instead. A sample that fails to decode is skipped and logged.
"""

from __future__ import annotations

import io
import json
import logging
import random
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from webdataset.utils import make_seed, pytorch_worker_seed

from mcdm_model.config import ModelConfig, TrainConfig
from mcdm_model.motion import motion_tokens
from pipeline.common import decode_video_bytes as decode_mp4
from pipeline.common import read_track

log = logging.getLogger(__name__)
IMAGE_KEYS = ("ref", "archived", "present")


def list_shards(root: str | Path) -> list[str]:
    """Every *.tar beneath root (or root itself if it is a .tar), sorted; raises if there are none."""
    root = Path(root)
    paths = [root] if root.suffix == ".tar" else sorted(root.rglob("*.tar"))
    if not paths:
        raise FileNotFoundError(f"no .tar shards under {root}: run `python -m pipeline.build` first or check --shards")
    return [str(p) for p in paths]


def decode_wav(data: bytes, sample_rate: int) -> np.ndarray:
    with wave.open(io.BytesIO(data)) as wf:
        if wf.getframerate() != sample_rate or wf.getnchannels() != 1 or wf.getsampwidth() != 2:
            raise ValueError(f"wav must be {sample_rate} Hz mono 16-bit, got {wf.getframerate()} Hz "
                             f"{wf.getnchannels()} ch {8 * wf.getsampwidth()}-bit")
        return np.frombuffer(wf.readframes(wf.getnframes()), dtype="<i2").astype(np.float32) / 32768.0


def decode_clip(sample: dict, cfg: ModelConfig) -> dict:
    """Raw webdataset sample -> {key, frames (N,S,S,3) uint8, audio (N*640,), motion (N,105), meta}."""
    missing = [k for k in ("mp4", "wav", "npz") if k not in sample]
    if missing:
        raise ValueError(f"sample {sample.get('__key__')} lacks {missing}")
    frames = decode_mp4(sample["mp4"], cfg.image_size)
    audio = decode_wav(sample["wav"], cfg.sample_rate)
    track = read_track(sample["npz"])
    motion = motion_tokens(track["landmarks_crop"], track["pose"])
    spf = cfg.samples_per_frame
    n = min(len(frames), len(motion), len(audio) // spf)
    meta = json.loads(sample["json"]) if "json" in sample else {}
    return {"key": sample["__key__"], "frames": frames[:n], "audio": audio[: n * spf], "motion": motion[:n],
            "meta": meta}


def sample_windows(clip: dict, cfg: ModelConfig, rng: random.Random, k: int) -> list[dict]:
    """k random windows of one decoded clip (empty if the clip is shorter than A + F frames)."""
    a, f, spf = cfg.archived_frames, cfg.present_frames, cfg.samples_per_frame
    fr, mo, n = clip["frames"], clip["motion"], len(clip["frames"])
    if n < a + f:
        log.warning("skip %s: %d frames < archived %d + present %d", clip["key"], n, a, f)
        return []
    out = []
    for _ in range(k):
        s, r = rng.randint(a, n - f), rng.randrange(n)
        out.append({
            "key": clip["key"], "start": s, "ref_index": r,
            "ref": fr[r].transpose(2, 0, 1), "archived": fr[s - a : s].transpose(0, 3, 1, 2),
            "present": fr[s : s + f].transpose(0, 3, 1, 2), "audio": clip["audio"][s * spf : (s + f) * spf],
            "motion_ref": mo[r], "motion_archived": mo[s - a : s], "motion": mo[s : s + f],
        })  # fmt: skip
    return out


MAX_BAD_IN_A_ROW = 50  # an endless (resampled) stream of only bad samples would otherwise spin forever


class _Windows:
    """Pipeline stage: decode clips, draw windows, shuffle in a buffer; RNG seeded per rank/worker at iteration."""

    def __init__(self, cfg: ModelConfig, tcfg: TrainConfig) -> None:
        self.cfg, self.tcfg, self.epoch = cfg, tcfg, -1

    def __call__(self, src: Iterator[dict]) -> Iterator[dict]:
        self.epoch += 1
        rng = random.Random(make_seed(pytorch_worker_seed(), self.epoch, self.tcfg.seed))
        buf: list[dict] = []
        bad = 0
        for sample in src:
            try:
                wins = sample_windows(decode_clip(sample, self.cfg), self.cfg, rng, self.tcfg.windows_per_clip)
            except Exception as exc:  # one bad sample never kills a run
                log.warning("skip sample %s: %s", sample.get("__key__"), exc)
                wins = []
            bad = 0 if wins else bad + 1
            if bad >= MAX_BAD_IN_A_ROW:
                raise RuntimeError(f"{bad} samples in a row gave no training window (undecodable or shorter than "
                                   f"{self.cfg.archived_frames + self.cfg.present_frames} frames): check the shards")
            buf.extend(wins)
            while len(buf) > self.tcfg.shuffle_buffer:
                yield buf.pop(rng.randrange(len(buf)))
        rng.shuffle(buf)
        yield from buf


def collate(items: list[dict]) -> dict:
    out: dict = {"key": [it["key"] for it in items]}
    for k in items[0]:
        if k != "key":
            out[k] = torch.from_numpy(np.stack([np.asarray(it[k]) for it in items]))
    return out


def make_dataset(shards: str | Path | list[str], cfg: ModelConfig, tcfg: TrainConfig,
                 resampled: bool = True) -> wds.DataPipeline:
    """Batched window stream (endless if resampled) over the shards."""
    urls = shards if isinstance(shards, list) else list_shards(shards)
    if resampled:
        stages = [wds.ResampledShards(urls, seed=tcfg.seed, deterministic=True)]
    else:
        stages = [wds.SimpleShardList(urls), wds.split_by_node, wds.split_by_worker]
    stages += [wds.tarfile_to_samples(handler=wds.warn_and_continue), _Windows(cfg, tcfg),
               wds.batched(tcfg.batch_size, collation_fn=collate, partial=not resampled)]
    return wds.DataPipeline(*stages)


def make_loader(shards: str | Path | list[str], cfg: ModelConfig, tcfg: TrainConfig,
                resampled: bool = True) -> torch.utils.data.DataLoader:
    ds = make_dataset(shards, cfg, tcfg, resampled)
    return torch.utils.data.DataLoader(ds, batch_size=None, num_workers=tcfg.num_workers,
                                       persistent_workers=tcfg.num_workers > 0)


def to_model(batch: dict, device: torch.device | str, dtype: torch.dtype = torch.float32) -> dict:
    """Move a collated batch to the device; images uint8 -> float in [-1, 1]."""
    out = {}
    for k, v in batch.items():
        if not isinstance(v, torch.Tensor):
            out[k] = v
        elif k in IMAGE_KEYS:
            out[k] = v.to(device, non_blocking=True).to(dtype) / 127.5 - 1.0
        else:
            out[k] = v.to(device, non_blocking=True).to(dtype if v.is_floating_point() else v.dtype)
    return out
