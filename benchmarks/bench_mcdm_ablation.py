"""MCDM ablation on CPU: full model vs no archived prior vs no memory vs full attention, 60 s per held-out audio.

    python benchmarks/bench_mcdm_ablation.py --work /tmp/mcdm-ablation            # all phases, resumable
    python benchmarks/bench_mcdm_ablation.py --work /tmp/mcdm-ablation --phase eval

Phases (each cached in --work, so a rerun continues where it stopped):
1. data: shards (64² crops, dlib-68 + solvePnP tracks) from the real talking clips in ../shared/media/video_av.
2. base: stages 1 and 2 of MCDM-T trained once (`python -m mcdm_model.train`), shared by every variant.
3. variants: stage 3 fine-tuned from the base (`--init`) with each variant's switch, same steps and seed:
   full (memory temporal attention + archived prior), no_archived (use_archived=false), no_memory
   (temporal_mode=none: attention within the clip only), full_attention (temporal_mode=full: keeps every frame).
4. eval: per variant, in a fresh subprocess, 60 s generated from a trained identity's frame driven by held-out
   speech (not in the training shards); per 10 s: identity similarity to the reference, face rate, landmark
   distance to the reference's landmarks, SSIM to the reference frame, LSE-C/D (pipeline's sync scorer), plus the
   process's peak RSS and time per clip. Writes ablation.json, prints the table, and draws the strip
   (frames at 0/10/30/60 s, one row per variant) to --strip.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MEDIA = Path(os.environ.get("TFW_SHARED_MEDIA", ROOT.parent / "shared" / "media"))
TRAIN_CLIPS = [  # (file, start s, end s): trained identities
    ("hdtf_WDA_KatieHill_en_8s.mp4", 0.0, 4.0), ("hdtf_WDA_KatieHill_en_8s.mp4", 4.0, 8.0),
    ("hdtf_WDA_AOC_en_8s.mp4", 0.0, 4.0), ("hdtf_WDA_AOC_en_8s.mp4", 4.0, 8.0),
    ("vexpress_AOC_en_4s.mp4", 0.0, 4.4), ("liveportrait_d11_child_en.mp4", 0.0, 4.5),
    ("liveportrait_d11_child_en.mp4", 4.5, 9.0), ("retalking_face2_en.mp4", 0.0, 5.0),
    ("retalking_face3_en.mp4", 0.0, 5.0), ("retalking_face5_en.mp4", 0.0, 4.8),
]  # fmt: skip
REF = ("hdtf_WDA_KatieHill_en_8s.mp4", 0.0)  # the identity whose frame drives generation
HELDOUT = "audio/en/apollo11_89s.mp3"  # speech never seen in training
VARIANTS = {
    "full": {},
    "no_archived": {"use_archived": False},
    "no_memory": {"temporal_mode": "none"},
    "full_attention": {"temporal_mode": "full"},
}
STRIP_S = (0, 10, 30, 60)


def sh(args: list[str], log: Path) -> None:
    with open(log, "a") as fh:
        subprocess.run(args, check=True, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})


def train_cmd(a: argparse.Namespace, out: Path, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "mcdm_model.train", "--shards", str(a.work / "shards"), "--out", str(out),
           "--models-dir", str(a.work / "nomodels"), "--batch-size", "4", "--num-workers", "1",
           "--log-every", "25", "--ckpt-every", "100", *extra]
    return cmd + (["--resume"] if (out / "last.pt").exists() else [])


def train(a: argparse.Namespace, out: Path, *extra: str) -> None:
    if not (out / "done").exists():
        sh(train_cmd(a, out, *extra), a.work / "train.log")
        (out / "done").write_text("ok")


def phase_data(a: argparse.Namespace) -> None:
    if list((a.work / "shards").rglob("*.tar")):
        return
    from benchmarks.kit.fixture_shards import write_shards

    write_shards(a.work, [(MEDIA / "video_av" / f, s, e) for f, s, e in TRAIN_CLIPS], crop_size=64, per_shard=2)


def phase_train(a: argparse.Namespace) -> None:
    (a.work / "nomodels").mkdir(exist_ok=True)
    train(a, a.work / "base", "--stage", "1", "--steps", str(a.steps1), "--lr", "1e-3")
    train(a, a.work / "base2", "--stage", "2", "--steps", str(a.steps2), "--lr", "1e-3",
          "--init", str(a.work / "base" / "last.pt"))
    procs = {}  # the variants' stage 3 runs side by side, from the same base, same steps and seed
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for name, over in VARIANTS.items():
        out = a.work / name
        if (out / "done").exists():
            continue
        yml = a.work / f"{name}.yaml"
        yml.write_text(json.dumps({"model": over}))
        cmd = train_cmd(a, out, "--stage", "3", "--steps", str(a.steps3), "--lr", "5e-4", "--config", str(yml),
                        "--init", str(a.work / "base2" / "last.pt"))
        procs[name] = subprocess.Popen(cmd, stdout=open(a.work / f"train-{name}.log", "a"), stderr=subprocess.STDOUT,
                                       cwd=ROOT, env=env)
    for name, proc in procs.items():
        if proc.wait() != 0:
            raise RuntimeError(f"stage 3 of {name} failed: see {a.work / f'train-{name}.log'}")
        (a.work / name / "done").write_text("ok")


def phase_eval(a: argparse.Namespace) -> dict:
    """One fresh process per variant, run side by side (each measures its own peak RSS and time per clip)."""
    res_path = a.work / "ablation.json"
    res = json.loads(res_path.read_text()) if res_path.exists() else {}
    todo = [n for n in VARIANTS if n not in res]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    with open(a.work / "eval.log", "a") as log:
        procs = {n: subprocess.Popen([sys.executable, __file__, "--work", str(a.work), "--phase", "one", "--variant", n,
                                      "--seconds", str(a.seconds), "--steps", str(a.sample_steps)],
                                     stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env) for n in todo}
        for n, proc in procs.items():
            if proc.wait() != 0:
                raise RuntimeError(f"variant {n} failed: see {a.work / 'eval.log'}")
            res[n] = json.loads((a.work / f"eval-{n}.json").read_text())
    res_path.write_text(json.dumps({n: res[n] for n in VARIANTS if n in res}, indent=1))
    return res


def eval_one(a: argparse.Namespace) -> None:
    """One variant in this (fresh) process: generate, measure peak RSS and time, score per 10 s bin."""
    import torch

    from benchmarks.kit.drift import score_bins
    from mcdm_model.generate import iter_clips
    from mcdm_model.model import MCDM
    from mcdm_model.motion import motion_tokens
    from pipeline.media import read_audio, read_frames

    torch.set_num_threads(1)
    model = MCDM.load_checkpoint(a.work / a.variant / "last.pt")
    size = model.cfg.image_size
    ref = read_frames(MEDIA / "video_av" / REF[0], REF[1], REF[1] + 0.04, size=(size, size))[0]
    import cv2

    from mcdm_model.metrics_face import FaceAnalyzer

    face = FaceAnalyzer()
    lm = face.landmarks(cv2.resize(ref, (256, 256), interpolation=cv2.INTER_CUBIC)[None])[0]  # tokens: scale-free
    rm = motion_tokens(lm[None], np.zeros((1, 3), np.float32))[0] if np.isfinite(lm).all() else None
    audio = read_audio(MEDIA / HELDOUT, 0.0, float(a.seconds))
    raw = a.work / f"frames-{a.variant}.u8"  # frames go to disk, so the peak RSS is the generator's own
    Path("/proc/self/clear_refs").write_text("5")
    t0, times, n, early = time.perf_counter(), [], 0, None
    hwm = lambda: next(int(x.split()[1]) for x in Path("/proc/self/status").read_text().splitlines()  # noqa: E731
                       if x.startswith("VmHWM"))
    with open(raw, "wb") as fh:
        for clip in iter_clips(model, ref, audio, rm, steps=a.steps, seed=0, progress=False):
            fh.write(clip.tobytes())
            n += 1
            times.append(time.perf_counter())
            if n == 25:  # 4 s in: the peak so far, to compare with the peak after 60 s
                early = hwm()
    gen_s = time.perf_counter() - t0
    peak = hwm()
    video = np.fromfile(raw, np.uint8).reshape(-1, size, size, 3)
    fps = model.cfg.fps
    strip = np.stack([video[min(len(video) - 1, int(s * fps))] for s in STRIP_S])
    np.save(a.work / f"strip-{a.variant}.npy", strip)
    half = len(times) // 2
    out = {"seconds": len(video) / fps, "clips": n, "gen_s": gen_s, "peak_rss_mb": peak / 1024,
           "peak_rss_mb_at_4s": (early or peak) / 1024,
           "s_per_clip_first_half": (times[half] - t0) / max(half, 1),
           "s_per_clip_second_half": (times[-1] - times[half]) / max(len(times) - half - 1, 1),
           "bins": score_bins(video, audio, ref, fps=fps, bin_s=10.0, face=face, metric_size=160, id_stride=5)}
    (a.work / f"eval-{a.variant}.json").write_text(json.dumps(out, indent=1))


def draw_strip(a: argparse.Namespace, path: Path) -> None:
    import cv2

    rows = []
    for name in VARIANTS:
        strip = np.load(a.work / f"strip-{name}.npy")
        row = np.concatenate([cv2.resize(f, (96, 96), interpolation=cv2.INTER_CUBIC) for f in strip], axis=1)
        label = np.full((96, 130, 3), 255, np.uint8)
        cv2.putText(label, name, (4, 52), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(np.concatenate([label, row], axis=1))
    head = np.full((20, rows[0].shape[1], 3), 255, np.uint8)
    for i, s in enumerate(STRIP_S):
        cv2.putText(head, f"{s} s", (130 + 96 * i + 30, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    img = np.concatenate([head, *rows])
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])


def table(res: dict) -> str:
    keys = ("identity_sim", "face_rate", "landmark_dist", "ssim_ref", "lse_c", "lse_d")
    lines = ["| variant | t (s) | " + " | ".join(keys) + " | peak RSS MB (at 4 s, 60 s) | s/clip (1st, 2nd half) |",
             "|---|---:|" + "---:|" * len(keys) + "---|---|"]
    for name, r in res.items():
        for b in r["bins"]:
            vals = " | ".join("—" if b.get(k) is None else f"{b[k]:.3f}" for k in keys)
            lines.append(f"| {name} | {b['t_start_s']:.0f}-{b['t_start_s'] + 10:.0f} | {vals} | "
                         f"{r['peak_rss_mb_at_4s']:.1f}, {r['peak_rss_mb']:.1f} | "
                         f"{r['s_per_clip_first_half']:.3f}, {r['s_per_clip_second_half']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/mcdm-ablation"))
    p.add_argument("--phase", default="all", choices=["all", "data", "train", "eval", "one", "report"])
    p.add_argument("--variant", choices=list(VARIANTS))
    p.add_argument("--steps1", type=int, default=1500, help="stage-1 steps of the shared base")
    p.add_argument("--steps2", type=int, default=800, help="stage-2 steps of the shared base")
    p.add_argument("--steps3", type=int, default=400, help="stage-3 steps of each variant")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--sample-steps", "--steps", dest="sample_steps", type=int, default=3, help="DDIM steps per clip")
    p.add_argument("--strip", type=Path, default=ROOT / "benchmarks" / "mcdm_ablation_strip.png")
    a = p.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    if a.phase == "one":
        a.steps = a.sample_steps
        return eval_one(a)
    if a.phase in ("all", "data"):
        phase_data(a)
    if a.phase in ("all", "train"):
        phase_train(a)
    if a.phase in ("all", "eval", "report"):
        res = phase_eval(a)
        draw_strip(a, a.strip)
        print(table(res))


if __name__ == "__main__":
    main()
