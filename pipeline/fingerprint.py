"""Perceptual fingerprints of a clip, for finding the same footage uploaded twice (re-encoded, rescaled, trimmed).

video  a 64-bit DCT hash (pHash) of every sampled frame of the face crop (`VIDEO_FPS` per second, 32x32 grey):
       re-encoding and rescaling move a few bits, a one-second trim shifts the sequence, which matching slides over
audio  16 bits per video frame (40 ms) from the clip's audio: the signs of the band-energy differences over time and
       frequency (Haitsma & Kalker's scheme, 17 mel-spaced bands from 300 Hz to 4 kHz); a re-encode flips few bits,
       different speech about half

Why both: talking heads filmed in the same studio give near-identical crops from different footage, so the video
hash finds candidates and aligns them, and the audio (different words) tells two recordings apart. Fingerprints are
computed once per kept clip (the faces stage hashes the crop frames it encodes, `sidecar`; the `Commit` stage
reads them, or decodes the crop when they are missing) and stored in the ledger; `dedup.py` compares them.
"""

from __future__ import annotations

import base64
from pathlib import Path

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


def frame_phash(rgb: np.ndarray) -> np.uint64:
    """pHash of one RGB frame of any size, area-averaged to 32x32 grey."""
    import cv2

    thumb = cv2.resize(rgb, (HASH_SIDE, HASH_SIDE), interpolation=cv2.INTER_AREA)
    return phash(media.luma(thumb))


def hash_step(fps: float, rate: float = VIDEO_FPS) -> int:
    """Every how many frames of a `fps` video one is hashed (frames 0, step, 2 step, ...: `rate` a second)."""
    return max(1, round(fps / rate))


def sidecar(crop_path: str | Path) -> Path:
    """Where the faces stage leaves the hashes of the crop it wrote (taken from its frames before the encode)."""
    return Path(crop_path).with_suffix(".vhash.npy")


def video_hashes(path: str | Path, fps: float = VIDEO_FPS) -> np.ndarray:
    """pHash per sampled frame of a video file: (N,) uint64 (a decode of the whole file).

    The frames are thumbnailed by `frame_phash`, as the faces stage does with the crop frames it encodes: the
    two readings of one crop then differ by the codec alone (<= 0.4 of 64 bits on the test clips; ffmpeg's own
    scaler instead of OpenCV's moved 2-6 bits)."""
    info = media.probe(path)
    if not info["has_video"]:
        raise media.MediaError(f"{path}: no video stream")
    step = hash_step(float(info.get("fps") or 25.0), fps)  # frames 0, step, ...: the ones faces hashes
    frames = media.iter_frames(path, vf=f"select=not(mod(n\\,{step}))", size=(info["width"], info["height"]))
    return np.array([frame_phash(f) for f in frames], dtype=np.uint64)


def crop_hashes(crop_path: str | Path) -> np.ndarray:
    """The crop's hashes: the faces stage's sidecar when it is there (no decode), else `video_hashes` of the file."""
    side = sidecar(crop_path)
    if side.is_file():
        try:
            h = np.load(side, allow_pickle=False)
            if h.dtype == np.uint64 and h.ndim == 1 and len(h):
                return h
        except (OSError, ValueError):
            pass  # unreadable sidecar: decode the crop instead
    return video_hashes(crop_path)


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
