"""python -m pipeline.build: manifests -> Ray Data graph of stages -> ledger -> finalize -> shards, index, report.

The unit of work in the graph is one source video (all its clip rows travel together); its last stage (Commit)
writes the video's ledger entry where the video was processed, and a rerun skips videos with an entry. The driver
only gathers rows (progress, and the videos left for the next run); then finalize (pipeline/finalize.py) turns
the ledger into shards, index.parquet, stats.json and report.html, on Ray tasks when running on Ray.
CPU stages run as Ray tasks, model stages as actor pools (fractional GPUs with --num-gpus).
`ray.init()` starts a local cluster; set RAY_ADDRESS to join an existing one (the --out dir must then be on
storage every node can reach).

Exit codes (EXIT_* below): 0 done; 1 the run failed; 2 refused before any work (arguments, manifest, config,
tools, weights, a locked --out, an unreachable Ray cluster); 3 finished with videos left for the next run after
transient failures (<out>/pending.json; rerun the same command); 130 interrupted (finished videos are committed).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import pickle
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from . import faults
from .config import LANGS, SAMPLE_MANIFESTS, BuildConfig, load_config, save_config
from .ledger_parts import part_of
from .manifest import load_manifests
from .overlap import run_overlapped
from .ray_connect import RAY_CONNECT_TIMEOUT_S, RayUnavailable, connect_ray  # noqa: F401
from .record import STATUS_OK, STATUS_RETRY, Row
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

EXIT_OK, EXIT_FAILED, EXIT_REFUSED, EXIT_PENDING, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

# The pipeline, read as one list.
STAGES: list[type[Stage]] = [Download, Normalize, ShotSplit, FaceTrack, LanguageTagger, SyncFilter, QualityFilter,
                             Commit]

for _var, _val in (("RAY_USAGE_STATS_ENABLED", "0"), ("HF_HUB_OFFLINE", "1"), ("PYANNOTE_METRICS_ENABLED", "0")):
    os.environ.setdefault(_var, _val)


def group_by_video(rows: Iterable[Row]) -> list[list[Row]]:
    """The units of work: rows of one video, or of one part of a fanned-out video (pipeline/ledger_parts.py)."""
    groups: dict[tuple[str, int], list[Row]] = {}
    for row in rows:
        groups.setdefault((row["video_key"], part_of(row)[0]), []).append(row)
    return list(groups.values())


def run_local(stages: list[Stage], videos: Iterable[list[Row]]) -> Iterator[list[Row]]:
    """The same graph in this process, no Ray, one video at a time through every stage: for tests, debugging
    and `--no-ray --sequential` (`--no-ray` overlaps the stages: pipeline/overlap.py)."""
    for rows in videos:
        batch = [rows]
        for stage in stages:
            batch = [g for rows_ in batch for g in group_by_video(stage.apply(rows_))]
        yield from batch


class _RayStage:
    """Adapter: a Ray Data flat_map callable over {"video": pickled rows} items; builds its stage once."""

    def __init__(self, stage_cls: type[Stage], cfg: BuildConfig):
        self.stage = stage_cls(cfg)

    def __call__(self, item: dict) -> list[dict]:
        rows = pickle.loads(item["video"])
        out = self.stage.apply(rows)
        return [{"video": pickle.dumps(g)} for g in group_by_video(out)]


class _RayBatchStage(_RayStage):
    """Adapter: a Ray Data map_batches callable over several units of work at once, so a stage that batches its
    model (language ID) fills its batches with the clips of many videos."""

    def __call__(self, batch: dict) -> dict:
        groups = [pickle.loads(bytes(b)) for b in batch["video"]]
        return {"video": [pickle.dumps(g) for g in group_by_video(apply_across(self.stage, groups))]}


def apply_across(stage: Stage, groups: list[list[Row]]) -> list[Row]:
    """stage.apply over the rows of several units in one call; a unit with a retry_later row passes untouched
    (as Stage.apply leaves it), the others' rows are batched together."""
    waiting = [g for g in groups if any(r.get("status") == STATUS_RETRY for r in g)]
    rows = [r for g in groups if not any(r.get("status") == STATUS_RETRY for r in g) for r in g]
    return [r for g in waiting for r in g] + (stage.apply(rows) if rows else [])


_TASK_STAGES: dict[tuple[str, str], Stage] = {}


def _task_fn(stage_cls: type[Stage], cfg: BuildConfig):
    """A plain function for CPU stages run as Ray tasks; the stage is built once per worker process."""
    cfg_id = repr(cfg)  # each task unpickles its own cfg copy: key the cache by value, not id()

    def fn(item: dict) -> list[dict]:
        key = (f"{stage_cls.__module__}.{stage_cls.__qualname__}", cfg_id)
        if key not in _TASK_STAGES:
            _TASK_STAGES[key] = stage_cls(cfg)
        rows = pickle.loads(item["video"])
        return [{"video": pickle.dumps(g)} for g in group_by_video(_TASK_STAGES[key].apply(rows))]

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


def start_ray(cfg: BuildConfig, stages: list[type[Stage]]) -> None:
    """Join RAY_ADDRESS or start a local cluster, unless this process is connected already."""
    import ray

    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        # A local cluster needs a CPU slot per model actor plus one for tasks, or the graph waits forever on a
        # 2-core machine; the oversubscription is harmless there (model stages are mostly waiting on each other).
        n_actors = sum(1 for cls in stages if cls.uses_model) * max(1, cfg.actors)
        connect_ray(address, None if address else max(os.cpu_count() or 1, n_actors + 1))


def actor_pool(cfg: BuildConfig, n_model_stages: int, resources: dict[str, float]):
    """The Ray Data compute strategy of one model stage: `actors: N` a fixed pool of N; `actors: 0` (default) an
    autoscaling pool from 1 to this stage's share of the cluster (its CPUs, or its GPUs at num_gpus per actor,
    split evenly between the model stages), so a bigger cluster runs more actors without a flag."""
    from ray.data import ActorPoolStrategy

    if cfg.actors > 0:
        return ActorPoolStrategy(size=cfg.actors)
    share = float(resources.get("CPU", 1)) / max(1, n_model_stages)
    if cfg.num_gpus:
        share = min(share, float(resources.get("GPU", 0)) / cfg.num_gpus / max(1, n_model_stages))
    return ActorPoolStrategy(min_size=1, max_size=max(1, int(share)))


def run_ray(cfg: BuildConfig, videos: list[list[Row]], stages: list[type[Stage]] | None = None) -> Iterator[list[Row]]:
    import ray

    stages = list(STAGES) if stages is None else stages
    start_ray(cfg, stages)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the driver shows one bar over source videos instead
    ctx.execution_options.preserve_order = False
    items = [{"video": pickle.dumps(v)} for v in videos]
    ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
    # Ray Data reruns a task whose worker died (OOM-killed, crashed) forever by default: one video that kills
    # every worker would hang the build. retry.worker_crashes bounds it; then the stream fails, and the videos not
    # yet finished are left for the next run (exit 3).
    crashes = max(0, cfg.retry.worker_crashes)
    actor_args = {"max_restarts": crashes, "max_task_retries": crashes}  # static remote args (ray_remote_args_fn
    task_args = {"max_retries": crashes}  # is deprecated in Ray 2.60); they override Ray Data's -1 defaults
    resources = ray.cluster_resources()
    n_model = sum(1 for cls in stages if cls.uses_model)
    for stage_cls in stages:
        if stage_cls.uses_model and stage_cls.units_per_call(cfg) > 0:
            ds = ds.map_batches(
                _RayBatchStage,
                batch_size=stage_cls.units_per_call(cfg),
                fn_constructor_args=(stage_cls, cfg),
                compute=actor_pool(cfg, n_model, resources),
                num_gpus=cfg.num_gpus or None,
                num_cpus=1,
                **actor_args,
            )
        elif stage_cls.uses_model:
            ds = ds.flat_map(
                _RayStage,
                fn_constructor_args=(stage_cls, cfg),
                compute=actor_pool(cfg, n_model, resources),
                num_gpus=cfg.num_gpus or None,
                num_cpus=1,
                **actor_args,
            )
        else:
            ds = ds.flat_map(_task_fn(stage_cls, cfg), num_cpus=1, **task_args)
        if stage_cls is ShotSplit:  # fan-out: the parts of a long video leave in one block; one block per
            ds = ds.repartition(target_num_rows_per_block=1)  # part (streaming) lets them run on any worker
    for item in ds.iter_rows():
        yield pickle.loads(item["video"])


def build(cfg: BuildConfig, use_ray: bool = True, stages: list[type[Stage]] | None = None,
          sequential: bool = False) -> dict:
    """Run the whole build; returns the stats dict also written to <out>/stats.json. `stages`: debug subset
    (Commit is always appended: without it nothing would be committed). Without Ray the stages overlap across
    videos, a thread each (pipeline/overlap.py); `sequential` takes one video at a time through all of them.

    Order: manifests are validated and their keys checked (nothing written yet), then the --out lock is taken
    before anything goes into --out. A rerun with nothing left to do builds no stage (no model loads); it still
    finalizes, because the last finalize may have been killed, unless its record says it completed on exactly
    these inputs (then it only reads stats.json)."""
    from . import sink
    from .finalize import finalize, is_complete, mark_complete
    from .media import require_ffmpeg
    from .report import write_report

    require_ffmpeg()
    out = Path(cfg.out)
    seeds = load_manifests(cfg.manifests, cfg.langs, limit=cfg.limit)
    lock = sink.take_lock(out)  # first: before anything is written, and before recover deletes .tmp files
    try:
        save_config(cfg, out / "config.yaml")
        sink.recover(out)
        done = sink.done_videos(out)
        todo = [s for s in seeds if s["video_key"] not in done]
        log.info("%d source rows, %d already done (ledger), %d to process", len(seeds), len(seeds) - len(todo), len(todo))
        t0 = time.time()
        pending: dict[str, dict[str, str]] = {}
        if not todo:
            log.info("nothing to do: every source video is in %s", out / "ledger")
            if is_complete(cfg, pending):
                log.info("the last finalize completed on these inputs: shards, index and report are current")
                return json.loads((out / "stats.json").read_text())
        finished = False
        try:
            if todo:
                stages = list(STAGES) if stages is None else list(stages)
                if Commit not in stages:
                    stages.append(Commit)
                stopped = _run_stream(cfg, todo, use_ray, stages, pending, t0, sequential)
                if stopped is not None:  # a transient failure of the whole stream (the cluster lost, ...)
                    done = sink.done_videos(out)
                    for seed in todo:
                        if seed["video_key"] not in done:
                            pending.setdefault(seed["video_key"], {"stage": "build", "detail": faults.describe(stopped)})
            finished = True
        finally:  # also on Ctrl-C or a Ray failure: the videos already committed get their shards
            summary = _finalize_anyway(cfg, use_ray and finished, finished, finalize)
            pending |= summary["pending"] if summary is not None else {}
            sink.write_pending(out, pending)
        stats = write_report(cfg, pending=pending)
        mark_complete(cfg, pending)
        log.info("done in %.1f s: %s (%d shards, %d rewritten, %d duplicates)", time.time() - t0, out,
                 summary["shards"], summary["rewritten"], summary["duplicates"])  # fmt: skip
        return stats
    finally:
        lock.close()


def _finalize_anyway(cfg: BuildConfig, use_ray: bool, finished: bool, finalize) -> dict | None:
    """finalize(); on the way out of a failed or interrupted run, a failing finalize must not hide why the run
    stopped (it is logged; the next run finalizes again), so it returns None there instead of raising."""
    if finished:
        return finalize(cfg, use_ray=use_ray)
    try:
        return finalize(cfg, use_ray=False)
    except Exception as exc:
        log.error("finalize after the failed run failed too (the next run finalizes again): %s", faults.describe(exc))
        return None


def _run_stream(cfg: BuildConfig, todo: list[Row], use_ray: bool, stages: list[type[Stage]],
                pending: dict[str, dict[str, str]], t0: float, sequential: bool = False) -> BaseException | None:
    """Gather every finished video (Commit wrote its ledger entry where it ran); a video with a retry_later row
    goes into `pending`. Returns the transient error that cut the stream short, if any."""
    from tqdm import tqdm

    videos = [[s] for s in todo]
    if use_ray:
        start_ray(cfg, stages)  # before the stream: a cluster that cannot be reached is a refusal, not a retry
        stream = run_ray(cfg, videos, stages)
    elif sequential:
        stream = run_local([cls(cfg) for cls in stages], videos)
    else:  # one thread per stage, videos overlapped (pipeline/overlap.py)
        stream = run_overlapped([cls(cfg) for cls in stages], videos, group_by_video)
    with tqdm(total=len(todo), desc="videos", unit="video", file=sys.stderr, disable=None) as bar:
        last_log, n_done, n_ok, n_drop = 0.0, 0, 0, 0
        seen: dict[str, set[int]] = {}  # video -> parts arrived
        try:
            for rows in stream:
                vk = rows[0]["video_key"] if rows else ""
                part, n_parts = part_of(rows[0]) if rows else (0, 1)
                if part in seen.setdefault(vk, set()):
                    log.warning("build: %s part %d arrived twice; it is committed once per arrival", vk, part)
                seen[vk].add(part)
                waiting = next((r for r in rows if r.get("status") == STATUS_RETRY), None)
                if waiting is not None:  # not ledgered: the next run redoes the whole video
                    log.warning("build: %s left for the next run (%s: %s)", vk, waiting.get("drop_stage") or "?",
                                str(waiting.get("drop_detail", ""))[:200])  # fmt: skip
                    pending[vk] = {"stage": str(waiting.get("drop_stage", "")),
                                   "detail": str(waiting.get("drop_detail", ""))[:500]}  # fmt: skip
                else:
                    n_ok += sum(r.get("status") == STATUS_OK for r in rows)
                    n_drop += sum(r.get("status") != STATUS_OK for r in rows)
                if len(seen[vk]) < n_parts:
                    continue  # the video is counted when its last part is in
                n_done += 1
                bar.update(1)
                bar.set_postfix(ok=n_ok, dropped=n_drop, later=len(pending))
                if time.time() - last_log >= 30 or n_done == len(todo):  # the bar is off when logs go to a file
                    last_log = time.time()
                    log.info("progress: %d/%d videos, %d clips ok so far, %d dropped, %d videos left for the next "
                             "run, %.0f s", n_done, len(todo), n_ok, n_drop, len(pending), last_log - t0)  # fmt: skip
        except Exception as exc:
            if not faults.is_transient(exc):
                raise
            log.error("the run stopped early after a transient failure: %s", faults.describe(exc))
            return exc
        finally:  # a Ctrl-C or an error here: the in-process stage threads stop between rows now, not
            if not use_ray:  # when the generator is collected (the traceback holds this frame, and so the stream)
                stream.close()
    return None


def exit_code(exc: BaseException) -> int:
    """The exit code for a failure that reached main() (see the module docstring)."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, RayUnavailable):
        return EXIT_REFUSED
    if faults.is_transient(exc):
        return EXIT_PENDING
    if isinstance(exc, (ValueError, RuntimeError, OSError)):  # manifest, config, tools, weights, lock, Ray
        return EXIT_REFUSED
    return EXIT_FAILED


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
                   "default: <manifests>/config.yaml when present, which may set thresholds only")
    p.add_argument("--models-dir", default=None, help="local weights dir (default ~/.cache/talkingface-wild/models)")
    p.add_argument("--limit", type=int, default=None, help="at most N source rows per language")
    p.add_argument("--num-gpus", type=float, default=None, help="GPUs per model actor, e.g. 0.25 (default 0)")
    p.add_argument("--actors", type=int, default=None, help="actors per model stage (default 0: an autoscaling pool "
                   "from 1 to the stage's share of the cluster's CPUs or GPUs)")
    p.add_argument("--transcribe", action="store_true", default=None, help="store a Whisper transcript in each .json")
    p.add_argument("--no-ray", action="store_true", help="run every stage in this process, without Ray: a thread "
                   "per stage, so one video's faces overlap the next stages of the one before")
    p.add_argument("--sequential", action="store_true", help="with --no-ray: one video at a time through every "
                   "stage (debugging)")
    p.add_argument("--stages", default=None, help=argparse.SUPPRESS)  # debug: comma list of Stage class names
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """The command line: every failure ends in one line on stderr and a non-zero exit (traceback with -v)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    langs = list(LANGS) if args.lang == "all" else [x.strip() for x in args.lang.split(",") if x.strip()]
    if args.sequential and not args.no_ray:
        print("error: --sequential is a mode of --no-ray (on Ray the stages always overlap)", file=sys.stderr)
        return EXIT_REFUSED
    bad = [x for x in langs if x not in LANGS]
    if bad:
        print(f"error: unknown language(s) {bad}; choose from {', '.join(LANGS)}", file=sys.stderr)
        return EXIT_REFUSED
    config_path, trusted = args.config, True
    local_yaml = Path(args.manifests or SAMPLE_MANIFESTS) / "config.yaml"
    if config_path is None and local_yaml.is_file():
        # A manifest folder may carry thresholds tuned for its footage (the sample's smaller faces), nothing else.
        log.info("using thresholds from %s", local_yaml)
        config_path, trusted = str(local_yaml), False
    try:
        cfg = load_config(
            config_path,
            trusted=trusted,
            langs=langs,
            manifests=args.manifests,
            out=args.out,
            models_dir=args.models_dir,
            limit=args.limit,
            num_gpus=args.num_gpus,
            actors=args.actors,
            language={"transcribe": True} if args.transcribe else None,
        )
        stats = build(cfg, use_ray=not args.no_ray, stages=resolve_stages(args.stages), sequential=args.sequential)
    except BaseException as exc:  # noqa: BLE001 - one clear line for every failure (-v adds the traceback)
        if isinstance(exc, SystemExit):
            raise
        log.debug("build failed", exc_info=True)
        code = exit_code(exc)
        if code == EXIT_INTERRUPTED:
            print("interrupted: finished videos are committed; rerun the same command to go on", file=sys.stderr)
        else:
            hint = " (a transient failure: rerun the same command)" if code == EXIT_PENDING else ""
            print(f"error: {faults.describe(exc) if code == EXIT_FAILED else exc}{hint}", file=sys.stderr)
        if any(t.name == "ray-init" and t.is_alive() for t in threading.enumerate()):
            sys.stderr.flush()  # a Ray connect still hangs in its thread: leave now, it would only add noise
            os._exit(code)
        return code
    kept = stats.get("totals", {}).get("kept", 0)
    pending = stats.get("pending", {}).get("videos", 0)
    if pending:
        print(f"kept {kept} clips; {pending} videos left for the next run after transient failures (listed in "
              f"{Path(cfg.out) / 'pending.json'}): rerun the same command to retry them")  # fmt: skip
        return EXIT_PENDING
    print(f"kept {kept} clips; shards, index.parquet and report.html in {cfg.out}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
