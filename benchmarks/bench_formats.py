"""Formats nobody tuned to: kept studio clips re-made the ways real sources arrive, through the real build, each
decision next to the original's.

    OMP_NUM_THREADS=1 python benchmarks/bench_formats.py [--clips aoc,katie] [--keep-dir DIR]

Why: the curation benchmark makes 25 fps SDR single-track files, so a filter that breaks on a phone's rotated
HLG video, a webcam's 15 fps or a file with a commentary track never shows there. Each copy here holds the same
picture and speech as a clip every gate keeps; a careful person keeps the copy too, except where the format
itself spoils the clip (a low frame rate: `low_frame_rate` by design). The build (`python -m pipeline.build
--no-ray`, the sample's thresholds) runs once over the originals and all copies; the table says per copy what
happened, its brightness / face detail / sync against the original's, and whether finalize found it a duplicate
of the original (the same picture and speech should be). Prints a markdown table (paste into RESULTS.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.kit.faultkit import build, manifest  # noqa: E402

MEDIA = ROOT.parent / "shared" / "media"
CLIPS = {"aoc": "hdtf_WDA_AOC_en_8s.mp4", "katie": "hdtf_WDA_KatieHill_en_8s.mp4"}  # 512x512 25 fps, kept
OTHER_SPEECH = MEDIA / "audio" / "zh" / "musetalk_sun_22s.wav"  # a second, unrelated speech track
_HEVC10 = ["-c:v", "libx265", "-preset", "ultrafast", "-crf", "18", "-pix_fmt", "yuv420p10le"]


def _hdr(transfer: str) -> list[str]:
    """A 10-bit BT.2020 HDR re-coding with SDR white at 100 nits (PQ as HDR10 uploads, HLG as phones record)."""
    return ["-vf", f"zscale=tin=bt709:min=bt709:pin=bt709:rin=tv:t={transfer}:m=bt2020nc:p=bt2020:r=tv:npl=100,"
            "format=yuv420p10le", *_HEVC10, "-x265-params",
            f"log-level=error:colorprim=bt2020:transfer={transfer}:colormatrix=bt2020nc", "-color_primaries",
            "bt2020", "-color_trc", transfer, "-colorspace", "bt2020nc", "-c:a", "aac"]  # fmt: skip


# name -> (container, ffmpeg output arguments after `-i clip [-i other speech]`, expected: "kept" or a reason)
FORMATS: dict[str, tuple[str, list[str], str]] = {
    # stored turned a quarter clockwise, a display matrix to turn it back (made in two steps: see make)
    "phone: rotated 90 (display matrix)": ("mp4", ["-vf", "transpose=1", "-c:v", "libx264", "-crf", "18", "-c:a",
                                                   "aac"], "kept"),
    "variable frame rate": ("mp4", ["-vf", "setpts='PTS+0.012*sin(N)/TB'", "-fps_mode", "vfr", "-c:v", "libx264",
                                    "-crf", "18", "-c:a", "aac"], "kept"),
    "H.264 10-bit": ("mp4", ["-c:v", "libx264", "-crf", "18", "-pix_fmt", "yuv420p10le", "-c:a", "aac"], "kept"),
    "50 fps": ("mp4", ["-vf", "fps=50", "-c:v", "libx264", "-crf", "18", "-c:a", "aac"], "kept"),
    "30 fps": ("mp4", ["-vf", "fps=30", "-c:v", "libx264", "-crf", "18", "-c:a", "aac"], "kept"),
    "24 fps (film)": ("mp4", ["-vf", "fps=24", "-c:v", "libx264", "-crf", "18", "-c:a", "aac"], "kept"),
    "15 fps (webcam)": ("mp4", ["-vf", "fps=15", "-c:v", "libx264", "-crf", "18", "-c:a", "aac"], "low_frame_rate"),
    "15 fps stored at 30": ("mp4", ["-vf", "fps=15,fps=30", "-c:v", "libx264", "-crf", "18", "-c:a", "aac"],
                            "low_frame_rate"),
    "anamorphic (SAR 2:1)": ("mp4", ["-vf", "scale=iw/2:ih,setsar=2", "-c:v", "libx264", "-crf", "18", "-c:a",
                                     "aac"], "kept"),
    # 50 fields a second woven into 25 interlaced frames (the clip's frames doubled first: no new moments)
    "interlaced (tff)": ("mp4", ["-vf", "fps=50,tinterlace=mode=interleave_top", "-flags", "+ildct+ilme",
                                 "-c:v", "libx264", "-x264opts", "tff=1", "-crf", "16", "-c:a", "aac"], "kept"),
    "pillarboxed 4:3 in 16:9": ("mp4", ["-vf", "pad=trunc(iw*16/9/2)*2:ih:(ow-iw)/2:0", "-c:v", "libx264", "-crf",
                                        "18", "-c:a", "aac"], "kept"),
    "HDR10 (PQ)": ("mkv", _hdr("smpte2084"), "kept"),
    "HLG (phone HDR)": ("mkv", _hdr("arib-std-b67"), "kept"),
    "VP9 + Opus (WebM)": ("webm", ["-c:v", "libvpx-vp9", "-crf", "30", "-b:v", "0", "-deadline", "good",
                                   "-cpu-used", "5", "-c:a", "libopus"], "kept"),
    "AVI: MPEG-4 part 2 + MP3": ("avi", ["-c:v", "mpeg4", "-q:v", "2", "-c:a", "libmp3lame"], "kept"),
    "44.1 kHz 5.1 audio": ("mp4", ["-c:v", "copy", "-c:a", "aac", "-ar", "44100", "-ac", "6"], "kept"),
    # the audio stream starts at 0.4 s with the speech from 0.4 s on: in sync when played by timestamps
    "audio starts 0.4 s late": ("mp4", ["-c", "copy"], "kept"),
    "second track first: other speech as commentary": ("mkv", ["-c:v", "copy", "-c:a", "aac", "-disposition:a:0",
                                                             "default+comment", "-disposition:a:1", "0"], "kept"),
}  # fmt: skip


def make(clip: Path, name: str, out: Path) -> Path:
    container, args, _ = FORMATS[name]
    dst = out / f"{clip.stem}__{_slug(name)}.{container}"
    if dst.exists():
        return dst
    base = ["ffmpeg", "-nostdin", "-v", "error", "-y"]
    if name.startswith("second track"):
        cmd = [*base, "-i", str(clip), "-i", str(OTHER_SPEECH), "-map", "0:v", "-map", "1:a", "-map", "0:a",
               "-shortest", *args, str(dst)]  # fmt: skip
    elif name.startswith("audio starts"):
        cmd = [*base, "-i", str(clip), "-ss", "0.4", "-itsoffset", "0.4", "-i", str(clip), "-map", "0:v", "-map",
               "1:a", *args, str(dst)]  # fmt: skip
    else:
        cmd = [*base, "-i", str(clip), *args, str(dst)]
    if name.startswith("phone"):  # ffmpeg writes the display matrix from the rotate tag on a stream copy only
        turned = dst.with_name(f"turned_{dst.name}")
        subprocess.run([*cmd[:-1], str(turned)], check=True, timeout=600)
        cmd = [*base, "-i", str(turned), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(dst)]
    subprocess.run(cmd, check=True, timeout=600)
    return dst


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")[:40]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", default="aoc,katie", help=f"comma list of {', '.join(CLIPS)}")
    p.add_argument("--keep-dir", default="", help="where the copies and the build go (default: a temp dir)")
    args = p.parse_args()
    work = Path(args.keep_dir or tempfile.mkdtemp(prefix="bench_formats_"))
    copies, man = work / "copies", work / "manifests"
    for d in (copies, man):
        d.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "manifests" / "sample" / "config.yaml", man / "config.yaml")  # the sample's thresholds
    sources, made = {}, {}
    for c in args.clips.split(","):
        clip = MEDIA / "video_av" / CLIPS[c]
        sources[f"{c}__original"] = str(clip)
        for name in FORMATS:
            made[c, name] = make(clip, name, copies)
            sources[f"{c}__{_slug(name)}"] = str(made[c, name])
    manifest(man, sources)
    out = work / "out"
    t0 = time.perf_counter()
    proc = build(out, man, timeout=3600)  # python -m pipeline.build --no-ray
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 3):
        raise SystemExit(f"build failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    import pandas as pd

    idx = pd.read_parquet(out / "index.parquet")
    idx["source_id"] = idx["source_id"].astype(str)
    print(f"# formats: {len(made)} copies of {args.clips} + originals, one `pipeline.build --no-ray` ({wall:.0f} s)")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load avg {os.getloadavg()[0]:.1f}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")  # fmt: skip
    print("| clip | format | expected | decision | as expected | brightness vs original | face detail px vs "
          "original | sync offset / conf | frame repeats | duplicate of |")
    print("|---|---|---|---|---|---:|---:|---:|---:|---|")
    right = 0
    for c in args.clips.split(","):
        orig = idx[idx["source_id"] == f"{c}__original"].iloc[0]
        for name in FORMATS:
            rows = idx[idx["source_id"] == f"{c}__{_slug(name)}"]
            if rows.empty:
                print(f"| {c} | {name} | {FORMATS[name][2]} | no row | no | | | | | |")
                continue
            r = rows.iloc[0]
            dup = r["drop_reason"] == "duplicate"  # of the original or of another copy: one of them is kept
            twin = str(r["drop_detail"]).split(":")[0].removeprefix("duplicate of en-") if dup else ""
            decision = "kept" if r["status"] == "ok" or dup else str(r["drop_reason"])
            ok = decision == FORMATS[name][2]
            right += ok
            print(f"| {c} | {name} | {FORMATS[name][2]} | {decision} | {'yes' if ok else '**no**'} | "
                  f"{_num(r, 'brightness')} / {_num(orig, 'brightness')} | {_num(r, 'face_detail_px')} / "
                  f"{_num(orig, 'face_detail_px')} | {_num(r, 'av_offset_frames', 0)} / {_num(r, 'sync_conf', 2)} | "
                  f"{_num(r, 'frame_repeat_ratio', 3)} | {twin} |")  # fmt: skip
    print(f"\n{right} of {len(made)} copies decided as expected (a duplicate counts as kept: finalize keeps one of "
          f"each group); originals: {', '.join(f'{c} ' + str(_decision(idx, c)) for c in args.clips.split(','))}")


def _decision(idx, clip: str) -> str:
    r = idx[idx["source_id"] == f"{clip}__original"].iloc[0]
    return "kept" if r["status"] == "ok" else str(r["drop_reason"])


def _num(row, key: str, digits: int = 1) -> str:
    v = row.get(key)
    try:
        return f"{float(v):.{digits}f}"
    except (TypeError, ValueError):
        return "-"


if __name__ == "__main__":
    main()
