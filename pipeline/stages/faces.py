"""Detect, track and crop the one on-screen face of each clip; per-frame boxes, landmarks, pose, identity.

Two decoding passes over the clip so memory stays flat for 20 s of 1080p:
1. detect on every k-th frame (cfg.faces.detect_fps), link detections into tracks (IoU + identity), decide the
   segments: one dominant face in >= min_presence of the sampled frames keeps the whole clip; otherwise every
   long-enough track becomes its own row (key ...-tNN, narrowed start_s/end_s); cheap gates (multi_face,
   small_face) run here so rejected footage never pays for landmarks or encoding.
2. for every frame of every surviving segment: interpolated + median-smoothed box, 68 landmarks inside it, head
   pose, mouth opening, square crop streamed into ffmpeg; then the track .npz (the pose gate is quality's).
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from .. import face_quality
from ..config import BuildConfig
from ..face_video import CropWriter, clip_frames, sampled_frames
from ..fingerprint import frame_phash, hash_step, sidecar
from ..gates import BY_NAME
from ..media import MediaError
from ..models.face_detectors import Detections
from ..models.face_models import load_face_models
from ..norm_video import then
from ..record import FPS, Row, drop, make_key
from ..takes import take_windows
from ..track import (
    IouTracker,
    Track,
    box_area,
    crop_frame,
    crop_windows,
    head_pose,
    interpolate,
    mouth_open,
    smooth,
)
from ..track_io import write_track
from .base import Stage
from .quality import crop_measures

log = logging.getLogger(__name__)
N_ID_FRAMES = 3  # frames per segment averaged into the clip identity embedding
# a confident second face at least half the main face's side (a quarter of its area) is another person on screen:
# two speakers side by side at 370 and 200 px (benchmarks/RESULTS.md) were kept with the old half-area rule
SECOND_FACE_AREA = 0.25
N_QUALITY_FRAMES = 12  # frames per segment whose native-resolution face quality is measured (face_quality.py)
# a track's identity is checked every 2 s (dlib's ResNet costs ~75-110 ms a face on one core); a failed check
# bisects the frames since the last one, so the swap is found at the first sampled frame of the other person, as
# the former check on every sampled frame found it (a 2-s check without the bisection let a missed cut or a
# crossfade mix two faces in a kept row: benchmarks/RESULTS.md, curation accuracy). 1 s -> 2 s kept the
# curation benchmark's rows (no kept row mixing two faces) and saved 6-13 CPU-s per minute of footage
# (RESULTS_pipeline.md, "identity check every 2 s"); what it misses is a second person who takes the place and
# leaves again within 2 s
VERIFY_S = 2.0


def timeline_of(row: Row) -> tuple[str | None, tuple[int, int] | None]:
    """(norm_vf, frame size) for decoding the row's video on the timeline (pipeline/norm_video.py)."""
    vf = row.get("norm_vf") or None
    return vf, ((int(row["width"]), int(row["height"])) if vf else None)


class FaceTrack(Stage):
    name = "faces"
    uses_model = True

    def __init__(self, cfg: BuildConfig):
        super().__init__(cfg)
        self.fc = cfg.faces
        self.models = load_face_models(self.fc, cfg.models_dir, use_gpu=cfg.num_gpus > 0)

    # ---- pass 1: detection + tracking -------------------------------------------------------------------------
    def detect_and_track(self, path: str, start: float, end: float, n: int, fps: float, timeline=(None, None)):
        step = max(1, round(fps / self.fc.detect_fps))
        samples = sorted(set(range(0, n, step)) | {n - 1})
        tracker = IouTracker(self.fc.iou_link, self.fc.max_missed_frames, verify_every=round(VERIFY_S * fps),
                             same=self.models.same_identity)
        dets = {i: Detections.empty() for i in samples}  # a frame the container lacks counts as faceless
        for i, frame, s in sampled_frames(path, start, n, step, self.fc.detect_max_side, fps, *timeline):
            # faces under half the minimum size are never kept nor big enough to count as a second face; the
            # detector's floor is fixed (MTCNN's pyramid starts there, so its boxes would move with the gate)
            min_size = min(self.fc.detect_min_px, 0.5 * self.fc.min_face_px) * s
            d = self.models.detector.detect(frame, min_size).at_least(min_size)
            d = d.keep(d.scores >= self.fc.min_det_score)

            def embed(j: int, frame=frame, d=d, memo={}) -> np.ndarray:  # noqa: B006 (one dict per frame)
                if j not in memo:  # on the small frame: dlib/ArcFace chips are 150/112 px anyway
                    lm = self.models.landmarker.landmarks(frame, d.boxes[j])
                    memo[j] = self.models.embedder.embed(frame, lm, None if d.kps is None else d.kps[j])
                return memo[j]

            tracker.update(i, d.boxes / s, embed, d.scores)
            dets[i] = Detections(d.boxes / s, d.scores, None if d.kps is None else d.kps / s)
        return samples, dets, [t for t in tracker.tracks() if t.frames]

    def segments(self, samples: list[int], tracks: list[Track], n: int, fps: float) -> list[tuple[Track, int, int]]:
        """(track, first frame, end frame) per output row; [] when no track qualifies."""
        if not tracks:
            return []
        best = max(tracks, key=lambda t: (len(t.frames), t.median_area()))
        if len(best.frames) >= self.fc.min_presence * len(samples):
            return [(best, 0, n)]
        min_len = self.cfg.shots.min_clip_s * fps
        out: list[tuple[Track, int, int]] = []
        for t in sorted(tracks, key=lambda t: -len(t.frames)):
            a, b = t.frames[0], t.frames[-1] + 1
            in_span = sum(a <= s < b for s in samples)
            if b - a < min_len or len(t.frames) < self.fc.min_presence * in_span:
                continue
            if any(min(b, b2) - max(a, a2) > 0.5 * (b - a) for _, a2, b2 in out):
                continue  # another face owns this time range (multi-face footage): one row per time range
            out.append((t, a, b))
        return sorted(out, key=lambda s: s[1])

    # ---- the stage ----------------------------------------------------------------------------------------------
    def process(self, row: Row) -> Row | list[Row]:
        fps = float(row.get("fps") or FPS)
        start, end = float(row["start_s"]), float(row["end_s"])
        n = int(round((end - start) * fps))
        row["detector"] = self.models.detector.name
        if n <= 0:
            return drop(row, "no_face", self.name, "empty clip")
        samples, dets, tracks = self.detect_and_track(row["norm_path"], start, end, n, fps, timeline_of(row))
        row["n_faces"] = max((len(d) for d in dets.values()), default=0)
        segs = self.segments(samples, tracks, n, fps)
        if not segs:
            n_many, crowded = self.crowding(dets)
            if crowded > 0.1 * len(dets):  # several faces share the screen: no single track owns the clip
                row["n_faces"] = n_many
                return drop(row, "multi_face", self.name, f"{n_many} faces; 2+ faces in {crowded}/{len(dets)} sampled frames")
            any_face = sum(len(d) > 0 for d in dets.values()) / max(len(dets), 1)
            reason = "no_face" if any_face < 0.5 else "track_broken"
            row["face_coverage"] = max((len(t.frames) for t in tracks), default=0) / len(samples)
            return drop(row, reason, self.name, f"face in {any_face:.0%} of sampled frames, longest track too short")
        wins = take_windows(row, segs, n, fps, self.cfg.shots.max_clip_s, lambda j: self._track_key(row, j), samples)
        rows = [self.gate(r, *seg, samples, dets) for r, seg in wins]  # one row per window of each take
        todo = [(r, seg) for r, seg in wins if r["status"] == "ok"]
        if todo:
            self.render(row, todo, start, n, fps)
        return rows if len(rows) > 1 else rows[0]

    def crowding(self, dets: dict[int, Detections]) -> tuple[int, int]:
        """(most confident faces in one sampled frame, sampled frames with 2+ of them of comparable size).

        Confident and comparable as in `gate`: score >= the backend's confident_score, area >= SECOND_FACE_AREA of
        the frame's largest face."""
        confident = getattr(self.models.detector, "confident_score", 0.0)
        most, crowded = 0, 0
        for d in dets.values():
            areas = np.array([box_area(b) for b, sc in zip(d.boxes, d.scores, strict=True) if sc >= confident])
            most = max(most, len(areas))
            crowded += int(len(areas) >= 2 and np.sort(areas)[-2] >= SECOND_FACE_AREA * areas.max())
        return most, crowded

    def _track_key(self, row: Row, j: int) -> str:
        if {"lang_expected", "source_id", "shot_index"} <= row.keys():
            return make_key(row["lang_expected"], row["source_id"], shot=int(row["shot_index"]), track=j)
        return f"{row['key']}-t{j:02d}"

    def gate(self, r: Row, track: Track, a: int, b: int, samples: list[int], dets: dict[int, Detections]) -> Row:
        """Cheap per-segment checks on the sampled detections: coverage, n_faces, multi_face, small_face.

        A second face counts when it is at least SECOND_FACE_AREA of the main face's area and confident (score >= the backend's
        `confident_score`): on real clips MTCNN fires on clasped hands at 0.70-0.96 in a third of the frames, at
        the same place all along, so neither presence nor persistence tells them from a person; real frontal
        faces score >= 0.998. Known miss: a second person seen only in profile (MTCNN ~0.86)."""
        seg_samples = [s for s in samples if a <= s < b]
        own = dict(zip(track.frames, track.det_idx, strict=True))
        boxes = np.stack([bx for f, bx in zip(track.frames, track.boxes, strict=True) if a <= f < b])
        main_area = float(np.median([box_area(bx) for bx in boxes]))
        confident = getattr(self.models.detector, "confident_score", 0.0)
        crowded, n_faces = 0, 0
        for s in seg_samples:
            d = dets[s]
            real = [k for k in range(len(d)) if d.scores[k] >= confident or own.get(s) == k]
            n_faces = max(n_faces, len(real))
            crowded += any(box_area(d.boxes[k]) >= SECOND_FACE_AREA * main_area for k in real if own.get(s) != k)
        r["n_faces"] = n_faces
        r["face_coverage"] = sum(s in own for s in seg_samples) / len(seg_samples)
        r["face_px"] = float(np.median(np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])))
        if crowded > 0.1 * len(seg_samples):
            return drop(r, "multi_face", self.name, f"{n_faces} faces; second face in {crowded}/{len(seg_samples)} sampled frames")
        if BY_NAME["faces.min_face_px"].fails(r, self.fc):
            return drop(r, "small_face", self.name, f"median face {r['face_px']:.0f} px < {self.fc.min_face_px}")
        return r

    # ---- pass 2: per-frame landmarks, pose, crop ------------------------------------------------------------------
    def render(self, row: Row, todo: list[tuple[Row, tuple[Track, int, int]]], start: float, n: int, fps: float):
        work = self.video_dir(row)
        renderers = [SegmentRenderer(self, r, seg, work, fps) for r, seg in todo]
        vf, size = timeline_of(row)
        region = (0, 0)
        if size is not None:  # decode only the part of the frame the crops come from (no RGB for the rest)
            for rd in renderers:
                rd.set_frame_size(size)
            x0, y0, x1, y1 = crop_region([rd.windows for rd in renderers], size)
            if (x1 - x0) * (y1 - y0) < 0.8 * size[0] * size[1]:
                vf, region, size = then(vf, f"crop={x1 - x0}:{y1 - y0}:{x0}:{y0}"), (x0, y0), (x1 - x0, y1 - y0)
        change, prev = np.full(n, np.inf), None  # mean |frame i - frame i-1| on every 4th pixel of the region
        try:
            for i, frame in enumerate(clip_frames(row["norm_path"], start, start + n / fps, n, vf, size)):
                small = frame[::4, ::4].astype(np.int16)
                if prev is not None:
                    change[i] = float(np.abs(small - prev).mean())
                prev = small
                for rd in renderers:
                    rd.feed(i, frame, region)
        except BaseException:
            for rd in renderers:
                rd.abort()
            raise
        repeats = repeated_frames(change)
        for rd in renderers:
            rd.finish(repeats)


def repeated_frames(change: np.ndarray, near: float = 0.25) -> np.ndarray:
    """Which frames repeat the one before: no change at all (the 25 fps timeline filling a slower source: 15 fps
    repeats 40 % of its frames), or under `near` x the change on both sides (a slow source stored at a higher
    rate and encoded, whose twin frames differ by coding noise only, while the frames around them move).
    `change[i]` is frame i's difference to frame i-1 (inf where there is none)."""
    before = np.r_[np.inf, change[:-1]]
    after = np.r_[change[1:], np.inf]
    return np.isfinite(change) & ((change == 0) | (change < near * np.minimum(before, after)))


def crop_region(windows: list[np.ndarray], frame_wh: tuple[int, int], grid: int = 16) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the union of every crop window, widened to a multiple of `grid` px (integer offsets keep
    landmarks and warps exact; the 8-px block grid that face_quality measures keeps its phase), in the frame."""
    w, h = frame_wh
    lo = np.min([win[:, :2].min(axis=0) for win in windows], axis=0)
    hi = np.max([win[:, 2:].max(axis=0) for win in windows], axis=0)
    x0, y0 = (int(np.floor(v / grid) * grid) for v in np.maximum(lo - 1, 0))
    x1, y1 = int(min(np.ceil((hi[0] + 1) / grid) * grid, w)), int(min(np.ceil((hi[1] + 1) / grid) * grid, h))
    return x0, y0, x1 - (x1 - x0) % 2, y1 - (y1 - y0) % 2


class SegmentRenderer:
    """Everything per frame for one output row: landmarks in the smoothed box, pose, mouth, crop, identity."""

    def __init__(self, stage: FaceTrack, row: Row, seg: tuple[Track, int, int], work: Path, fps: float):
        track, self.a, self.b = seg
        self.stage, self.row, self.fps, self.size = stage, row, fps, int(stage.fc.crop_size)
        n = self.b - self.a
        boxes, self.detected = interpolate(track.frames, track.boxes, self.a, self.b)
        self.boxes = smooth(boxes, stage.fc.smooth_window)
        self.windows: np.ndarray | None = None
        self.frame_wh: tuple[int, int] = (0, 0)
        self.lm = np.zeros((n, 68, 2), np.float32)
        self.pose = np.zeros((n, 3), np.float32)
        self.mouth = np.zeros((n,), np.float32)
        # the clip identity: embeddings the tracker already paid for, topped up from evenly spaced frames
        self.embs: list[np.ndarray] = list(track.embeddings)
        n_more = min(max(N_ID_FRAMES - len(self.embs), 0), n)
        self.id_frames = set(np.linspace(self.a, self.b - 1, n_more).round().astype(int).tolist()) if n_more else set()
        # detector score interpolated like the boxes; `detected` marks the frames that had a real detection
        self.det_score = np.interp(np.arange(self.a, self.b), track.frames, track.scores).astype(np.float32)
        self.q_frames = set(np.linspace(self.a, self.b - 1, min(N_QUALITY_FRAMES, n)).round().astype(int).tolist())
        self.quality: list[tuple[float, float, float]] = []
        self.q_crops: list[np.ndarray] = []  # grey crops at q_frames: the quality stage's sharpness / brightness
        self.hash_step = hash_step(fps)
        self.hashes: list[np.uint64] = []  # the video fingerprint of the crop (Commit reads it: no decode there)
        self.crop_path = work / f"{row['key']}_crop.mp4"
        self.track_path = work / f"{row['key']}_track.npz"
        self.writer: CropWriter | None = None  # opened at the window's first frame: a long take has many windows

    def set_frame_size(self, wh: tuple[int, int]) -> None:
        """The timeline's frame size: fixes the crop windows (before the first frame when the size is known)."""
        self.frame_wh = wh
        self.windows = crop_windows(self.boxes, self.stage.fc.crop_padding, wh, side_window=int(self.fps))

    def feed(self, i: int, frame: np.ndarray, origin: tuple[int, int] = (0, 0)) -> None:
        """Frame i of the clip, or the part of it from `origin` (x, y) on (crop_region); results are in frame px."""
        if not self.a <= i < self.b:
            return
        if self.windows is None:
            self.set_frame_size((frame.shape[1], frame.shape[0]))
        k, off = i - self.a, np.array(origin, np.float32)
        models = self.stage.models
        lm = self.lm[k] = models.landmarker.landmarks(frame, self.boxes[k] - np.tile(off, 2)) + off
        self.pose[k] = head_pose(lm, self.frame_wh)
        self.mouth[k] = mouth_open(lm)
        if i in self.id_frames:
            self.embs.append(models.embedder.embed(frame, lm - off))
        if i in self.q_frames:  # before any resize: the quality gates measure the face, not the upscaled crop
            self.quality.append(face_quality.measure(frame, lm - off))
        if self.writer is None:
            self.writer = CropWriter(self.crop_path, self.size, self.fps)
        crop = crop_frame(frame, self.windows[k] - np.tile(off, 2), self.size)
        if i in self.q_frames:  # the crop's own measures too, from the frame in hand rather than a decode later
            self.q_crops.append(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY))
        if k % self.hash_step == 0:
            self.hashes.append(frame_phash(crop))
        self.writer.write(crop)
        if i == self.b - 1:
            self.writer.close()  # frees the encoder while later windows of the take are still being read

    def abort(self) -> None:
        if self.writer is not None and self.writer.proc.returncode is None:
            self.writer.proc.kill()
            self.writer.proc.wait()
        self.crop_path.unlink(missing_ok=True)
        sidecar(self.crop_path).unlink(missing_ok=True)

    def finish(self, repeats: np.ndarray) -> None:
        """Close the crop, write the track; `repeats` flags the clip's frames that repeat the one before."""
        if self.writer is not None and self.writer.proc.returncode is None:
            self.writer.close()
        n, r = self.b - self.a, self.row
        if self.writer is None or self.writer.n != n or self.windows is None:
            self.crop_path.unlink(missing_ok=True)
            sidecar(self.crop_path).unlink(missing_ok=True)
            raise MediaError(f"{r['key']}: wrote {0 if self.writer is None else self.writer.n} of {n} crop frames")
        if self.quality:
            q = np.median(np.asarray(self.quality), axis=0)
            r["face_detail_px"], r["face_blockiness"], r["face_native_px"] = (round(float(v), 3) for v in q)
        side = (self.windows[:, 2] - self.windows[:, 0])[:, None, None]
        lm_crop = ((self.lm - self.windows[:, None, :2]) * (self.size / side)).astype(np.float32)
        r |= crop_measures(self.q_crops, lm_crop)
        r["frame_repeat_ratio"] = round(float(repeats[self.a + 1 : self.b].mean()), 4) if n > 1 else 0.0
        ident = np.mean(self.embs, axis=0)
        write_track(
            self.track_path,
            boxes=self.boxes, crop_boxes=self.windows, landmarks=self.lm,
            landmarks_crop=lm_crop,
            pose=self.pose, mouth_open=self.mouth, det_score=self.det_score, detected=self.detected,
            id_embedding=(ident / max(float(np.linalg.norm(ident)), 1e-8)).astype(np.float32),
            fps=np.float32(self.fps), crop_size=np.int32(self.size),
        )  # fmt: skip
        np.save(sidecar(self.crop_path), np.asarray(self.hashes, np.uint64))
        r["crop_path"], r["track_path"] = str(self.crop_path), str(self.track_path)
