"""Keep the same footage once: clips of different source videos that show the same frames with the same sound.

A clip is a duplicate of an already kept clip when, at one time offset, (1) at least `min_overlap` of its video
samples overlap the other clip and `min_match` of those are within `max_hamming` bits (pHash, fingerprint.py),
(2) the audio fingerprints at that offset (+- a few frames, the sync stage may have moved each clip's audio by its
own reading) differ in at most `max_audio_ber` of their bits, and (3) the identity embeddings agree (cosine
distance <= `max_id_dist`). A static talking head matches its own video at many offsets, so every offset the
video allows is tried and the audio picks the one. Clips are visited best first (more source pixels, then longer, then by key), so the
copy kept is the sharpest, longest upload and the result does not depend on the order videos finished.
Candidates come from a band index over the hashes (4 bands of 16 bits; a band value held by more than
`max_bucket` clips is ignored as uninformative), so the cost grows with the duplicates, not with n^2.
Clips of one video are never compared with each other: consecutive windows of one take look alike.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .fingerprint import AUDIO_HOP, VIDEO_FPS, popcount

BANDS = 4
AUDIO_PER_SAMPLE = int(round(25 / VIDEO_FPS))  # audio fingerprint frames (40 ms) per video hash sample
AUDIO_SLACK = 7  # audio frames searched on each side of the video offset


@dataclass
class Clip:
    key: str
    video_key: str
    rank: tuple  # sort key: best copy first
    vhash: np.ndarray  # (N,) uint64
    emb: np.ndarray | None
    audio: Callable[[], np.ndarray]  # lazily computed audio fingerprint (N*5,) uint16


def _bands(h: np.ndarray) -> set[tuple[int, int]]:
    h = np.asarray(h, np.uint64)
    return {(b, int(v)) for b in range(BANDS) for v in ((h >> np.uint64(16 * b)) & np.uint64(0xFFFF)).tolist()}


def video_offsets(a: np.ndarray, b: np.ndarray, cfg) -> dict[int, float]:
    """{offset d: matched fraction} for every alignment b[i] ~ a[i + d] that covers >= min_overlap of b and
    matches on >= min_match of its samples. Static talking heads match at many offsets; the audio decides."""
    out: dict[int, float] = {}
    need = max(2, int(np.ceil(cfg.min_overlap * len(b))))
    for d in range(-len(b) + need, len(a) - need + 1):
        i = np.arange(max(0, -d), min(len(b), len(a) - d))
        if len(i) >= need:
            frac = float((popcount(a[i + d] ^ b[i]) <= cfg.max_hamming).mean())
            if frac >= cfg.min_match:
                out[d] = frac
    return out


def audio_ber(a: np.ndarray, b: np.ndarray, center: int, min_frames: int) -> tuple[float, int]:
    """(lowest bit error rate, its offset) of b aligned to a at offsets center +- AUDIO_SLACK (b[i] ~ a[i + d])."""
    out = (1.0, center)
    for d in range(center - AUDIO_SLACK, center + AUDIO_SLACK + 1):
        i = np.arange(max(0, -d), min(len(b), len(a) - d))
        if len(i) >= max(min_frames, 1):
            out = min(out, (float(popcount(a[i + d] ^ b[i]).mean() / 16.0), d))
    return out


def same_footage(kept: Clip, c: Clip, cfg) -> str | None:
    """A detail string when `c` repeats `kept`'s footage, else None."""
    if kept.emb is not None and c.emb is not None and kept.emb.shape == c.emb.shape:
        dist = 1.0 - float(np.dot(kept.emb, c.emb) / max(np.linalg.norm(kept.emb) * np.linalg.norm(c.emb), 1e-12))
        if dist > cfg.max_id_dist:
            return None
    offsets = video_offsets(kept.vhash, c.vhash, cfg)
    if not offsets:
        return None
    ka, ca = kept.audio(), c.audio()
    need = int(cfg.min_overlap * len(ca))
    (ber, da), d = min((audio_ber(ka, ca, d * AUDIO_PER_SAMPLE, need), d) for d in sorted(offsets, key=abs))
    if ber > cfg.max_audio_ber:
        return None
    return (f"duplicate of {kept.key}: {offsets[d]:.0%} of frames match, audio bit errors {ber:.2f} "
            f"at {da * AUDIO_HOP / 16000:+.2f} s")


def find_duplicates(clips: list[Clip], cfg) -> dict[str, tuple[str, str]]:
    """{key: (key it duplicates, detail)} for every clip that repeats the footage of a better clip."""
    index: dict[tuple[int, int], list[int]] = {}
    kept: list[Clip] = []
    out: dict[str, tuple[str, str]] = {}
    for c in sorted(clips, key=lambda x: x.rank):
        if len(c.vhash) < 2:
            continue
        bands = _bands(c.vhash)
        hits: Counter = Counter()
        for band in bands:
            members = index.get(band, ())
            if len(members) <= cfg.max_bucket:
                hits.update(j for j in members if kept[j].video_key != c.video_key)
        found = None
        for j, n in sorted(hits.items(), key=lambda x: (-x[1], x[0])):
            if n < 2:
                break
            detail = same_footage(kept[j], c, cfg)
            if detail:
                found = (kept[j].key, detail)
                break
        if found:
            out[c.key] = found
            continue
        kept.append(c)
        for band in bands:
            index.setdefault(band, []).append(len(kept) - 1)
    return out


def wav_bits(path: str) -> np.ndarray:
    """Audio fingerprint of a clip .wav (16 kHz mono)."""
    from . import media
    from .fingerprint import audio_bits

    a = media.read_audio(path)
    return audio_bits(a[: len(a) // AUDIO_HOP * AUDIO_HOP])
