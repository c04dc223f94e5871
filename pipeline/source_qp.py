"""How hard the source's own encoder quantised it: the mean H.264 block QP, read from the bitstream.

Why: the blockiness gate (pipeline/face_quality.py) reads compression from the picture, and the picture depends on
the encoder: x264 at its default preset deblocks a CRF-45 encode until no 8-px step is left, while intra codecs
(ProRes, MJPEG) keep steps on the grid at any quality (benchmarks/RESULTS.md, "The blockiness gate on other
encoders"). For H.264, the quantiser itself is in the stream: the decoder exports every block's QP
(AV_FRAME_DATA_VIDEO_ENC_PARAMS) and PyAV reads it. 0-51, +6 = twice the quantiser step; x264's CRF 18 encodes
read ~18-22, CRF 45 ~45-49 (benchmarks/RESULTS.md). High-bit-depth streams are read on the 8-bit scale (their
QP runs 6 higher per extra bit). Other codecs (HEVC, VP9, AV1, MPEG-4) give None here: their scales differ or
their decoders export nothing, and the picture measures decide alone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

FRAMES = 25  # 1 s at 25 fps: I, P and B frames in their usual mix, for ~0.1-0.4 CPU-s a video


def of_source(path: str | Path, duration_s: float) -> dict[str, float]:
    """The record's `source_qp` field for a source of `duration_s` (measured at its middle), or {} when it has
    none: what normalize adds to a row, and what test rows made without normalize add the same way."""
    qp = mean_block_qp(path, at_s=max(0.0, float(duration_s) / 2 - 0.5))
    return {} if qp is None else {"source_qp": round(qp, 2)}


def mean_block_qp(path: str | Path, at_s: float = 0.0, frames: int = FRAMES) -> float | None:
    """Mean block QP of `frames` decoded frames of the first video stream from about `at_s` (a seek lands on the
    keyframe before it); None when the stream is not H.264 or exports no QP, or the file cannot be read."""
    import av

    try:
        from av.sidedata.encparams import VideoEncParams, VideoEncParamsType
    except ImportError:  # a PyAV older than the encoding-parameters API: the picture measures decide alone
        log.warning("source QP not read: PyAV %s has no av.sidedata.encparams (pip install -U av)", av.__version__)
        return None
    try:
        with av.open(str(path)) as container:
            stream = next((s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic),
                          None)  # fmt: skip
            if stream is None or stream.codec_context.name != "h264":
                return None
            stream.codec_context.options = {"export_side_data": "venc_params"}
            if at_s > 0 and stream.time_base:
                container.seek(int(at_s / stream.time_base), stream=stream, backward=True)
            qps: list[float] = []
            for n, frame in enumerate(container.decode(stream)):
                if n >= 4 * frames + 300:  # frames without QP (or a long way to the seek point): stop, never the file
                    break
                for data in _side_data(frame):
                    if isinstance(data, VideoEncParams) and data.codec_type == VideoEncParamsType.H264 and data.nb_blocks:
                        bits = frame.format.components[0].bits  # QpBdOffset: 6 per bit over 8
                        qps.append(float(np.mean(data.qp_map())) - 6 * max(0, bits - 8))
                if len(qps) >= frames:
                    break
    except (av.FFmpegError, OSError, ValueError) as exc:  # unreadable here: the picture measures still decide
        log.warning("source QP of %s not read: %s", path, exc)
        return None
    return float(np.mean(qps)) if qps else None


def _side_data(frame) -> Iterable:
    """A frame's side-data objects: PyAV 18 made `frame.side_data` a mapping (iterating it gives the types),
    earlier versions iterate the objects themselves."""
    data = frame.side_data
    return data.values() if isinstance(data, Mapping) else data
