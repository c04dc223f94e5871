"""python -m pipeline.build: manifests -> Ray Data graph of stages -> ledger -> finalize -> shards, index, report.

The unit of work in the graph is one source video (all its clip rows travel together); its last stage (Commit)
writes the video's ledger entry where the video was processed, and a rerun skips videos with an entry. The driver
only gathers rows for progress; then finalize (pipeline/finalize.py) turns the ledger into shards, index.parquet,
stats.json and report.html, on Ray tasks when running on Ray.
CPU stages run as Ray tasks, model stages as actor pools (fractional GPUs with --num-gpus).
`ray.init()` starts a local cluster; set RAY_ADDRESS to join an existing one (the --out dir must then be on
storage every node can reach).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pickle
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from .config import LANGS, SAMPLE_MANIFESTS, BuildConfig, load_config, save_config
from .manifest import load_manifests
from .record import Row
from .stages.base import Stage
from .stages.commit import Commit
from .stages.download import Download
from .stages.faces import FaceTrack
from .stages.language import LanguageTagger
from .stages.normalize import Normalize
from .stages.quality import QualityFilter
from .stages.shots import ShotSplit
from .stages.sync import SyncFilter

log = logging.getLogger("pipeline.build")

# The pipeline, read as one list.
STAGES: list[type[Stage]] = [Download, Normalize, ShotSplit, FaceTrack, LanguageTagger, SyncFilter, QualityFilter,
                             Commit]

for _var, _val in (("RAY_USAGE_STATS_ENABLED", "0"), ("HF_HUB_OFFLINE", "1"), ("PYANNOTE_METRICS_ENABLED", "0")):
    os.environ.setdefault(_var, _val)


def group_by_video(rows: Iterable[Row]) -> list[list[Row]]:
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(row["video_key"], []).append(row)
    return list(groups.values())


def run_local(stages: list[Stage], videos: Iterable[list[Row]]) -> Iterator[list[Row]]:
    """The same graph in this process, no Ray: for tests, debugging and `--no-ray`."""
    for rows in videos:
        batch = [rows]
        for stage in stages:
            batch = [g for rows_ in batch for g in group_by_video(stage.run_video(rows_))]
        yield from batch


class _RayStage:
    """Adapter: a Ray Data flat_map callable over {"video": pickled rows} items; builds its stage once."""

    def __init__(self, stage_cls: type[Stage], cfg: BuildConfig):
        self.stage = stage_cls(cfg)

    def __call__(self, item: dict) -> list[dict]:
        rows = pickle.loads(item["video"])
        out = self.stage.run_video(rows)
        return [{"video": pickle.dumps(g)} for g in group_by_video(out)]


_TASK_STAGES: dict[tuple[str, str], Stage] = {}


def _task_fn(stage_cls: type[Stage], cfg: BuildConfig):
    """A plain function for CPU stages run as Ray tasks; the stage is built once per worker process."""
    cfg_id = repr(cfg)  # each task unpickles its own cfg copy: key the cache by value, not id()

    def fn(item: dict) -> list[dict]:
        key = (f"{stage_cls.__module__}.{stage_cls.__qualname__}", cfg_id)
        if key not in _TASK_STAGES:
            _TASK_STAGES[key] = stage_cls(cfg)
        rows = pickle.loads(item["video"])
        return [{"video": pickle.dumps(g)} for g in group_by_video(_TASK_STAGES[key].run_video(rows))]

    return fn


def resolve_stages(spec: str | None) -> list[type[Stage]]:
    """The debug `--stages` option: a comma list of stage class names from STAGES (or `module:Class`), in order."""
    if not spec:
        return list(STAGES)
    known = {cls.__name__: cls for cls in STAGES}
    out: list[type[Stage]] = []
    for name in (x.strip() for x in spec.split(",") if x.strip()):
        if ":" in name:
            module, _, attr = name.partition(":")
            cls = getattr(importlib.import_module(module), attr)
        elif name in known:
            cls = known[name]
        else:
            raise ValueError(f"--stages: unknown stage {name!r} (known: {', '.join(known)})")
        if not (isinstance(cls, type) and issubclass(cls, Stage)):
            raise ValueError(f"--stages: {name!r} is not a Stage class")
        out.append(cls)
    return out


def run_ray(cfg: BuildConfig, videos: list[list[Row]], stages: list[type[Stage]] | None = None) -> Iterator[list[Row]]:
    import ray

    stages = list(STAGES) if stages is None else stages

    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        # A local cluster needs a CPU slot per model actor plus one for tasks, or the graph waits forever on a
        # 2-core machine; the oversubscription is harmless there (model stages are mostly waiting on each other).
        n_actors = sum(1 for cls in stages if cls.uses_model) * max(1, cfg.actors)
        local_cpus = None if address else max(os.cpu_count() or 1, n_actors + 1)
        ray.init(address=address, num_cpus=local_cpus, logging_level=logging.WARNING, log_to_driver=True)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the driver shows one bar over source videos instead
    ctx.execution_options.preserve_order = False
    items = [{"video": pickle.dumps(v)} for v in videos]
    ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
    for stage_cls in stages:
        if stage_cls.uses_model:
            ds = ds.flat_map(
                _RayStage,
                fn_constructor_args=(stage_cls, cfg),
                concurrency=max(1, cfg.actors),
                num_gpus=cfg.num_gpus or None,
                num_cpus=1,
            )
        else:
            ds = ds.flat_map(_task_fn(stage_cls, cfg), num_cpus=1)
    for item in ds.iter_rows():
        yield pickle.loads(item["video"])


def build(cfg: BuildConfig, use_ray: bool = True, stages: list[type[Stage]] | None = None) -> dict:
    """Run the whole build; returns the stats dict also written to <out>/stats.json. `stages`: debug subset
    (Commit is always appended: without it nothing would be committed)."""
    from . import sink
    from .finalize import finalize
    from .media import require_ffmpeg
    from .report import write_report

    require_ffmpeg()
    out = Path(cfg.out)
    lock = sink.take_lock(out)  # before any write: a second build on the same --out would redo our videos
    try:
        save_config(cfg, out / "config.yaml")
        sink.recover(out)
        seeds = load_manifests(cfg.manifests, cfg.langs, limit=cfg.limit)
        done = sink.done_videos(out)
        todo = [s for s in seeds if s["video_key"] not in done]
        log.info("%d source rows, %d already done (ledger), %d to process", len(seeds), len(seeds) - len(todo), len(todo))
        t0 = time.time()
        stages = list(STAGES) if stages is None else list(stages)
        if Commit not in stages:
            stages.append(Commit)
        stream = run_ray(cfg, [[s] for s in todo], stages) if (use_ray and todo) else run_local(
            [cls(cfg) for cls in stages], [[s] for s in todo]
        )
        from tqdm import tqdm

        finished = False
        try:
            with tqdm(total=len(todo), desc="videos", unit="video", file=sys.stderr, disable=None) as bar:
                last_log, n_done, n_ok, n_drop, seen = 0.0, 0, 0, 0, set()
                for rows in stream:
                    vk = rows[0]["video_key"] if rows else ""
                    if vk in seen:
                        log.warning("build: %s arrived twice; its ledger entry is written once per arrival", vk)
                    seen.add(vk)
                    n_done += 1
                    n_ok += sum(r.get("status") == "ok" for r in rows)
                    n_drop += sum(r.get("status") != "ok" for r in rows)
                    bar.update(1)
                    bar.set_postfix(ok=n_ok, dropped=n_drop)
                    if time.time() - last_log >= 30 or n_done == len(todo):  # the bar is off when logs go to a file
                        last_log = time.time()
                        log.info("progress: %d/%d videos, %d clips ok so far, %d dropped, %.0f s",
                                 n_done, len(todo), n_ok, n_drop, last_log - t0)
            finished = True
        finally:  # also on Ctrl-C or a Ray failure: the videos already committed get their shards
            summary = finalize(cfg, use_ray=use_ray and finished)
        stats = write_report(cfg)
        log.info("done in %.1f s: %s (%d shards, %d rewritten, %d duplicates)", time.time() - t0, out,
                 summary["shards"], summary["rewritten"], summary["duplicates"])
        return stats
    finally:
        lock.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.build",
        description="Curate talking-face clips from the manifests into WebDataset shards + index.parquet + report. "
        "Reruns resume: source videos already in <out>/ledger are skipped.",
    )
    p.add_argument("--lang", default="all", help=f"comma list of languages or 'all' ({','.join(LANGS)})")
    p.add_argument("--manifests", default=None, help="manifest dir: <lang>.csv files (default: manifests/sample)")
    p.add_argument("--out", default=None, help="output dir: shards/, index.parquet, report.html (default: out)")
    p.add_argument("--config", default=None, help="YAML file overriding any BuildConfig field (see config.py); "
                   "default: <manifests>/config.yaml when present")
    p.add_argument("--models-dir", default=None, help="local weights dir (default ~/.cache/talkingface-wild/models)")
    p.add_argument("--limit", type=int, default=None, help="at most N source rows per language")
    p.add_argument("--num-gpus", type=float, default=None, help="GPUs per model actor, e.g. 0.25 (default 0)")
    p.add_argument("--actors", type=int, default=None, help="actors per model stage (default 1)")
    p.add_argument("--transcribe", action="store_true", default=None, help="store a Whisper transcript in each .json")
    p.add_argument("--no-ray", action="store_true", help="run every stage in this process (debugging)")
    p.add_argument("--stages", default=None, help=argparse.SUPPRESS)  # debug: comma list of Stage class names
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    langs = list(LANGS) if args.lang == "all" else [x.strip() for x in args.lang.split(",") if x.strip()]
    bad = [x for x in langs if x not in LANGS]
    if bad:
        print(f"error: unknown language(s) {bad}; choose from {', '.join(LANGS)}", file=sys.stderr)
        return 2
    config_path = args.config
    local_yaml = Path(args.manifests or SAMPLE_MANIFESTS) / "config.yaml"
    if config_path is None and local_yaml.is_file():
        # A manifest folder may carry build settings tuned for its footage (the sample's smaller faces).
        log.info("using build settings from %s", local_yaml)
        config_path = str(local_yaml)
    try:
        cfg = load_config(
            config_path,
            langs=langs,
            manifests=args.manifests,
            out=args.out,
            models_dir=args.models_dir,
            limit=args.limit,
            num_gpus=args.num_gpus,
            actors=args.actors,
            language={"transcribe": True} if args.transcribe else None,
        )
        stats = build(cfg, use_ray=not args.no_ray, stages=resolve_stages(args.stages))
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        # bad manifest line, unknown setting, missing weights or tools: one clear line (-v adds the traceback)
        log.debug("build failed", exc_info=True)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    kept = stats.get("totals", {}).get("kept", 0)
    print(f"kept {kept} clips; shards, index.parquet and report.html in {cfg.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
