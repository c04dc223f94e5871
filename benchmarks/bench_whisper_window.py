"""Whisper language ID at the clip's own length (+ 1 s, at least 10 s) vs padded to the 30-s window: CPU seconds per clip, same top-1?

    OMP_NUM_THREADS=1 python benchmarks/bench_whisper_window.py [--seconds 10] [--media ../shared/media]

Clips: the first `--seconds` of every speech file under <media>/audio/<lang>/ (the folder names the language),
read at 16 kHz. The offline default model (Whisper base, CTranslate2 int8) runs each clip alone, twice per mode
(the first pass warms up); CPU seconds are this process's (all threads), so other jobs on the machine do not
count. Prints a markdown table (paste into RESULTS_language.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.kit.cputime import process_cpu  # noqa: E402
from pipeline.config import default_models_dir  # noqa: E402
from pipeline.media import read_audio  # noqa: E402
from pipeline.models.whisper import CT2Whisper, assemble_pypi_model  # noqa: E402

AUDIO_EXT = {".wav", ".flac", ".mp3", ".ogg", ".m4a"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--media", default=str(ROOT.parent / "shared" / "media"))
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--models-dir", default=default_models_dir())
    args = p.parse_args()
    files = sorted(f for f in (Path(args.media) / "audio").glob("*/*") if f.suffix.lower() in AUDIO_EXT)
    clips = [(f.parent.name, f.name, read_audio(f, 0.0, args.seconds)) for f in files]
    model_dir = assemble_pypi_model(Path(args.models_dir) / "_pypi")
    modes = {"padded to 30 s": CT2Whisper(model_dir, "cpu", full_window=True),
             "own length + 1 s (>= 10 s)": CT2Whisper(model_dir, "cpu", full_window=False)}  # fmt: skip
    res: dict[str, list[tuple[str, float, float]]] = {m: [] for m in modes}
    for name, model in modes.items():
        for _, _, audio in clips:
            model.detect([audio])  # warm-up
            c0 = process_cpu()
            top, prob = model.detect([audio])[0][0]
            res[name].append((top, prob, process_cpu() - c0))
    print(f"# Whisper LID window: {len(clips)} clips of <= {args.seconds:g} s, load avg {os.getloadavg()[0]:.1f}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")  # fmt: skip
    print("| clip | s | folder lang | top-1 padded (p) | top-1 own length + 1 s, >= 10 s (p) | CPU s padded | CPU s own length |")
    print("|---|---:|---|---|---|---:|---:|")
    (a_name, a), (b_name, b) = res.items()
    for (lang, fname, audio), (ta, pa, ca), (tb, pb, cb) in zip(clips, a, b, strict=True):
        print(f"| {lang}/{fname} | {len(audio) / 16000:.1f} | {lang} | {ta} ({pa:.2f}) | {tb} ({pb:.2f}) | "
              f"{ca:.2f} | {cb:.2f} |")
    same = sum(x[0] == y[0] for x, y in zip(a, b, strict=True))
    right = {m: sum(t == lang for (lang, _, _), (t, _, _) in zip(clips, r, strict=True)) for m, r in res.items()}
    mean = {m: sum(c for _, _, c in r) / len(r) for m, r in res.items()}
    print(f"\nsame top-1 in both modes: {same}/{len(clips)}; top-1 = folder language: {a_name} {right[a_name]}, "
          f"{b_name} {right[b_name]}; mean CPU s per clip: {a_name} {mean[a_name]:.2f}, {b_name} {mean[b_name]:.2f} "
          f"({mean[a_name] / max(mean[b_name], 1e-9):.1f}x less)")


if __name__ == "__main__":
    main()
