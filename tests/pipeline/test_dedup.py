"""Duplicates: a real clip re-encoded, rescaled and trimmed by a second is found; other real footage is not.

The copies are made with ffmpeg from ../shared/media's HDTF Ocasio-Cortez clip; the negatives are other real
clips, among them the same person in the same studio from other footage (retalking face3), which only the
audio tells apart. Fingerprints are taken of the whole files here; the pipeline takes them of the face crops.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline import media
from pipeline.config import DedupConfig
from pipeline.dedup import Clip, find_duplicates, same_footage
from pipeline.fingerprint import audio_bits, decode, encode, phash, popcount, video_hashes

ORIGINAL = "hdtf_WDA_AOC_en_8s.mp4"
OTHERS = ("retalking_face3_en.mp4", "hdtf_WDA_KatieHill_en_8s.mp4", "retalking_face5_en.mp4")
COPIES = {  # name -> ffmpeg args between input and output
    "reencoded": ["-c:v", "libx264", "-crf", "32", "-preset", "veryfast", "-c:a", "aac", "-b:a", "64k"],
    "rescaled": ["-vf", "scale=320:320", "-c:v", "libx264", "-crf", "23", "-preset", "veryfast", "-c:a", "aac"],
    "trimmed": ["-c:v", "libx264", "-crf", "23", "-preset", "veryfast", "-c:a", "aac"],
}


@pytest.fixture(scope="module")
def files(shared_media, media_cache) -> dict[str, Path]:
    src = shared_media / "video_av" / ORIGINAL
    out = {"original": src} | {n: shared_media / "video_av" / n for n in OTHERS}
    for name, args in COPIES.items():
        dst = media_cache / f"dup_{name}.mp4"
        if not dst.exists():
            trim = ["-ss", "1.0"] if name == "trimmed" else []
            media.ffmpeg(*trim, "-i", str(src), *args, str(dst))
        out[name] = dst
    return out


@pytest.fixture(scope="module")
def clips(files) -> dict[str, Clip]:
    from benchmarks.kit.identity_media import _clip_embedding, _models

    models = _models()
    out = {}
    for name, path in files.items():
        info = media.probe(path)
        frame = media.read_frames(path, 1.5, 1.7)[0]
        bits = audio_bits(media.read_audio(path))
        out[name] = Clip(key=f"en-{name}-s0000", video_key=f"en-{name}", rank=(-info["width"] * info["height"],
                         -info["duration_s"], name), vhash=video_hashes(str(path)), emb=_clip_embedding(models, [frame]),
                         audio=lambda bits=bits: bits)  # fmt: skip
    return out


def test_copies_are_dropped_and_nothing_else(clips):
    dups = find_duplicates(list(clips.values()), DedupConfig())
    assert {k: v[0] for k, v in dups.items()} == {f"en-{n}-s0000": "en-original-s0000" for n in COPIES}
    assert "+1.00 s" in dups["en-trimmed-s0000"][1]  # the trimmed copy aligns one second in


def test_same_person_same_studio_other_footage_is_not_a_duplicate(clips):
    cfg = DedupConfig()
    assert same_footage(clips["original"], clips["retalking_face3_en.mp4"], cfg) is None
    # what tells them apart: the faces match, the audio does not
    a, b = clips["original"], clips["retalking_face3_en.mp4"]
    assert 1 - float(a.emb @ b.emb) < cfg.max_id_dist
    assert same_footage(a, clips["trimmed"], cfg) is not None


def test_best_copy_is_kept_whatever_the_order(clips):
    """The rescaled (fewer pixels) and trimmed (shorter) copies lose to the original even when listed first."""
    order = [clips["rescaled"], clips["trimmed"], clips["original"], clips["reencoded"]]
    dups = find_duplicates(order, DedupConfig())
    assert "en-original-s0000" not in dups and len(dups) == 3


def test_phash_and_codec_roundtrip():
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 255, (32, 32)).astype(np.float32)
    assert popcount(np.array([phash(img) ^ phash(img)], np.uint64))[0] == 0
    assert popcount(np.array([phash(img) ^ phash(255 - img)], np.uint64))[0] >= 60  # inverted image: opposite bits
    h = np.array([1, 2**63 + 5], np.uint64)
    assert (decode(encode(h), np.uint64) == h).all()
