"""python -m pipeline.models [--models-dir DIR]: which weights each stage will use, and where missing ones go.

Why: nothing downloads at run time, so before a long build a researcher wants to see, in one table, whether the
upstream models were found in the models dir or the offline defaults from PyPI packages will be used.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

from ..config import default_models_dir
from .diarization import find_pyannote
from .face_blazeface import BACKEND_VARIANT, find_blazeface
from .face_weights import dlib_model_path, find_insightface_pack, find_yunet
from .lightasd import find_lightasd_weights
from .sync_loader import WEIGHTS_REL
from .whisper import find_whisper, pypi_model_dir


def _probe(fn: Callable[[], object]) -> tuple[bool, str]:
    try:
        found = fn()
    except Exception as exc:  # the loaders' own "put X in Y" messages
        return False, str(exc)
    return (found is not None), str(found) if found is not None else "not found"


def check(models_dir: str) -> list[tuple[str, str, bool, str]]:
    """Rows of (stage, model, found, path or what to do)."""
    md = Path(models_dir).expanduser()
    rows: list[tuple[str, str, bool, str]] = []
    rows.append(("faces", "insightface buffalo_l (upstream)", *_probe(lambda: find_insightface_pack(md)["detector"])))
    rows.append(("faces", "YuNet (upstream; auto picks it)", *_probe(lambda: find_yunet(md))))
    mtcnn = importlib.util.find_spec("facenet_pytorch")
    rows.append(("faces", "MTCNN (facenet-pytorch, default)", mtcnn is not None,
                 str(Path(mtcnn.origin).parent) if mtcnn and mtcnn.origin else "pip install --no-deps facenet-pytorch"))
    for backend, variant in BACKEND_VARIANT.items():
        rows.append(("faces", f"BlazeFace {variant} (backend {backend})", *_probe(lambda v=variant: find_blazeface(md, v))))
    for name in ("shape_predictor_68_face_landmarks.dat", "dlib_face_recognition_resnet_model_v1.dat"):
        rows.append(("faces", f"dlib {name.split('_')[0]}_{name.split('_')[1]} (default)", *_probe(lambda n=name: dlib_model_path(n, md))))
    rows.append(("language", "Whisper (upstream wins, else PyPI base)",
                 *_probe(lambda: "{}: {}".format(*find_whisper("auto", md)))))
    pyannote = find_pyannote("auto", md)
    rows.append(("language", "pyannote diarization (upstream)", pyannote is not None, str(pyannote) if pyannote else
                 f"put a speaker-diarization pipeline dir (config.yaml + models) in {md / 'pyannote'}/ "
                 "(else rows record speaker_check=not_run)"))
    syncnet = md / WEIGHTS_REL
    rows.append(("sync", "SyncNet (upstream)", syncnet.is_file(), str(syncnet) if syncnet.is_file() else
                 f"put syncnet_v2.model in {syncnet.parent}/ (else the weight-free fused scorer is used)"))
    rows.append(("sync", "Light-ASD (upstream)", *_probe(lambda: find_lightasd_weights(md))))
    rows.append(("sync", "Whisper base, fused confidence (PyPI)", *_probe(lambda: pypi_model_dir(md))))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.models", description=__doc__.splitlines()[0])
    p.add_argument("--models-dir", default=default_models_dir(), help="default ~/.cache/talkingface-wild/models")
    args = p.parse_args(argv)
    print(f"models dir: {Path(args.models_dir).expanduser()}")
    for stage, model, found, where in check(args.models_dir):
        print(f"{stage:9s} {'found  ' if found else 'missing'} {model:42s} {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
