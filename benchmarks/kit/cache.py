"""A cache of media derived from ../shared/media that outlives one test session or benchmark run.

Building the sync clips (normalise + dlib tracking of 12 real clips) takes minutes, so their results are kept
under `$TFW_TEST_MEDIA_CACHE` (default ~/.cache/talkingface-wild/test-media), one folder per (recipe, source):
the folder name holds a hash of the recipe's code and of the source file's name, size and mtime, so editing a
builder or replacing a source builds afresh. A folder is built under a temporary name and renamed when complete,
so a killed run never leaves half a result and two runs building the same folder at once both end with a whole one.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


def cache_root() -> Path:
    default = Path.home() / ".cache" / "talkingface-wild" / "test-media"
    return Path(os.environ.get("TFW_TEST_MEDIA_CACHE", default)).expanduser()


def recipe_key(recipe: Iterable[Any], sources: Iterable[Path] = ()) -> str:
    """12 hex digits from the recipe (functions by their source code, anything else by repr) and the sources."""
    h = hashlib.sha1()
    for part in recipe:
        h.update((inspect.getsource(part) if callable(part) else repr(part)).encode())
    for src in sources:
        st = Path(src).stat()
        h.update(f"{Path(src).name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


def built(dst: Path, build: Callable[[Path], None]) -> Path:
    """`dst`, built by `build(tmp_dir)` into a temporary sibling and renamed, unless it already exists."""
    if dst.is_dir():
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    try:
        build(tmp)
        try:
            os.rename(tmp, dst)
        except OSError:
            if not dst.is_dir():  # not another run's finished copy: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dst
