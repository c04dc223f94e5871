"""Write kept clips into WebDataset shards, every row into a per-video ledger, and the ledger into index.parquet.

Crash safety (a killed run resumes without losing or duplicating samples):
- a shard is written as `<lang>-NNNNNN.tar.tmp` and renamed when it closes; a reader never sees half a shard;
- closing a shard first writes the ledger file of every video in it, then renames the .tmp, so a ledger entry
  without its shard means "killed between the two steps" and startup removes it (the video is redone);
- startup deletes leftover `.tar.tmp` files, so samples of uncommitted videos vanish with them;
- a video's clips never straddle two shards (limits are checked between videos).

Transient faults (pipeline/faults.py): a video with a `retry_later` row is neither written nor ledgered, only
listed in `<out>/pending.json`, so the next run redoes it. A transient write failure (disk full) abandons the
open shard: its videos become pending too, nothing half-written is committed.
Sample `.json` files carry no host paths: `*_path` fields stay in the index only, and a local `source` is written
relative to the manifest folder (URLs and queries as given).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import faults
from .config import BuildConfig
from .index import INDEX_FIRST, public_fields, read_ledger, scalar_fields, write_atomic, write_index  # noqa: F401
from .record import STATUS_RETRY, Row, drop, is_ok, safe_id

log = logging.getLogger(__name__)

# Members of one sample and the row field holding each one's bytes (see the data contract).
MEMBERS: tuple[tuple[str, str], ...] = (("mp4", "crop_path"), ("wav", "clip_wav_path"), ("npz", "track_path"))
_SHARD_RE = re.compile(r"^([a-z]{2,3})-(\d{6})\.tar$")
_KEY_RE = re.compile(r"^[a-z0-9_-]+$")


def _stat_size(row: Row) -> int:
    """Bytes the row's members take on disk (0 for a missing file: it will be caught when read)."""
    total = 0
    for _, fld in MEMBERS:
        try:
            total += os.stat(row[fld]).st_size if row.get(fld) else 0
        except OSError:
            pass
    return total + 4 * 512


@dataclass
class _Shard:
    """One open (uncommitted) shard of one language and the videos waiting for its commit."""

    final: Path
    tmp: Path
    fileobj: Any
    writer: Any
    n_bytes: int = 0
    n_samples: int = 0
    videos: list[tuple[str, list[Row]]] = field(default_factory=list)


class ShardSink:
    """The end of the graph: `add_video(rows)` per finished source video, `close()` once at the end."""

    def __init__(self, cfg: BuildConfig):
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.shards_dir = self.out / "shards"
        self.ledger_dir = self.out / "ledger"
        self.out.mkdir(parents=True, exist_ok=True)
        self._lock = self._take_lock()  # first: before anything is written, and before _recover deletes .tmp files
        self.shards_dir.mkdir(parents=True, exist_ok=True)
        self.ledger_dir.mkdir(parents=True, exist_ok=True)
        self.n_kept = 0
        self.n_dropped = 0
        self._open: dict[str, _Shard] = {}
        self._pending: set[str] = set()  # written into an open shard, waiting for its commit
        self.retry_later: dict[str, dict[str, str]] = {}  # video_key -> {stage, detail}: left for the next run
        self._done: set[str] = self._recover()

    # ---- startup ------------------------------------------------------------------------------------------
    def _take_lock(self) -> Any:
        """One writer per output dir: a second build on the same --out would delete the first one's open shard."""
        import fcntl

        path = self.out / ".sink.lock"
        fh = open(path, "a+")  # noqa: SIM115 - held until close(); the OS drops it if the process dies
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise RuntimeError(f"another build is writing to {self.out} (holds {path}): wait for it, or use another --out") from None
        return fh

    def _recover(self) -> set[str]:
        """Undo whatever a killed run left half done; return the video keys whose ledger is committed."""
        for tmp in list(self.shards_dir.glob("*/*.tar.tmp")) + list(self.ledger_dir.glob("*.tmp")):
            log.info("sink: removing leftover %s", tmp)
            tmp.unlink(missing_ok=True)
        done: set[str] = set()
        for path in sorted(self.ledger_dir.glob("*.json")):
            try:
                entry = json.loads(path.read_text())
                rows = entry["rows"]
                missing = [r["shard"] for r in rows if r.get("shard") and not self._shard_path(r["shard"]).exists()]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("sink: unreadable ledger %s (%s): the video will be redone", path, exc)
                path.unlink(missing_ok=True)
                continue
            if missing:
                log.info("sink: %s points at uncommitted shard %s: the video will be redone", path.name, missing[0])
                path.unlink(missing_ok=True)
                continue
            done.add(entry["video_key"])
        return done

    def _shard_path(self, name: str) -> Path:
        return self.shards_dir / name.split("-", 1)[0] / name

    def _ledger_path(self, video_key: str) -> Path:
        return self.ledger_dir / f"{safe_id(video_key)}.json"

    def _next_index(self, lang: str) -> int:
        found = [int(m.group(2)) for p in (self.shards_dir / lang).glob("*.tar") if (m := _SHARD_RE.match(p.name))]
        return max(found, default=-1) + 1

    # ---- API used by build.py -----------------------------------------------------------------------------
    def is_done(self, video_key: str) -> bool:
        """True when this video's rows are committed (ledger written and its shard, if any, renamed)."""
        return video_key in self._done

    def add_video(self, rows: list[Row]) -> None:
        """All rows of one source video, kept and dropped. Kept clips go into one shard of the video's language."""
        if not rows:
            return
        if len({r["video_key"] for r in rows}) > 1:  # defensive: one call per video, whatever the caller sent
            for group in {r["video_key"]: [x for x in rows if x["video_key"] == r["video_key"]] for r in rows}.values():
                self.add_video(group)
            return
        video_key = rows[0]["video_key"]
        if video_key in self._done or video_key in self._pending:
            log.warning("sink: %s arrived twice; ignoring the second copy (no duplicate samples)", video_key)
            return
        waiting = next((r for r in rows if r.get("status") == STATUS_RETRY), None)
        if waiting is not None:  # a transient failure: nothing of this video is written, the next run redoes it
            self._leave_for_next_run(video_key, str(waiting.get("drop_stage", "")), str(waiting.get("drop_detail", "")))
            return
        for row in rows:
            row["shard"] = ""  # set below for the rows that go into a shard
        ok_rows = [r for r in rows if is_ok(r)]
        if not ok_rows:
            self._commit_video(video_key, rows)
            return
        lang = rows[0].get("lang_expected") or ok_rows[0].get("lang") or video_key.split("-", 1)[0]
        size = sum(_stat_size(r) for r in ok_rows)  # estimate: limits are checked before the video, never inside
        shard = self._open.get(lang)
        if shard is not None and shard.n_samples and (
            shard.n_samples + len(ok_rows) > self.cfg.sink.shard_max_count
            or shard.n_bytes + size > self.cfg.sink.shard_max_bytes
        ):
            self._close_shard(lang)
            shard = None
        try:
            if shard is None:
                shard = self._open_shard(lang)
            kept = 0
            for row in ok_rows:  # one sample in memory at a time; a sample is read whole before any byte is written
                sample = self._read_sample(row)
                if sample is None:
                    continue
                row["shard"] = shard.final.name
                meta = public_fields(row, self.cfg.manifests)
                sample["json"] = json.dumps(meta, ensure_ascii=False, sort_keys=True).encode("utf-8")
                shard.n_bytes += shard.writer.write({"__key__": row["key"], **sample}) + 512 * len(sample)
                kept += 1
        except OSError as exc:  # disk full while writing: this shard is lost, its videos are redone next run
            if not faults.is_transient(exc):
                raise
            self._abandon_shard(lang, exc, also=video_key)
            return
        self.n_kept += kept
        if not kept:  # every kept row failed to read: nothing waits for the shard
            self._commit_video(video_key, rows)
            return
        shard.n_samples += kept
        shard.videos.append((video_key, rows))
        self._pending.add(video_key)
        self.n_dropped += len(rows) - kept
        if shard.n_samples >= self.cfg.sink.shard_max_count or shard.n_bytes >= self.cfg.sink.shard_max_bytes:
            self._close_shard(lang)

    def leave_for_next_run(self, video_key: str, stage: str, detail: str) -> None:
        """A video the run could not finish (its stream failed): listed as pending, not ledgered."""
        if video_key not in self._done and video_key not in self._pending:
            self._leave_for_next_run(video_key, stage, detail)

    def close(self) -> Path:
        """Commit every open shard, write <out>/pending.json and <out>/index.parquet (from all ledger files)."""
        try:
            for lang in list(self._open):
                self._close_shard(lang)
            self._write_pending()
            return write_index(self.ledger_dir, self.out / "index.parquet")
        finally:
            for lang in list(self._open):  # only left when a commit failed: never keep a half-written shard
                self._open.pop(lang).tmp.unlink(missing_ok=True)
            self._lock.close()  # releases the flock

    # ---- internals ----------------------------------------------------------------------------------------
    def _read_sample(self, row: Row) -> dict[str, bytes] | None:
        """The member bytes of one kept row, or None after marking it dropped ("write_failed")."""
        key = str(row.get("key", ""))
        if not _KEY_RE.match(key):
            drop(row, "write_failed", "sink", f"key {key!r} is not [a-z0-9_-]+")
            return None
        sample: dict[str, bytes] = {}
        for ext, fld in MEMBERS:
            path = row.get(fld)
            try:
                if not path:
                    raise FileNotFoundError(f"row has no {fld}")
                data = Path(path).read_bytes()
                if not data:
                    raise OSError(f"{fld} {path} is empty")
            except OSError as exc:
                if faults.is_transient(exc):  # e.g. EIO on network storage: the video is redone next run
                    raise
                log.warning("sink: %s: %s", key, exc)
                drop(row, "write_failed", "sink", f"{type(exc).__name__}: {exc}")
                return None
            sample[ext] = data
        return sample

    def _open_shard(self, lang: str) -> _Shard:
        import webdataset as wds

        final = self.shards_dir / lang / f"{lang}-{self._next_index(lang):06d}.tar"
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(final.name + ".tmp")
        fileobj = open(tmp, "wb")  # noqa: SIM115 - closed in _close_shard
        shard = _Shard(final, tmp, fileobj, wds.TarWriter(fileobj, encoder=False, mtime=time.time()))
        self._open[lang] = shard
        return shard

    def _close_shard(self, lang: str) -> None:
        """Commit: finish the tar, write each video's ledger, then rename .tmp -> .tar (see module docstring)."""
        shard = self._open.pop(lang)
        written: list[Path] = []
        try:
            shard.writer.close()
            shard.fileobj.flush()
            os.fsync(shard.fileobj.fileno())
            shard.fileobj.close()
            if not shard.n_samples:  # opened for a video whose files all failed to read
                shard.tmp.unlink(missing_ok=True)
                return
            for video_key, rows in shard.videos:
                self._write_ledger(video_key, rows)
                written.append(self._ledger_path(video_key))
            os.replace(shard.tmp, shard.final)
        except OSError as exc:  # a full disk mid-commit: undo the ledger entries, the videos are redone next run
            if not faults.is_transient(exc):
                raise
            for path in written:
                path.unlink(missing_ok=True)
            self._open[lang] = shard
            self._abandon_shard(lang, exc)
            return
        for video_key, _ in shard.videos:
            self._pending.discard(video_key)
            self._done.add(video_key)
        log.info("sink: committed %s (%d clips, %.1f MB)", shard.final.name, shard.n_samples, shard.n_bytes / 1e6)

    def _commit_video(self, video_key: str, rows: list[Row]) -> None:
        """A video with no kept clip: nothing to wait for, its ledger is committed right away."""
        try:
            self._write_ledger(video_key, rows)
        except OSError as exc:
            if not faults.is_transient(exc):
                raise
            self._leave_for_next_run(video_key, "sink", faults.describe(exc))
            return
        self._done.add(video_key)
        self.n_dropped += len(rows)

    def _write_ledger(self, video_key: str, rows: list[Row]) -> None:
        entry = {"video_key": video_key, "committed_at": time.time(), "rows": [scalar_fields(r) for r in rows]}
        write_atomic(self._ledger_path(video_key), json.dumps(entry, ensure_ascii=False).encode("utf-8"))

    def _leave_for_next_run(self, video_key: str, stage: str, detail: str) -> None:
        log.warning("sink: %s left for the next run (%s: %s)", video_key, stage or "?", detail[:200])
        self.retry_later[video_key] = {"stage": stage, "detail": detail[:500]}

    def _abandon_shard(self, lang: str, exc: BaseException, also: str | None = None) -> None:
        """A transient write failure: delete the open shard of `lang`; its videos (and `also`) become pending."""
        shard = self._open.pop(lang, None)
        detail = faults.describe(exc)
        if shard is not None:
            try:
                shard.fileobj.close()
            except OSError:
                pass  # the same full disk: the file is deleted below anyway
            shard.tmp.unlink(missing_ok=True)
            self.n_kept -= shard.n_samples
            for video_key, _ in shard.videos:
                self._pending.discard(video_key)
                self._leave_for_next_run(video_key, "sink", detail)
        if also is not None:
            self._leave_for_next_run(also, "sink", detail)

    def _write_pending(self) -> None:
        """<out>/pending.json: the videos left for the next run and why; removed when there are none."""
        path = self.out / "pending.json"
        if not self.retry_later:
            path.unlink(missing_ok=True)
            return
        entries = [{"video_key": k, **v} for k, v in sorted(self.retry_later.items())]
        write_atomic(path, json.dumps({"videos": len(entries), "pending": entries}, indent=1).encode("utf-8"))
