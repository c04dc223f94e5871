"""The pipeline's shards -> MCDM training windows, with random access, a real shuffle and exact, cheap resume.

A window = reference frame (any frame of the clip), A archived frames, then `chain_clips` (W) consecutive present
clips of F frames with their audio (640 samples per frame: the sink already shifted audio to A/V offset 0) and
motion tokens (mcdm_model.motion). Stage 3 builds the last clip's memory over the earlier ones, as generation does.

Shards are indexed once (tar headers only: `ShardIndex`), so a sample is read by seeking, not by streaming. The
order is a fresh permutation of all clips every epoch, split across ranks (`ClipSampler`); batch i of a rank is a
pure function of (seed, rank, world, i), so resuming at step s starts reading at batch s, decoding nothing before
it, and the batches do not depend on the number of DataLoader workers. When a clip's .json names its predecessor in
the same take (`prev_key`: pipeline/takes.py cuts a take into consecutive windows) and that clip is in the shards,
it is joined in front, so windows may reach back across the clip boundary: their archived (and, in a chain, present)
frames are then the seconds that really came before. `list_shards(root, split)` reads `<root>/<split>/` of a
build's `shards/<split>/<lang>/`. A sample that fails to decode is logged and the next clip is used.
"""

from __future__ import annotations

import io
import json
import logging
import random
import re
import tarfile
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from mcdm_model.config import ModelConfig, TrainConfig
from mcdm_model.motion import motion_tokens
from pipeline.common import decode_video_bytes as decode_mp4
from pipeline.common import read_track

log = logging.getLogger(__name__)
IMAGE_KEYS = ("ref", "archived", "present")
SPLITS = ("train", "val", "test")
NEEDED = ("mp4", "wav", "npz")
MAX_BAD_IN_A_ROW = 50  # a run over shards of only bad samples stops with a clear error instead of spinning
_KEY_EXT = re.compile(r"^((?:.*/|)[^./]+)[.]([^/]*)$")  # webdataset's rule: key = path up to the first dot


def list_shards(root: str | Path | list[str], split: str | None = None) -> list[str]:
    """Every *.tar beneath root (or root itself if it is a .tar; a list is returned as it is), sorted; raises if
    there are none.

    `split` ("train" | "val" | "test"; None or "all" = every split) reads `<root>/<split>/`; a root without split
    folders (older builds, fixture shards) is read whole, with a warning."""
    if isinstance(root, list):
        return root
    root = Path(root)
    if root.suffix != ".tar" and split not in (None, "", "all"):
        if (root / split).is_dir():
            root = root / split
        elif any((root / s).is_dir() for s in SPLITS):
            have = [s for s in SPLITS if (root / s).is_dir()]
            raise FileNotFoundError(f"no {split!r} split under {root} (it has {have}): the build put no identity there")
        else:
            log.warning("%s has no split folders (train/val/test): reading every shard for split %r", root, split)
    paths = [root] if root.suffix == ".tar" else sorted(root.rglob("*.tar"))
    if not paths:
        raise FileNotFoundError(f"no .tar shards under {root}: run `python -m pipeline.build` first or check --shards")
    return [str(p) for p in paths]


class ShardIndex:
    """key -> {ext: (tar path, data offset, size)} over shards, from the tar headers; samples in shard order."""

    def __init__(self, shards: str | Path | list[str], split: str | None = None) -> None:
        paths = list_shards(shards, split)
        self.entries: dict[str, dict[str, tuple[str, int, int]]] = {}
        for path in paths:
            try:
                with tarfile.open(path) as tf:
                    for m in tf:
                        hit = _KEY_EXT.match(m.name) if m.isfile() else None
                        if hit:
                            self.entries.setdefault(hit.group(1), {})[hit.group(2)] = (path, m.offset_data, m.size)
            except (tarfile.TarError, OSError) as exc:
                log.warning("skip shard %s: %s", path, exc)
        self.keys = [k for k, v in self.entries.items() if all(e in v for e in NEEDED)]
        if not self.keys:
            names = [Path(p).name for p in paths]
            more = f" and {len(names) - 5} more" if len(names) > 5 else ""
            raise RuntimeError(f"no usable sample (with {', '.join(NEEDED)}) in {len(paths)} shard(s): "
                               f"{', '.join(names[:5])}{more} (empty, truncated or not a tar): rebuild them with "
                               "`python -m pipeline.build` or check --shards")

    def __len__(self) -> int:
        return len(self.keys)

    def read(self, key: str) -> dict:
        """The raw sample {__key__, ext: bytes} (what webdataset would yield)."""
        out: dict = {"__key__": key}
        for ext, (path, off, size) in self.entries[key].items():
            with open(path, "rb") as fh:
                fh.seek(off)
                out[ext] = fh.read(size)
        return out


def decode_wav(data: bytes, sample_rate: int) -> np.ndarray:
    with wave.open(io.BytesIO(data)) as wf:
        if wf.getframerate() != sample_rate or wf.getnchannels() != 1 or wf.getsampwidth() != 2:
            raise ValueError(f"wav must be {sample_rate} Hz mono 16-bit, got {wf.getframerate()} Hz "
                             f"{wf.getnchannels()} ch {8 * wf.getsampwidth()}-bit")
        return np.frombuffer(wf.readframes(wf.getnframes()), dtype="<i2").astype(np.float32) / 32768.0


def decode_clip(sample: dict, cfg: ModelConfig) -> dict:
    """Raw sample -> {key, frames (N,S,S,3) uint8, audio (N*640,), motion (N,105), meta, offset 0}."""
    missing = [k for k in NEEDED if k not in sample]
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
            "meta": meta, "offset": 0}


def join_predecessor(prev: dict, clip: dict) -> dict:
    """The predecessor clip of the same take in front of `clip`; `offset` = where `clip` starts."""
    return {**clip, "frames": np.concatenate([prev["frames"], clip["frames"]]),
            "audio": np.concatenate([prev["audio"], clip["audio"]]),
            "motion": np.concatenate([prev["motion"], clip["motion"]]), "offset": len(prev["frames"])}


def sample_windows(clip: dict, cfg: ModelConfig, rng: random.Random, k: int, chain: int = 1) -> list[dict]:
    """k random windows (A archived + chain*F present frames) ending inside the clip proper (after `offset`);
    empty if the clip is too short."""
    a, f, spf = cfg.archived_frames, chain * cfg.present_frames, cfg.samples_per_frame
    fr, mo, n, off = clip["frames"], clip["motion"], len(clip["frames"]), clip.get("offset", 0)
    lo = max(a, off - f + 1)
    if n - f < lo:
        log.warning("skip %s: %d frames < archived %d + present %d", clip["key"], n - off, a, f)
        return []
    out = []
    for _ in range(k):
        s, r = rng.randint(lo, n - f), rng.randrange(off, n)
        out.append({
            "key": clip["key"], "start": s - off, "ref_index": r - off,
            "ref": fr[r].transpose(2, 0, 1), "archived": fr[s - a : s].transpose(0, 3, 1, 2),
            "present": fr[s : s + f].transpose(0, 3, 1, 2), "audio": clip["audio"][s * spf : (s + f) * spf],
            "motion_ref": mo[r], "motion_archived": mo[s - a : s], "motion": mo[s : s + f],
        })  # fmt: skip
    return out


class WindowDataset(torch.utils.data.Dataset):
    """Item (clip number, seed) -> the clip's windows; a bad clip is replaced by the next one, deterministically."""

    def __init__(self, index: ShardIndex, cfg: ModelConfig, tcfg: TrainConfig) -> None:
        self.index, self.cfg, self.tcfg = index, cfg, tcfg

    def __len__(self) -> int:
        return len(self.index)

    def load(self, key: str) -> dict:
        clip = decode_clip(self.index.read(key), self.cfg)
        prev = clip["meta"].get("prev_key")
        if prev and prev in self.index.entries:
            clip = join_predecessor(decode_clip(self.index.read(prev), self.cfg), clip)
        return clip

    def __getitem__(self, item: tuple[int, int]) -> list[dict]:
        i, seed = item
        for j in range(MAX_BAD_IN_A_ROW):
            key = self.index.keys[(i + j) % len(self.index)]
            try:
                wins = sample_windows(self.load(key), self.cfg, random.Random(seed + j), self.tcfg.windows_per_clip,
                                      self.tcfg.chain_clips)
            except Exception as exc:  # one bad sample never kills a run
                log.warning("skip sample %s: %s", key, exc)
                wins = []
            if wins:
                return wins
        raise RuntimeError(f"{MAX_BAD_IN_A_ROW} samples in a row gave no training window (undecodable or shorter "
                           "than archived + chain_clips * present frames): check the shards")


def rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    import os

    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


class ClipSampler(torch.utils.data.Sampler):
    """Batches of (clip, seed) items: per epoch a permutation of all clips (seeded), this rank's share of it;
    `start` = batches to skip (resume) without touching any data; `epochs` = None for an endless stream."""

    def __init__(self, n: int, per_batch: int, seed: int, start: int = 0, epochs: int | None = None) -> None:
        self.n, self.per_batch, self.seed, self.start, self.epochs = n, per_batch, seed, start, epochs
        self.rank, self.world = rank_world()

    def _share(self, epoch: int) -> list[int]:
        perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100003 + epoch)).tolist()
        return perm[self.rank :: self.world] or [perm[self.rank % self.n]]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        m = len(self._share(0))
        pos = self.start * self.per_batch
        epoch, off = divmod(pos, m)
        batch: list[tuple[int, int]] = []
        while self.epochs is None or epoch < self.epochs:
            share = self._share(epoch)
            for p in range(off, len(share)):
                batch.append((share[p], hash((self.seed, self.rank, epoch, p)) & 0x7FFFFFFF))
                if len(batch) == self.per_batch:
                    yield batch
                    batch = []
            epoch, off = epoch + 1, 0
        if batch:
            yield batch


def collate(items: list[list[dict]]) -> dict:
    wins = [w for ws in items for w in ws]
    out: dict = {"key": [w["key"] for w in wins]}
    for k in wins[0]:
        if k != "key":
            out[k] = torch.from_numpy(np.stack([np.asarray(w[k]) for w in wins]))
    return out


def make_loader(shards: str | Path | list[str], cfg: ModelConfig, tcfg: TrainConfig, start: int = 0,
                epochs: int | None = None, pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """Batches of tcfg.batch_size windows (batch_size / windows_per_clip clips each), from batch `start` on, over
    the shards of split `tcfg.split` under a build's shards dir."""
    k = tcfg.windows_per_clip
    if k < 1 or tcfg.batch_size % k:
        raise ValueError(f"batch_size {tcfg.batch_size} must be a multiple of windows_per_clip {k}")
    ds = WindowDataset(ShardIndex(shards, tcfg.split), cfg, tcfg)
    sampler = ClipSampler(len(ds), tcfg.batch_size // k, tcfg.seed, start, epochs)
    return torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=collate, num_workers=tcfg.num_workers,
                                       pin_memory=pin_memory, persistent_workers=tcfg.num_workers > 0)


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
