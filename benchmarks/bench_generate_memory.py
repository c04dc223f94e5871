"""`python -m mcdm_model.generate` peak memory and time for 1, 3 and 10 minutes of speech (streaming CLI).

    python benchmarks/bench_generate_memory.py                     # MCDM-T (64²), 1 sampler step, CPU
    python benchmarks/bench_generate_memory.py --minutes 1 10 --steps 4 --checkpoint runs/x/last.pt

Each length runs the real CLI (portrait crop, streamed audio decode, clip-by-clip generation, frames piped to
ffmpeg) in a fresh process; the speech is real (../shared/media apollo11_89s.mp3, looped by ffmpeg to the length).
Reported: the generating process's peak RSS (VmHWM), the ffmpeg encoder's own peak (its VmHWM read just before
it finishes), wall / cpu seconds, frames written. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("TFW_SHARED_MEDIA", ROOT.parent / "shared" / "media"))
CHILD = """
import json, sys, time
from pathlib import Path
from mcdm_model import generate, video_io
def hwm(pid="self"):
    return next(int(l.split()[1]) for l in Path(f"/proc/{pid}/status").read_text().splitlines() if l.startswith("VmHWM"))
peak = {}
close = video_io.VideoSink.close
def spy(self):  # the encoder's own peak, read just before it finishes
    peak["ffmpeg"] = hwm(self.proc.pid)
    return close(self)
video_io.VideoSink.close = spy
t0, c0 = time.perf_counter(), time.process_time()
generate.main(sys.argv[1:])
print("RESULT " + json.dumps({"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
      "peak_rss_mb": hwm() / 1024, "ffmpeg_peak_rss_mb": peak["ffmpeg"] / 1024}))
"""


def speech(minutes: float, work: Path) -> Path:
    out = work / f"speech_{minutes:g}min.wav"
    if not out.exists():
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-stream_loop", "-1", "-i",
                        str(MEDIA / "audio" / "en" / "apollo11_89s.mp3"), "-t", str(minutes * 60), "-ac", "1", "-ar",
                        "16000", str(out)], check=True)
    return out


def run(minutes: float, a: argparse.Namespace) -> dict:
    out = a.work / f"gen_{minutes:g}min.mp4"
    args = ["--image", str(MEDIA / "faces" / "facenet_angelina_jolie.jpg"), "--audio", str(speech(minutes, a.work)),
            "--out", str(out), "--steps", str(a.steps), "--device", "cpu", "--models-dir", str(a.work / "nomodels")]
    args += ["--checkpoint", a.checkpoint] if a.checkpoint else ["--size", a.size]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, env=env, cwd=ROOT)
    line = next((x for x in p.stdout.splitlines() if x.startswith("RESULT ")), None)
    if p.returncode or line is None:
        raise RuntimeError(p.stderr[-2000:])
    res = json.loads(line[7:])
    probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                            "stream=nb_read_frames", "-of", "csv=p=0", str(out)], capture_output=True, text=True)
    return {"minutes": minutes, "frames": int(probe.stdout.strip() or 0), **res}


def small_checkpoint(a: argparse.Namespace) -> Path:
    """A random-init checkpoint in train.py's format (config + state dict) at a reduced size."""
    import torch

    sys.path.insert(0, str(ROOT))
    from mcdm_model.config import model_config, to_dict
    from mcdm_model.model import MCDM

    over = {"image_size": a.image_size, "models_dir": str(a.work / "nomodels")}
    if a.frames:
        over["present_frames"] = a.frames
    torch.manual_seed(0)
    model = MCDM(model_config(a.size, **over))
    path = a.work / f"random_{a.size}_{a.image_size}_{a.frames}.pt"
    torch.save({"model": model.state_dict(), "ema": None, "model_config": to_dict(model.cfg, portable=True)}, path)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, nargs="+", default=[1, 3, 10])
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--size", default="MCDM-T")
    p.add_argument("--checkpoint", help="train.py checkpoint (default: a random --size model, warned by the CLI)")
    p.add_argument("--image-size", type=int, help="with no checkpoint: write a random-init checkpoint of --size at "
                   "this image size (and --frames per clip) and use it, to make long runs cheaper on a CPU")
    p.add_argument("--frames", type=int, help="present_frames of that checkpoint")
    p.add_argument("--work", type=Path, default=Path("/tmp/mcdm-genmem"))
    a = p.parse_args()
    (a.work / "nomodels").mkdir(parents=True, exist_ok=True)
    if a.image_size and not a.checkpoint:
        a.checkpoint = str(small_checkpoint(a))
    rows = []
    for m in a.minutes:  # each row is kept as soon as it is measured
        rows.append(run(m, a))
        (a.work / "result.json").write_text(json.dumps(rows, indent=1))
    base = rows[0]["peak_rss_mb"]
    print("| audio min | frames | wall s | cpu s | cpu s / min | peak RSS MB | x first | ffmpeg peak MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['minutes']:g} | {r['frames']} | {r['wall_s']:.0f} | {r['cpu_s']:.0f} | {r['cpu_s'] / r['minutes']:.1f} "
              f"| {r['peak_rss_mb']:.1f} | {r['peak_rss_mb'] / base:.3f} | {r['ffmpeg_peak_rss_mb']:.1f} |")


if __name__ == "__main__":
    t = time.time()
    main()
    print(f"total {time.time() - t:.0f} s")
