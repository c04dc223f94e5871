"""Perceptual fingerprints of a clip, for finding the same footage uploaded twice (re-encoded, rescaled, trimmed).

video  a 64-bit DCT hash (pHash) of every sampled frame of the face crop (`VIDEO_FPS` per second, 32x32 grey):
       re-encoding and rescaling move a few bits, a one-second trim shifts the sequence, which matching slides over
audio  16 bits per video frame (40 ms) from the clip's audio: the signs of the band-energy differences over time and
       frequency (Haitsma & Kalker's scheme, 17 mel-spaced bands from 300 Hz to 4 kHz); a re-encode flips few bits,
       different speech about half

Why both: talking heads filmed in the same studio give near-identical crops from different footage, so the video
hash finds candidates and aligns them, and the audio (different words) tells two recordings apart. Fingerprints are
computed once per kept clip (the `Commit` stage) and stored in the ledger; `dedup.py` compares them.
"""

from __future__ import annotations

import base64

import numpy as np

from . import media

VIDEO_FPS = 5.0
HASH_SIDE = 32
AUDIO_SR = 16000
AUDIO_HOP = 640  # one video frame at 25 fps
AUDIO_WIN = 2048
N_BANDS = 17


def phash(gray32: np.ndarray) -> np.uint64:
    """64-bit perceptual hash of one 32x32 grey image: low 8x8 DCT coefficients (DC excluded) above their median."""
    import cv2

    c = cv2.dct(np.asarray(gray32, np.float32))[:8, :8].reshape(-1)
    ac = c[1:]
    bits = np.r_[False, ac > np.median(ac)]
    return np.uint64(int("".join("1" if b else "0" for b in bits), 2))


def video_hashes(path: str, fps: float = VIDEO_FPS) -> np.ndarray:
    """pHash per sampled frame of a video file: (N,) uint64."""
    frames = media.read_frames(path, size=(HASH_SIDE, HASH_SIDE), fps=fps)
    gray = frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.array([phash(g) for g in gray], dtype=np.uint64)


def _mel_edges(n_fft: int, sr: int, lo: float = 300.0, hi: float = 4000.0, n: int = N_BANDS) -> np.ndarray:
    mel = np.linspace(2595 * np.log10(1 + lo / 700), 2595 * np.log10(1 + hi / 700), n + 1)
    hz = 700 * (10 ** (mel / 2595) - 1)
    return np.round(hz / sr * n_fft).astype(int)


def audio_bits(audio: np.ndarray) -> np.ndarray:
    """(N,) uint16: 16 fingerprint bits per 640-sample frame of 16 kHz mono audio."""
    a = np.asarray(audio, np.float32)
    n = len(a) // AUDIO_HOP
    if n < 2:
        return np.zeros(0, np.uint16)
    pad = np.pad(a, (AUDIO_WIN // 2, AUDIO_WIN))
    idx = np.arange(n)[:, None] * AUDIO_HOP + np.arange(AUDIO_WIN)[None, :]
    spec = np.abs(np.fft.rfft(pad[idx] * np.hanning(AUDIO_WIN)[None, :], axis=1)) ** 2
    edges = _mel_edges(AUDIO_WIN, AUDIO_SR)
    energy = np.stack([spec[:, edges[k] : max(edges[k + 1], edges[k] + 1)].sum(1) for k in range(N_BANDS)], axis=1)
    energy = np.log(energy + 1e-9)
    diff = energy[:, :-1] - energy[:, 1:]  # (n, 16) across frequency
    bits = np.zeros((n, 16), bool)
    bits[1:] = (diff[1:] - diff[:-1]) > 0  # ... and over time
    return (bits * (1 << np.arange(16))).sum(1).astype(np.uint16)


def popcount(x: np.ndarray) -> np.ndarray:
    """Set bits per element of an unsigned integer array."""
    x = np.asarray(x)
    b = np.unpackbits(x.view(np.uint8).reshape(*x.shape, x.dtype.itemsize), axis=-1)
    return b.sum(-1)


def encode(arr: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(arr).tobytes()).decode("ascii")


def decode(text: str, dtype) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text.encode("ascii")), dtype=dtype).copy()
