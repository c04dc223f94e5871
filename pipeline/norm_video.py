"""The record's video timeline decoded straight from the source, instead of from a re-encoded norm.mkv.

Why: re-encoding every source to H.264 cost ~5 bare decodes of CPU (x264 was 23 % of the pipeline,
benchmarks/RESULTS_pipeline.md) for a file every later stage decoded again anyway. Normalize now records the
filter chain (`norm_vf`) that puts the source on the record's timeline (frame k shown at k/FPS s from the file's
start, the shorter side capped, square pixels, yuv420p) and every decoder applies it on the fly, so frame k of a
clip read from start_s is frame start_s*FPS + k of the video. Rows without `norm_vf` (norm.mkv from
`normalize.reencode`, test media already at 25 fps CFR) are decoded as they are.
"""

from __future__ import annotations

from pathlib import Path

from . import media
from .record import FPS

# HDR (PQ or HLG transfer) to the SDR BT.709 every stage expects: linear light, BT.709 primaries, Mobius tone map
# (leaves the SDR range nearly as it is, rolls off highlights above `npl` nits), back to BT.709 gamma.
HDR_TRANSFERS = frozenset({"smpte2084", "arib-std-b67"})
TONEMAP_HEAD = "setparams=color_trc="  # the stream's tags set on every frame first: see hdr_input
TONEMAP_TAIL = (",zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,tonemap=tonemap=mobius:desat=0,"
                "zscale=t=bt709:m=bt709:r=tv,")  # fmt: skip
# the tags zscale is told as they are; anything else (unset, "unknown") reads as HDR's usual BT.2020 / limited
_PRIMARIES = frozenset({"bt2020", "bt709", "smpte431", "smpte432"})
_MATRICES = frozenset({"bt2020nc", "bt2020c", "bt709"})


def hdr_input(stream: dict) -> str:
    """The colour tags of an HDR (PQ / HLG) video stream from its ffprobe entry, as setparams options ("" for
    SDR). zscale refuses a frame whose primaries or matrix are unset ("no path between colorspaces": the whole
    source lost as corrupt_video), so the tone map sets all four on every frame first."""
    transfer = stream.get("color_transfer")
    if transfer not in HDR_TRANSFERS:
        return ""
    prim = stream.get("color_primaries") if stream.get("color_primaries") in _PRIMARIES else "bt2020"
    matrix = stream.get("color_space") if stream.get("color_space") in _MATRICES else "bt2020nc"
    rng = "pc" if stream.get("color_range") == "pc" else "tv"
    return f"{transfer}:color_primaries={prim}:colorspace={matrix}:range={rng}"


def timeline_filter(max_short_side: int, square_pixels: bool = True, interlaced: bool = False,
                    hdr: str = "") -> str:  # fmt: skip
    """ffmpeg filter chain from a source to the record's timeline (autorotation happens before it, so iw/ih are
    the displayed size); -2 keeps the aspect with an even other side.

    `square_pixels=False` (the source's sample aspect ratio is not 1: DVD/broadcast SD, HDV, a squeezed upload)
    first resamples the width to iw*sar, so the face keeps its shape; without it, setsar=1 alone would keep
    the stored pixels and squeeze every face (a 2:1 SAR read as extreme_pose). `interlaced=True` (the stream
    says its fields are interleaved: SD/HD broadcast) deinterlaces first (bwdif, one frame per frame), so no
    crop carries combing on motion. `hdr` (hdr_input of a PQ or HLG stream: phone and HDR uploads) tone-maps to
    SDR BT.709 after the downsize: read as BT.709 as it is, such a picture is grey and flat (a real clip made PQ
    read 31.7 grey levels off its SDR original, 6.0 tone-mapped). SDR square progressive sources get
    the chain without any of these steps, so their timeline (and every stored norm_vf) is unchanged."""
    m = max_short_side
    scale = f"scale='if(lt(iw,ih),trunc(min(iw,{m})/2)*2,-2)':'if(lt(iw,ih),-2,trunc(min(ih,{m})/2)*2)'"
    unsqueeze = "" if square_pixels else "scale='trunc(iw*sar/2)*2':ih:flags=bicubic,setsar=1,"
    deinterlace = "bwdif=mode=send_frame:parity=auto:deint=interlaced," if interlaced else ""
    tonemap = f"{TONEMAP_HEAD}{hdr}{TONEMAP_TAIL}" if hdr else ""
    return f"{deinterlace}fps={FPS}:start_time=0,{unsqueeze}{scale}:flags=bicubic,setsar=1,{tonemap}format=yuv420p"


def then(timeline_vf: str | None, *vf: str | None) -> str | None:
    """A timeline filter followed by a decoder's own steps (a trim, a downsize, a crop). An HDR timeline's tone map
    moves after them: it works in float on every pixel (7.5 CPU-s per 10 s of 1080x1920 on the timeline itself),
    so after the shots stage's downsize or the faces stage's crop it costs a fraction of that."""
    tail = [p for p in vf if p]
    if timeline_vf and f",{TONEMAP_HEAD}" in timeline_vf:  # the tone map and the final format=yuv420p
        head, _, tonemap = timeline_vf.partition(f",{TONEMAP_HEAD}")
        return ",".join([head, *tail, TONEMAP_HEAD + tonemap])
    return ",".join([p for p in (timeline_vf, *tail) if p]) or None


def chain(row: dict, vf: str | None = None) -> str | None:
    """The row's timeline filter (if any) followed by `vf`."""
    return then(row.get("norm_vf") or None, vf)


def first_frame_size(path: str | Path, vf: str, timeout: float = 120.0) -> tuple[int, int]:
    """(w, h) of the first frame `vf` makes of the file's first real video stream: decodes one frame (PPM header).
    Raises MediaError when no frame decodes."""
    out = media.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(path), "-map", "0:V:0",
                     "-an", "-vf", vf, "-frames:v", "1", "-f", "image2pipe", "-c:v", "ppm", "-"], timeout=timeout)
    head = out[:64].split()
    if len(head) < 3 or head[0] != b"P6":
        raise media.MediaError(f"{path}: no frame decodes")
    return int(head[1]), int(head[2])


# Frames of the timeline decoded before a clip's start and thrown away: an input seek to start_s discards source
# frames before it, though the timeline's first frame is the source frame shown *at* start_s, often earlier.
PREROLL_FRAMES = 5  # 0.2 s: enough for sources down to 5 fps


def seek(timeline_vf: str | None, start_s: float) -> tuple[float, str | None]:
    """(input seek s, filter chain) that decode the timeline from start_s exactly as a decode from 0 would."""
    if not timeline_vf:
        return start_s, None
    k0 = round(start_s * FPS)
    k = min(PREROLL_FRAMES, k0)
    return (k0 - k) / FPS, then(timeline_vf, f"trim=start_frame={k},setpts=PTS-STARTPTS")
