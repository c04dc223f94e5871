"""Language stage throughput (clips/s) and language-ID accuracy on the real speech in ../shared/media/audio.

    OMP_NUM_THREADS=1 python benchmarks/bench_language.py [--seconds 10] [--batch-sizes 1,8] [--media DIR]

Clips: the first `--windows` windows of `--seconds` from every file under <media>/audio/<lang>/ (the folder names
the language), cut to 16 kHz wav in a temp dir. Each clip goes through the whole stage (VAD, Whisper language
ID, checks) with the offline default model; the table prints clips/s per batch size, the share of time in VAD
vs Whisper, and per-language accuracy. Run it on an otherwise idle machine for comparable numbers.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import BuildConfig  # noqa: E402
from pipeline.media import ffmpeg, probe  # noqa: E402
from pipeline.stages.language import LanguageTagger  # noqa: E402

AUDIO_EXT = {".wav", ".flac", ".mp3", ".ogg", ".m4a"}


def make_clips(media: Path, tmp: Path, seconds: float, windows: int) -> list[dict]:
    rows = []
    for f in sorted((media / "audio").glob("*/*")):
        lang = f.parent.name
        if f.suffix not in AUDIO_EXT or len(lang) not in (2, 3):  # en_de (code-switch), maybe_tts: not labelled
            continue
        dur = probe(f)["duration_s"]
        for w in range(windows):
            start = w * seconds
            if dur - start < 2.0:
                break
            end = min(start + seconds, dur)
            out = tmp / f"{lang}_{f.stem}_{w}.wav"
            ffmpeg("-ss", f"{start}", "-t", f"{end - start}", "-i", str(f), "-ac", "1", "-ar", "16000", str(out))
            rows.append({"key": f"{lang}-{f.stem}-{w}".lower().replace(".", "_"), "video_key": f.stem,
                         "lang_expected": lang, "status": "ok", "drop_reason": "", "drop_stage": "",
                         "audio_path": str(out), "start_s": 0.0, "end_s": end - start})  # fmt: skip
    return rows


class Timed:
    """Wraps a model callable/backend and accumulates its wall time."""

    def __init__(self, inner, method: str | None = None):
        self.inner, self.method, self.seconds = inner, method, 0.0
        self.name = getattr(inner, "name", "")

    def __call__(self, *a):
        t = time.perf_counter()
        try:
            return self.inner(*a)
        finally:
            self.seconds += time.perf_counter() - t

    def detect(self, audios):
        t = time.perf_counter()
        try:
            return self.inner.detect(audios)
        finally:
            self.seconds += time.perf_counter() - t

    def transcribe(self, audio, language):
        return self.inner.transcribe(audio, language)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--media", default=os.environ.get("TFW_SHARED_MEDIA", str(Path(__file__).resolve().parents[2] / "shared" / "media")))
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--windows", type=int, default=2, help="windows per file")
    p.add_argument("--batch-sizes", default="1,8")
    p.add_argument("--models-dir", default=None)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        rows = make_clips(Path(args.media), tmp, args.seconds, args.windows)
        cfg = BuildConfig(out=str(tmp / "out"), models_dir=args.models_dir or str(tmp / "models"))
        t0 = time.perf_counter()
        base = LanguageTagger(cfg)
        load_s = time.perf_counter() - t0
        print(f"{len(rows)} clips of <= {args.seconds:g} s from {args.media}/audio; model {base.whisper.name} "
              f"loaded in {load_s:.1f} s; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}\n")
        print(f"{'batch':>5} {'clips':>5} {'wall s':>7} {'clips/s':>7} {'audio x RT':>10} {'VAD s':>6} {'Whisper s':>9}")
        results: list[dict] = []
        for bs in (int(x) for x in args.batch_sizes.split(",")):
            cfg.language.batch_size = bs
            whisper, vad = Timed(base.whisper), Timed(base.vad)
            stage = LanguageTagger(cfg, whisper=whisper, vad=vad, diarizer=base.diarizer)
            batch = [dict(r) for r in rows]
            t = time.perf_counter()
            for video in _by_video(batch):  # the clips of one source file travel together, as in the graph
                stage.run_video(video)
            wall = time.perf_counter() - t
            audio_s = sum(r["end_s"] for r in batch)
            print(f"{bs:>5} {len(batch):>5} {wall:>7.1f} {len(batch) / wall:>7.2f} {audio_s / wall:>10.1f} "
                  f"{vad.seconds:>6.1f} {whisper.seconds:>9.1f}")
            results = batch
        print(f"\n{'lang':>4} {'clips':>5} {'speech':>6} {'top-1 ok':>8} {'kept':>4}   misses among speech clips (heard, p)")
        totals = [0, 0, 0, 0]
        for lang in sorted({r["lang_expected"] for r in results}):
            mine = [r for r in results if r["lang_expected"] == lang]
            speech = [r for r in mine if r["drop_reason"] != "no_speech"]  # VAD gate passed: Whisper ran
            counts = [len(mine), len(speech), sum(r["lang"] == lang for r in speech), sum(r["status"] == "ok" for r in mine)]
            totals = [t + c for t, c in zip(totals, counts, strict=True)]
            miss = [(r["lang"], r["lang_prob"]) for r in speech if r["lang"] != lang]
            print(f"{lang:>4} {counts[0]:>5} {counts[1]:>6} {counts[2]:>8} {counts[3]:>4}   {miss or ''}")
        print(f" all {totals[0]:>5} {totals[1]:>6} {totals[2]:>8} {totals[3]:>4}   "
              f"top-1 accuracy on speech clips {totals[2] / max(totals[1], 1):.0%}")
        print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0


def _by_video(rows: list[dict]) -> list[list[dict]]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["video_key"]].append(r)
    return list(groups.values())


if __name__ == "__main__":
    sys.exit(main())
