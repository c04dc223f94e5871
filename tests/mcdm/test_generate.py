"""generate.py: portrait crop, clip-by-clip generation with constant carried state, and the CLI writing an mp4."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from mcdm_model import generate
from mcdm_model.metrics_face import FaceAnalyzer
from pipeline import media

PORTRAIT = "faces/facenet_angelina_jolie.jpg"
SPEECH = "audio/en/obama_5s.wav"


@pytest.fixture(scope="module")
def tiny_model(no_models_dir_module) -> generate.MCDM:
    return generate.load_model(None, "MCDM-T", "cpu", no_models_dir_module)


@pytest.fixture(scope="module")
def no_models_dir_module(tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("models")
    return str(d)


def test_face_crop_centres_the_face(shared_media):
    img = cv2.cvtColor(cv2.imread(str(shared_media / PORTRAIT)), cv2.COLOR_BGR2RGB)
    face = FaceAnalyzer()
    crop, lm = generate.face_crop(img, 128, face=face)
    assert crop.shape == (128, 128, 3) and crop.dtype == np.uint8
    assert lm is not None and lm.shape == (68, 2)
    centre = lm.mean(0)
    assert np.all(np.abs(centre - 64) < 20)  # the face sits in the middle of the crop
    side = np.ptp(lm[:, 0])
    assert 0.35 * 128 < side < 0.9 * 128  # padded by ~0.4 per side: the face fills about half the crop
    motion = generate.reference_motion(lm)
    assert motion.shape == (105,) and np.isfinite(motion).all()


def test_face_crop_falls_back_to_centre_without_face():
    flat = np.full((90, 160, 3), 127, np.uint8)
    flat[:, 35:125] = 200  # the centre square is brighter than the sides
    crop, lm = generate.face_crop(flat, 32, face=FaceAnalyzer())
    assert lm is None and crop.shape == (32, 32, 3)
    assert crop.min() == 200


def test_iter_clips_length_determinism_and_constant_state(tiny_model, shared_media):
    audio = media.read_audio(shared_media / SPEECH, 0.0, 1.0)  # 25 frames: 6 clips of 4 + a 1-frame tail
    ref = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    clips = list(generate.iter_clips(tiny_model, ref, audio, steps=2, seed=3, progress=False))
    f = tiny_model.cfg.present_frames
    assert [len(c) for c in clips] == [f] * 6 + [1]
    assert all(c.shape[1:] == (64, 64, 3) and c.dtype == np.uint8 for c in clips)
    again = list(generate.iter_clips(tiny_model, ref, audio, steps=2, seed=3, progress=False))
    np.testing.assert_array_equal(np.concatenate(clips), np.concatenate(again))

    # The state carried between clips has the same size after 2 clips as after 12: constant memory.
    cfg = tiny_model.cfg
    chunks = [audio[i : i + 999] for i in range(0, len(audio), 999)]  # a stream of odd-sized chunks: same video
    streamed = list(generate.iter_clips(tiny_model, ref, iter(chunks), steps=2, seed=3, progress=False))
    np.testing.assert_array_equal(np.concatenate(streamed), np.concatenate(clips))
    ref_t = tiny_model.encode_reference(torch.from_numpy(ref).permute(2, 0, 1)[None].float() / 127.5 - 1)
    mem, sizes = None, []
    for _ in range(12):
        chunk = torch.zeros(1, cfg.present_frames * cfg.samples_per_frame)
        _, mem = tiny_model.generate_clip(ref_t, None, chunk, mem, steps=1)
        tensors = [t for t in (mem.temporal or []) if t is not None] + [mem.archived, mem.motion]
        sizes.append(sum(t.numel() for t in tensors if t is not None))
    assert sizes[1] == sizes[-1] > 0


def test_cli_writes_mp4_with_audio(tmp_path, shared_media, no_models_dir_module, monkeypatch):
    """The CLI streams: audio is read in clip-sized chunks and frames go to ffmpeg clip by clip (no clip list)."""
    writes = []
    real_write = generate.VideoSink.write
    monkeypatch.setattr(generate.VideoSink, "write", lambda self, fr: writes.append(len(fr)) or real_write(self, fr))
    out = tmp_path / "talk.mp4"
    generate.main([
        "--image", str(shared_media / PORTRAIT), "--audio", str(shared_media / SPEECH), "--out", str(out),
        "--steps", "2", "--max-seconds", "1.0", "--models-dir", no_models_dir_module, "--device", "cpu",
    ])  # fmt: skip
    info = media.probe(out)
    assert info["has_video"] and info["has_audio"]
    assert info["width"] == info["height"] == 64
    frames = media.read_frames(out)
    assert len(frames) == 25 and writes == [4] * 6 + [1]
    assert abs(info["duration_s"] - 1.0) < 0.15
