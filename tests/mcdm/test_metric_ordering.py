"""Metrics that can fail: scored against a real ground-truth clip, uniform noise < flat grey < another real person <
the truth itself, on every metric that claims to measure it (no face: NaN / None, the worst rank).

Ground truth: 3 s of a real HDTF clip (Katie Hill) with its own audio; "another person": 3 s of another HDTF clip
(AOC), same crop layout. Pixel metrics (SSIM, PSNR) measure fidelity to the ground truth's pixels, not identity:
they rank a flat grey frame above another person, which the strict xfail below records with the numbers.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from mcdm_model import metrics
from mcdm_model.metrics_face import FaceAnalyzer, face_rate
from mcdm_model.metrics_sync import SyncScorer
from pipeline.media import read_audio, read_frames

pytestmark = pytest.mark.slow  # dlib on 4 x 75 frames: ~40 s idle, minutes on a loaded machine
ORDER = ("noise", "grey", "other", "truth")
HIGHER = {"identity_sim": True, "face_rate": True, "landmark_dist": False, "lse_c": True, "lse_d": False,
          "ssim": True, "psnr": True}


@pytest.fixture(scope="module")
def scores(shared_media, have_ffmpeg, tmp_path_factory) -> dict[str, dict[str, float | None]]:
    v = shared_media / "video_av"
    truth = read_frames(v / "hdtf_WDA_KatieHill_en_8s.mp4", 0.0, 3.0, size=(160, 160))
    audio = read_audio(v / "hdtf_WDA_KatieHill_en_8s.mp4", 0.0, 3.0)
    other = read_frames(v / "hdtf_WDA_AOC_en_8s.mp4", 0.0, 3.0, size=(160, 160))[: len(truth)]
    cands = {"noise": np.random.default_rng(0).integers(0, 256, truth.shape, dtype=np.uint8),
             "grey": np.full_like(truth, 128), "other": other, "truth": truth.copy()}
    face = FaceAnalyzer(id_stride=5, models_dir=str(tmp_path_factory.mktemp("nomodels")))
    sync = SyncScorer(face, models_dir=str(tmp_path_factory.mktemp("nosync")))
    gt_lm, ref = face.landmarks(truth), face.embedding(truth[0])
    out = {}
    for name, video in cands.items():
        lm = face.landmarks(video)
        s = sync.score(video, audio, landmarks=lm)
        out[name] = {"identity_sim": metrics.nanmean(metrics.cosine(face.embeddings(video, lm), ref)),
                     "face_rate": face_rate(lm), "landmark_dist": metrics.nanmean(metrics.landmark_distance(lm, gt_lm)),
                     "lse_c": s["lse_c"], "lse_d": s["lse_d"], "ssim": metrics.ssim(video, truth),
                     "psnr": metrics.psnr(video, truth)}
    return out


def _rank(value: float | None, higher: bool) -> float:
    """Oriented score: higher is better, unmeasured (no face) is the worst."""
    if value is None or not math.isfinite(value):
        return -math.inf
    return value if higher else -value


@pytest.mark.parametrize("metric", ["identity_sim", "face_rate", "landmark_dist", "lse_c", "lse_d"])
def test_face_and_sync_metrics_order_noise_grey_other_truth(scores, metric: str) -> None:
    r = [_rank(scores[c][metric], HIGHER[metric]) for c in ORDER]
    assert r[0] <= r[1] < r[2] < r[3] or (metric == "face_rate" and r[0] == r[1] < r[2] <= r[3]), (metric, r)
    if metric != "face_rate":
        assert scores["noise"][metric] is None and scores["grey"][metric] is None  # no face: not measured


def test_no_face_gives_nan_and_zero_face_rate(scores) -> None:
    for c in ("noise", "grey"):
        assert scores[c]["face_rate"] == 0.0 and scores[c]["identity_sim"] is None and scores[c]["lse_c"] is None
    assert scores["truth"]["face_rate"] == scores["other"]["face_rate"] == 1.0


@pytest.mark.parametrize("metric", ["ssim", "psnr"])
def test_pixel_metrics_rank_noise_worst_and_truth_best(scores, metric: str) -> None:
    s = {c: scores[c][metric] for c in ORDER}
    assert s["noise"] < s["grey"] < s["truth"] and s["noise"] < s["other"] < s["truth"], s


@pytest.mark.xfail(strict=True, reason="SSIM / PSNR reward a flat grey frame over another real person: on these "
                   "clips SSIM 0.37-0.40 (grey) vs 0.24 (other person), PSNR 11.5-12.0 vs 10.4 dB (256² measured); "
                   "they measure pixel fidelity, not identity: use identity_sim / landmark_dist / face_rate for that")
@pytest.mark.parametrize("metric", ["ssim", "psnr"])
def test_pixel_metrics_rank_grey_below_another_person(scores, metric: str) -> None:
    assert scores["grey"][metric] < scores["other"][metric]
