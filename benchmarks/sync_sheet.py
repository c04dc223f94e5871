"""Sync inspection sheet: a per-frame mouth strip over frame-aligned RMS bars and a spectrogram, for reading a
clip's A/V offset by eye from phonetic events (sealed lips during /b/ /p/ /m/ closures, a burst when they part,
no loud vowel behind sealed lips). This is how the offsets in benchmarks/kit/sync_media.py SOURCE_OFFSETS were
read; see benchmarks/RESULTS_sync.md, section D.

Usage: python benchmarks/sync_sheet.py --clip hdtf_WDA_AOC_en_8s.mp4 --start 50 --frames 25 [--shift 2] [--words]
  --shift K  show the audio moved K frames earlier (what re-aligning a source with offset K does)
  --words    print Whisper word times in frames, to find the bilabials (package-shipped Whisper base)
Writes <cache>/sheet_<clip>_<start>_<shift>.png (or --out).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a clone

from benchmarks.kit import sync_media  # noqa: E402
from benchmarks.kit.cache import cache_root  # noqa: E402
from pipeline import media  # noqa: E402
from pipeline.track_io import read_track  # noqa: E402

HOP = sync_media.HOP


def mouth_tile(frame: np.ndarray, lips: np.ndarray, size: tuple[int, int] = (120, 84)) -> np.ndarray:
    """The mouth of one frame, cut around its own 20 lip landmarks (so head motion does not move it)."""
    import cv2

    c, w = lips.mean(0), max(float(np.ptp(lips[:, 0])) * 1.5, 30.0)
    x0, y0 = int(max(c[0] - w / 2, 0)), int(max(c[1] - w * 0.35, 0))
    return cv2.resize(frame[y0 : y0 + int(w * 0.7), x0 : x0 + int(w)], size)


def render(row: dict, start: int, n: int, shift: int, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.signal import spectrogram

    frames = media.read_frames(row["norm_path"])
    track = read_track(row["track_path"])
    audio = sync_media.shift_audio(media.read_audio(row["audio_path"]), -shift)
    n = min(n, len(frames) - start)
    idx = range(start, start + n)
    strip = np.concatenate([mouth_tile(frames[i], track["landmarks"][i, 48:68]) for i in idx], 1)
    fig, ax = plt.subplots(3, 1, figsize=(n, 5.5), gridspec_kw={"height_ratios": [2, 1, 2]})
    ax[0].imshow(strip, extent=(start - 0.5, start + n - 0.5, 0, 1), aspect="auto")
    ax[0].set_yticks([])
    rms = [20 * np.log10(np.sqrt(np.mean(audio[i * HOP : (i + 1) * HOP] ** 2)) + 1e-5) for i in idx]
    ax[1].bar(list(idx), np.array(rms) + 80, color="b", alpha=0.5, label="RMS dB + 80")
    ax[1].plot(list(idx), track["mouth_open"][start : start + n] * 300, "r.-", label="mouth_open x 300")
    ax[1].legend(fontsize=7, loc="upper left")
    f, t, s = spectrogram(audio[start * HOP : (start + n) * HOP], 16000, nperseg=256, noverlap=224)
    ax[2].pcolormesh(start - 0.5 + t * 25, f[:80], 10 * np.log10(s[:80] + 1e-10), shading="auto")
    for a in ax:
        a.set_xlim(start - 0.5, start + n - 0.5)
        for i in idx:
            a.axvline(i - 0.5, color="gray" if a is ax[1] else "w", lw=0.4)
    ax[1].set_xticks(list(idx))
    ax[2].set_xticks(list(idx))
    ax[2].set_ylabel("Hz")
    fig.suptitle(f"{row['key']}  frames {start}-{start + n - 1}  audio moved {shift} frames earlier", fontsize=9)
    plt.tight_layout()
    plt.savefig(out, dpi=55)
    plt.close(fig)
    return out


def words(row: dict) -> list[tuple[float, float, str]]:
    """(start, end, word) in frames from the package-shipped Whisper base (CTranslate2)."""
    from faster_whisper import WhisperModel

    from pipeline.config import default_models_dir
    from pipeline.models.whisper import find_whisper

    _, path = find_whisper("auto", default_models_dir())
    segs, _ = WhisperModel(str(path), device="cpu", compute_type="int8").transcribe(
        row["audio_path"], word_timestamps=True
    )
    return [(w.start * 25, w.end * 25, w.word.strip()) for s in segs for w in s.words]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clip", required=True, help="a file name in <shared>/video_av")
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--frames", type=int, default=25)
    p.add_argument("--shift", type=int, default=0)
    p.add_argument("--words", action="store_true")
    p.add_argument("--cache", default=str(cache_root() / "sync"))
    p.add_argument("--shared", default=str(ROOT.parent / "shared" / "media"))
    p.add_argument("--out", default="")
    args = p.parse_args()
    [row] = sync_media.prepare(Path(args.shared), Path(args.cache), (args.clip,))
    if args.words:
        print(" | ".join(f"{w} {a:.1f}-{b:.1f}" for a, b, w in words(row)))
    out = Path(args.out or Path(args.cache) / f"sheet_{row['key']}_{args.start}_{args.shift}.png")
    print(render(row, args.start, args.frames, args.shift, out))


if __name__ == "__main__":
    main()
