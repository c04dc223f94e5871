"""Run the benchmark's items through the real pipeline stages (in process), cached per stage group.

Per item: Download -> Normalize -> ShotSplit -> FaceTrack (cached: the expensive part), then LanguageTagger,
SyncFilter and QualityFilter. Audio variants (`Item.video_of`) reuse their base's video-stage rows with their own
audio extracted exactly as Normalize extracts it: the video stages never read audio, so this is what the pipeline
would compute, minus the re-encode. Besides the pipeline's own outcome, every row the faces stage kept is also
probed by the sync and quality stages whatever the language stage said, so each gate can be scored alone.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import pickle
from dataclasses import asdict
from pathlib import Path

from pipeline import media
from pipeline.config import BuildConfig
from pipeline.record import Row, is_ok, seed_row

from .curation_media import SR, Item

log = logging.getLogger(__name__)


def _fingerprint(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _code(*files: str) -> str:
    """Hash of pipeline source files (relative to pipeline/): a change to them re-runs what they compute."""
    root = Path(__file__).resolve().parents[2] / "pipeline"
    return hashlib.sha1(b"".join((root / f).read_bytes() for f in files)).hexdigest()[:10]


SHOTS_CODE = ("stages/shots.py", "transitions.py")
FACES_CODE = ("stages/faces.py", "track.py", "takes.py", "face_video.py", "face_quality.py")
SYNC_CODE = ("stages/sync.py", "models/sync_energy.py", "models/sync_fused.py", "models/sync_prior.py",
             "models/sync_loader.py", "models/sync_whisper.py")


def _cached(path: Path, fn):
    if path.exists():
        return pickle.loads(path.read_bytes())
    value = fn()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps(value))
    tmp.replace(path)
    return value


class Runner:
    """Stages built once; `run(item)` -> {"shots": rows after ShotSplit, "rows": final rows, "probe": per row key};
    `shot_rows(item)` alone runs only the stages up to ShotSplit (the benchmark's `--only shots`)."""

    def __init__(self, cfg: BuildConfig, cache: Path, sync_tag: str = ""):
        from pipeline.stages.download import Download
        from pipeline.stages.faces import FaceTrack
        from pipeline.stages.normalize import Normalize
        from pipeline.stages.shots import ShotSplit

        self.cfg, self.cache = cfg, Path(cache)
        self.norm_fp = _fingerprint(asdict(cfg.normalize))
        self.shots_fp = _fingerprint(self.norm_fp, asdict(cfg.shots), _code(*SHOTS_CODE))
        self.faces_fp = _fingerprint(self.norm_fp, asdict(cfg.faces), cfg.models_dir, _code(*FACES_CODE))
        self.lang_fp = _fingerprint(asdict(cfg.language))
        self.sync_fp = _fingerprint(asdict(cfg.sync), asdict(cfg.quality), sync_tag, _code(*SYNC_CODE))
        self._lazy = {"download": Download, "normalize": Normalize, "shots": ShotSplit, "faces": FaceTrack}
        self._lang = self._sync = self._quality = None

    # ---- stage groups -------------------------------------------------------------------------------------------
    def _stage(self, name: str):
        if isinstance(self._lazy[name], type):  # built on first use: a cached run loads no face models
            self._lazy[name] = self._lazy[name](self.cfg)
        return self._lazy[name]

    def shot_rows(self, item: Item) -> list[Row]:
        """Rows after ShotSplit (Download -> Normalize -> ShotSplit), cached: normalize; shots (config + code)."""

        def normalized() -> list[Row]:
            rows = [seed_row(item.lang_expected, item.key, item.path, license="benchmark")]
            for name in ("download", "normalize"):
                rows = [r for row in rows for r in self._stage(name)(row)]
            return rows

        norm = _cached(self.cache / f"norm-{self.norm_fp}" / f"{item.key}.pkl", normalized)
        return _cached(self.cache / f"shots-{self.shots_fp}" / f"{item.key}.pkl",
                       lambda: [r for row in copy.deepcopy(norm) for r in self._stage("shots")(row)])  # fmt: skip

    def video_rows(self, item: Item) -> dict:
        """{"shots": rows after ShotSplit, "faces": rows after FaceTrack, "tag": what the faces rows depend on}.

        Cached per stage group: normalize; shots (config + the shot detector's code); faces (config + the shot
        rows it was given), so a change to the shot detector re-runs the faces stage only where the shots moved."""

        shots = self.shot_rows(item)
        tag = _fingerprint(self.faces_fp, [(r["key"], r.get("start_s"), r.get("end_s"), r["status"]) for r in shots])
        faces = _cached(self.cache / f"faces-{self.faces_fp}" / f"{item.key}-{tag}.pkl",
                        lambda: [r for row in copy.deepcopy(shots) for r in self._stage("faces")(row)])  # fmt: skip
        return {"shots": shots, "faces": faces, "tag": tag}

    def variant_rows(self, item: Item, base: dict) -> dict:
        """The base's video-stage rows re-keyed for this item, with this item's audio (as Normalize extracts it)."""
        wav = self.cache / "audio" / f"{item.key}.wav"
        if not wav.exists():
            wav.parent.mkdir(parents=True, exist_ok=True)
            media.ffmpeg("-i", item.path, "-map", "0:a:0", "-vn", "-af", f"aresample={SR}:async=1:first_pts=0",
                         "-ac", "1", "-ar", str(SR), "-c:a", "pcm_s16le", str(wav))  # fmt: skip
        old = base["faces"][0]["video_key"]
        new = seed_row(item.lang_expected, item.key, item.path)["video_key"]

        def rekey(r: Row) -> Row:
            r = copy.deepcopy(r)
            r["key"] = r["key"].replace(old, new, 1)
            r |= {"video_key": new, "source_id": item.key, "source": item.path, "audio_path": str(wav)}
            return r

        return {"shots": [rekey(r) for r in base["shots"]], "faces": [rekey(r) for r in base["faces"]], "tag": base["tag"]}

    def language(self, item: Item, rows: list[Row], tag: str) -> list[Row]:
        from pipeline.stages.language import LanguageTagger

        def compute():
            if self._lang is None:
                self._lang = LanguageTagger(self.cfg)
            return self._lang.run_video(copy.deepcopy(rows))

        return _cached(self.cache / f"lang-{self.lang_fp}" / f"{item.key}-{tag}.pkl", compute)

    def probes(self, item: Item, faces_rows: list[Row], tag: str) -> dict[str, dict]:
        """Sync + quality on every row the faces stage kept, whatever language said (keys: row key)."""
        from pipeline.stages.quality import QualityFilter
        from pipeline.stages.sync import SyncFilter

        def compute():
            if self._sync is None:
                self._sync, self._quality = SyncFilter(self.cfg), QualityFilter(self.cfg)
            out = {}
            for r in faces_rows:
                if not is_ok(r):
                    continue
                [s] = self._sync(copy.deepcopy(r))
                q_in = dict(s, status="ok", drop_reason="", drop_stage="")
                [q] = self._quality(q_in)
                out[r["key"]] = {"sync": s, "quality": q}
            return out

        return _cached(self.cache / f"probe-{self.sync_fp}" / f"{item.key}-{tag}.pkl", compute)

    # ---- one item -----------------------------------------------------------------------------------------------
    def run(self, item: Item, bases: dict[str, dict]) -> dict:
        video = self.variant_rows(item, bases[item.video_of]) if item.video_of else self.video_rows(item)
        faces_rows = video["faces"]
        probe = self.probes(item, faces_rows, video["tag"])
        lang_rows = self.language(item, faces_rows, video["tag"])
        final = []
        for r in lang_rows:  # the pipeline's own order: faces -> language -> sync -> quality
            if is_ok(r):
                p = probe[r["key"]]
                r = dict(r)
                for stage in ("sync", "quality"):
                    got = p[stage]
                    r |= {k: v for k, v in got.items() if k not in ("status", "drop_reason", "drop_stage", "drop_detail")}
                    if not is_ok(got) and got.get("drop_stage") == stage:
                        r |= {k: got[k] for k in ("status", "drop_reason", "drop_stage") if k in got}
                        r["drop_detail"] = got.get("drop_detail", "")
                        break
            final.append(r)
        return {"item": item, "shots": video["shots"], "faces": faces_rows, "lang": lang_rows, "probe": probe, "rows": final}


def run_all(items: list[Item], cfg: BuildConfig, cache: Path, sync_tag: str = "") -> list[dict]:
    runner = Runner(cfg, cache, sync_tag)
    bases: dict[str, dict] = {}
    out = []
    for it in sorted(items, key=lambda i: bool(i.video_of)):  # bases first
        if not it.video_of:
            bases[it.key] = runner.video_rows(it)
        log.info("item %s", it.key)
        out.append(runner.run(it, bases))
    return out
