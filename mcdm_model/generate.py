"""Portrait + speech -> talking-face mp4 with MCDM, generated clip by clip.

    python -m mcdm_model.generate --image portrait.jpg --audio speech.wav --checkpoint runs/mcdm/last.pt --out out.mp4

Each clip of `present_frames` frames is conditioned on the reference image, the archived-clip prior (last frames
of the previous clip) and the temporal-attention memory carried in a ClipMemory, so every clip costs the same
however long the video gets. `--size MCDM-T` without a checkpoint runs a randomly initialised model (noise, but it
exercises the whole path); it is loudly warned. The mp4 is muxed with the input audio by pipeline.media.write_video.
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from mcdm_model.config import SIZES, model_config
from mcdm_model.model import MCDM, ClipMemory
from mcdm_model.motion import motion_tokens
from pipeline.common import media

log = logging.getLogger(__name__)


def load_model(checkpoint: str | None, size: str = "MCDM-T", device: str = "cpu", models_dir: str | None = None) -> MCDM:
    """A trained model from a train.py checkpoint, or (warned) a random one of `size` when none is given."""
    if checkpoint:
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"checkpoint not found: {checkpoint} (train one with python -m mcdm_model.train)")
        return MCDM.load_checkpoint(checkpoint, map_location=device).to(device).eval()
    log.warning("NO CHECKPOINT: generating with a randomly initialised %s; the video will be noise", size)
    overrides = {"models_dir": models_dir} if models_dir else {}
    torch.manual_seed(0)
    return MCDM(model_config(size, **overrides)).to(device).eval()


def face_crop(image: np.ndarray, size: int, padding: float = 0.4, face=None) -> tuple[np.ndarray, np.ndarray | None]:
    """Square crop around the largest face (box grown by `padding` per side, like the pipeline's crops), resized to
    size²; returns (crop uint8, 68 landmarks in crop px or None). Centre crop, warned, when no face is found."""
    h, w = image.shape[:2]
    box = face.detect(image) if face is not None else None
    if box is None:
        log.warning("no face found in the portrait: using a centre crop")
        side = min(h, w)
        x1, y1 = (w - side) // 2, (h - side) // 2
    else:
        x0, t, r, b = box
        side = int(max(r - x0, b - t) * (1 + 2 * padding))
        x1, y1 = (x0 + r) // 2 - side // 2, (t + b) // 2 - side // 2
    pad = max(0, -x1, -y1, x1 + side - w, y1 + side - h)
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else image
    crop = padded[y1 + pad : y1 + pad + side, x1 + pad : x1 + pad + side]
    crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_CUBIC)
    lm = face.landmarks(crop[None])[0] if face is not None else None
    return crop, (lm if lm is not None and np.isfinite(lm).all() else None)


def reference_motion(landmarks: np.ndarray | None) -> np.ndarray | None:
    """(105,) motion tokens of the reference from its 68 landmarks (pose 0: a frontal portrait is assumed)."""
    if landmarks is None:
        return None
    return motion_tokens(landmarks[None], np.zeros((1, 3), np.float32))[0]


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(F, 3, H, W) in [-1, 1] -> (F, H, W, 3) uint8."""
    x = ((frames.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def iter_clips(model: MCDM, ref_image: np.ndarray, audio: np.ndarray, ref_motion: np.ndarray | None = None,
               steps: int = 25, seed: int = 0, progress: bool = True) -> Iterator[np.ndarray]:
    """Yield generated clips (F, S, S, 3) uint8 for 16 kHz `audio`; the last clip is cut to the audio's length."""
    cfg = model.cfg
    dev = next(model.parameters()).device
    spf, f = cfg.samples_per_frame, cfg.present_frames
    n_frames = max(1, len(audio) // spf)
    n_clips = math.ceil(n_frames / f)
    padded = np.zeros(n_clips * f * spf, np.float32)
    padded[: n_frames * spf] = audio[: n_frames * spf]
    img = cv2.resize(ref_image, (cfg.image_size, cfg.image_size), interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float().div(127.5).sub(1).to(dev)
    ref = model.encode_reference(x)
    rm = None if ref_motion is None else torch.from_numpy(np.asarray(ref_motion, np.float32))[None].to(dev)
    gen = torch.Generator(device=dev).manual_seed(seed)
    memory: ClipMemory | None = None
    for i in tqdm(range(n_clips), desc="clips", unit="clip", disable=not progress):
        chunk = torch.from_numpy(padded[i * f * spf : (i + 1) * f * spf])[None].to(dev)
        frames, memory = model.generate_clip(ref, None, chunk, memory, ref_motion=rm, steps=steps, generator=gen)
        yield to_uint8(frames[0])[: n_frames - i * f]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m mcdm_model.generate", description=__doc__.split("\n")[0])
    p.add_argument("--image", required=True, help="portrait image (jpg/png); the largest face is cropped")
    p.add_argument("--audio", required=True, help="speech audio (any format ffmpeg reads; resampled to 16 kHz)")
    p.add_argument("--checkpoint", help="train.py checkpoint (EMA weights); without it a random model is used")
    p.add_argument("--size", default="MCDM-T", choices=list(SIZES), help="model size when no checkpoint is given")
    p.add_argument("--out", default="out.mp4", help="output mp4 (H.264 + AAC)")
    p.add_argument("--steps", type=int, default=25, help="DDIM steps per clip")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-seconds", type=float, default=0.0, help="use only the first N seconds of audio (0 = all)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--models-dir", help="local weights dir for a random-init model's pretrained parts")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    image = cv2.imread(args.image, cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"cannot read image {args.image}")
    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    audio = media.read_audio(args.audio, 0.0, args.max_seconds or None, sr=16000)
    if len(audio) < 640:
        raise SystemExit(f"{args.audio}: no audio (need at least one 40 ms frame)")
    model = load_model(args.checkpoint, args.size, device, args.models_dir)
    from mcdm_model.metrics_face import FaceAnalyzer

    crop, lm = face_crop(image, model.cfg.image_size, face=FaceAnalyzer())
    clips = list(iter_clips(model, crop, audio, reference_motion(lm), steps=args.steps, seed=args.seed))
    frames = np.concatenate(clips)
    media.write_video(frames, args.out, fps=model.cfg.fps, audio=audio[: len(frames) * model.cfg.samples_per_frame])
    log.info("wrote %s: %d frames (%.1f s), %d clips", args.out, len(frames), len(frames) / model.cfg.fps, len(clips))
    return Path(args.out)


if __name__ == "__main__":
    main()
