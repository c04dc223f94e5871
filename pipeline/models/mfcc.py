"""MFCC with python_speech_features' conventions, in numpy/scipy (no extra dependency).

Why: Light-ASD (like TalkNet) was trained on `python_speech_features.mfcc(audio_int16, 16000, numcep=13,
winlen=0.025, winstep=0.010)`: rectangular window, pre-emphasis 0.97, 26 mel filters over a 512-point FFT,
log + orthonormal DCT-II, sinusoidal lifter 22, and c0 replaced by the log frame energy. The same numbers are
reproduced here so the checkpoint sees the features it was trained on.
"""

from __future__ import annotations

import math

import numpy as np


def hz2mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


def mel2hz(mel: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel) / 2595.0) - 1.0)


def mel_filterbank(nfilt: int = 26, nfft: int = 512, sr: int = 16000, low: float = 0.0, high: float | None = None) -> np.ndarray:
    """Triangular filters on FFT bins floor((nfft+1) * f / sr), as python_speech_features builds them."""
    high = high or sr / 2
    pts = np.linspace(hz2mel(low), hz2mel(high), nfilt + 2)
    bins = np.floor((nfft + 1) * mel2hz(pts) / sr)
    fb = np.zeros((nfilt, nfft // 2 + 1))
    for j in range(nfilt):
        a, b, c = int(bins[j]), int(bins[j + 1]), int(bins[j + 2])
        for i in range(a, b):
            fb[j, i] = (i - bins[j]) / (bins[j + 1] - bins[j])
        for i in range(b, c):
            fb[j, i] = (bins[j + 2] - i) / (bins[j + 2] - bins[j + 1])
    return fb


def frame_signal(sig: np.ndarray, frame_len: int, step: int) -> np.ndarray:
    """Frames of `frame_len` every `step`, the last one zero-padded (1 + ceil((n - len) / step) frames)."""
    n = len(sig)
    count = 1 if n <= frame_len else 1 + int(math.ceil((n - frame_len) / step))
    padded = np.concatenate([sig, np.zeros(max((count - 1) * step + frame_len - n, 0))])
    idx = np.arange(frame_len)[None, :] + step * np.arange(count)[:, None]
    return padded[idx]


def mfcc(
    signal: np.ndarray,
    sr: int = 16000,
    winlen: float = 0.025,
    winstep: float = 0.010,
    numcep: int = 13,
    nfilt: int = 26,
    nfft: int = 512,
    preemph: float = 0.97,
    ceplifter: int = 22,
) -> np.ndarray:
    """(frames, numcep) MFCC; `signal` is expected on the int16 scale like the upstream training data."""
    from scipy.fft import dct  # here: the fused sync scorer uses mel_filterbank alone (scipy.fft: ~0.7 CPU-s)

    sig = np.asarray(signal, np.float64)
    sig = np.append(sig[:1], sig[1:] - preemph * sig[:-1])
    frames = frame_signal(sig, int(round(winlen * sr)), int(round(winstep * sr)))
    pspec = np.abs(np.fft.rfft(frames, nfft)) ** 2 / nfft
    energy = pspec.sum(1)
    energy = np.where(energy == 0, np.finfo(float).eps, energy)
    feat = pspec @ mel_filterbank(nfilt, nfft, sr).T
    feat = np.where(feat == 0, np.finfo(float).eps, feat)
    ceps = dct(np.log(feat), type=2, axis=1, norm="ortho")[:, :numcep]
    lift = 1 + (ceplifter / 2.0) * np.sin(np.pi * np.arange(numcep) / ceplifter)
    ceps = ceps * lift
    ceps[:, 0] = np.log(energy)
    return ceps
