"""What the downloaded codec costs: the same footage as H.264, VP9 and AV1 (the three a video site offers at one
size), through a bare decode and through the in-process pipeline.

    OMP_NUM_THREADS=1 python benchmarks/bench_source_codecs.py --cache /tmp/codecs

Why: `download.format_sort` asks yt-dlp for H.264 among equal sizes. The pipeline decodes each source three
times (shots, faces pass 1, faces pass 2), so the decoder's cost is paid three times per minute of footage, and
only H.264 carries the block quantiser that `quality.max_source_qp` reads. The copies are made once (cached)
from real 1080x1920 clips at settings near a video site's own (x264 medium CRF 23, libvpx-vp9 CRF 32, SVT-AV1
preset 8 CRF 35; 2-5 s GOPs; AAC audio in each, so only the video codec differs).
Prints a markdown table (paste into RESULTS_pipeline.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_pipeline import Clock, footage, overlapped  # noqa: E402
from benchmarks.kit.faultkit import manifest  # noqa: E402
from pipeline import media  # noqa: E402
from pipeline.config import LANGS, load_config  # noqa: E402
from pipeline.manifest import load_manifests  # noqa: E402
from pipeline.source_qp import of_source  # noqa: E402

SAMPLE = ROOT / "manifests" / "sample"
MEDIA = ROOT.parent / "shared" / "media" / "video_av"
AUDIO_KBPS = 128  # the file's bitrate less this is the video's
SOURCES = ("latentsync_demo2_pt_20s", "latentsync_demo3_en_20s")  # 1080x1920, real speech, one face each
CODECS = {
    "h264": ["-c:v", "libx264", "-preset", "medium", "-crf", "23", "-g", "60"],
    "vp9": ["-c:v", "libvpx-vp9", "-crf", "32", "-b:v", "0", "-deadline", "good", "-cpu-used", "5", "-row-mt", "1",
            "-g", "120"],
    "av1": ["-c:v", "libsvtav1", "-preset", "8", "-crf", "35", "-g", "120"],
}  # fmt: skip


def make_copies(cache: Path) -> dict[str, list[Path]]:
    """codec -> its copies of SOURCES (made once; a half-written copy is never reused)."""
    out: dict[str, list[Path]] = {}
    for codec, args in CODECS.items():
        for name in SOURCES:
            dst = cache / f"{name}_{codec}.mkv"
            if not dst.is_file():
                tmp = dst.with_suffix(".part.mkv")
                media.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(MEDIA / f"{name}.mp4"), *args,
                           "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", f"{AUDIO_KBPS}k", str(tmp)], timeout=3600)  # fmt: skip
                tmp.replace(dst)
            out.setdefault(codec, []).append(dst)
    return out


def decode_cpu(paths: list[Path], threads: int) -> float:
    """CPU seconds for ffmpeg to decode the video (only) of every path and throw the frames away."""
    with Clock() as c:
        for p in paths:
            media.run(["ffmpeg", "-nostdin", "-v", "error", "-threads", str(threads), "-i", str(p), "-an", "-f",
                       "null", "-"], timeout=1800)  # fmt: skip
    return c.cpu


def pipeline_run(paths: list[Path], work: Path) -> tuple[float, float, int]:
    """(wall s, CPU s, kept) of the overlapped in-process graph on the copies: each in its language's manifest,
    with the offline sample's thresholds (manifests/sample/config.yaml), as `pipeline.build` runs the sample."""
    man = work / "manifests"
    man.mkdir(parents=True, exist_ok=True)
    shutil.copy(SAMPLE / "config.yaml", man / "config.yaml")
    langs = sorted({lang_of(x) for x in paths})
    for lang in langs:
        manifest(man, {x.stem: str(x) for x in paths if lang_of(x) == lang}, lang)
    cfg = load_config(str(man / "config.yaml"), trusted=False, out=str(work / "out"), manifests=str(man),
                      langs=langs, limit=0)  # fmt: skip
    seeds = load_manifests(man, langs)
    assert len(seeds) == len(paths)
    return overlapped(cfg, seeds)


def lang_of(path: Path) -> str:
    """The language a shared clip's name states (latentsync_demo2_pt_20s -> pt)."""
    return next(part for part in path.stem.split("_") if part in LANGS)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "bench_source_codecs"))
    p.add_argument("--no-pipeline", action="store_true", help="decode rows only (the pipeline takes ~1 min a codec)")
    args = p.parse_args()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    copies = make_copies(cache)
    print(f"# source codecs: {len(SOURCES)} clips of 1080x1920 per codec ({', '.join(SOURCES)})")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load avg {os.getloadavg()[0]:.1f}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")  # fmt: skip
    if not args.no_pipeline:  # warm-up, not counted: imports, model files and first calls
        pipeline_run(copies["h264"][:1], Path(tempfile.mkdtemp(prefix="codecs_warm_")))
    print("| codec | video Mb/s | source_qp | decode CPU-s per min, 1 thread | decode CPU-s per min, ffmpeg's "
          "threads | pipeline CPU-s per min (overlapped) | pipeline realtime | kept |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    for codec, paths in copies.items():
        secs = footage([{"source": str(x)} for x in paths])
        per_min = 60.0 / secs
        mbps = 8 * sum(x.stat().st_size for x in paths) / secs / 1e6 - AUDIO_KBPS / 1e3
        qps = [of_source(x, media.probe(x)["duration_s"]).get("source_qp") for x in paths]
        qp = "/".join(f"{q:.1f}" for q in qps) if all(q is not None for q in qps) else "none"
        d1, dn = decode_cpu(paths, 1) * per_min, decode_cpu(paths, 0) * per_min
        if args.no_pipeline:
            print(f"| {codec} | {mbps:.2f} | {qp} | {d1:.1f} | {dn:.1f} | - | - | - |")
            continue
        wall, cpu, kept = pipeline_run(paths, Path(tempfile.mkdtemp(prefix=f"codecs_{codec}_")))
        print(f"| {codec} | {mbps:.2f} | {qp} | {d1:.1f} | {dn:.1f} | {cpu * per_min:.1f} | {secs / wall:.2f}x | "
              f"{kept} |")


if __name__ == "__main__":
    main()
