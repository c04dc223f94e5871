"""A stand-in for the model stages in builds that test what happens around the stages (faults, resume, outputs).

`FillClipFiles` takes the faces stage's place in `--stages` (`tests.helpers.stand_in_stages:FillClipFiles`) and
cuts the files a kept row must carry from the real normalised video: a centre-square crop `.mp4`, the clip `.wav`
and a contract track `.npz` (every TRACK_KEYS array, zeros: no face was looked for). Cheap, so those builds take
seconds per clip.
"""

from __future__ import annotations

import numpy as np

from pipeline import media
from pipeline.record import FPS, SAMPLES_PER_FRAME, Row
from pipeline.stages.base import Stage
from pipeline.track_io import write_track


class FillClipFiles(Stage):
    """Writes the clip files a kept row must carry when the stages that make them are not in the run."""

    name = "faces"
    crop = 64

    def process(self, row: Row) -> Row:
        work = self.cfg.work_dir / row["lang_expected"] / row["video_key"]
        work.mkdir(parents=True, exist_ok=True)
        start, end = float(row["start_s"]), float(row["end_s"])
        n = int(round((end - start) * FPS))
        if not row.get("crop_path"):
            row["crop_path"] = str(work / f"{row['key']}_crop.mp4")
            media.ffmpeg("-ss", f"{start:.3f}", "-i", row["norm_path"], "-frames:v", str(n), "-an",
                         "-vf", f"crop='min(iw,ih)':'min(iw,ih)',scale={self.crop}:{self.crop}",
                         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", row["crop_path"])  # fmt: skip
        if not row.get("clip_wav_path"):
            row["clip_wav_path"] = str(work / f"{row['key']}.wav")
            audio = media.read_audio(row["audio_path"], start, end)[: n * SAMPLES_PER_FRAME]
            media.write_wav(np.pad(audio, (0, n * SAMPLES_PER_FRAME - len(audio))), row["clip_wav_path"])
        if not row.get("track_path"):
            row["track_path"] = str(work / f"{row['key']}_track.npz")
            zeros = np.zeros((n, 68, 2), np.float32)
            write_track(row["track_path"], boxes=np.zeros((n, 4)), crop_boxes=np.zeros((n, 4)), landmarks=zeros,
                        landmarks_crop=zeros, pose=np.zeros((n, 3)), mouth_open=np.zeros(n), det_score=np.zeros(n),
                        detected=np.zeros(n, bool), id_embedding=np.eye(1, 128)[0], fps=np.float32(FPS),
                        crop_size=np.int32(self.crop))  # fmt: skip
        return row


class NoteWorker(Stage):
    """Notes which process handled each clip row (`<out>/workers.txt`: key, pid) and holds it for a second, so
    units of work that Ray can run side by side do overlap: a test then sees whether they ran apart."""

    name = "note_worker"

    def process(self, row: Row) -> Row:
        import os
        import time

        with open(os.path.join(self.cfg.out, "workers.txt"), "a") as f:  # one short O_APPEND write: atomic
            f.write(f"{row['key']} {os.getpid()}\n")
        time.sleep(1.0)
        return row
