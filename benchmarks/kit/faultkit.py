"""Running the real `python -m pipeline.build` under injected faults: a local HTTP server that serves faults,
the build as a subprocess, and readers for what it wrote (shards, index, pending.json). Used by
benchmarks/bench_faults.py and tests/reliability/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def env(**extra: str) -> dict[str, str]:
    """The build's environment: this checkout importable, one thread per process, no inherited fault plan."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TFW_FAULTS", "RAY_ADDRESS"))}
    return base | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0", **extra}


def manifest(dirpath: Path, lines: dict[str, str], lang: str = "en") -> Path:
    """<dirpath>/<lang>.csv with id -> source lines."""
    dirpath.mkdir(parents=True, exist_ok=True)
    body = "id,source,license,note\n" + "".join(f"{i},{src},test,\n" for i, src in lines.items())
    (dirpath / f"{lang}.csv").write_text(body)
    return dirpath


def build(out: Path, manifests: Path, *args: str, stages: str | None = None, config: Path | None = None,
          extra_env: dict[str, str] | None = None, timeout: float = 600, prefix: list[str] | None = None,
          ray: bool = False, lang: str = "en") -> subprocess.CompletedProcess:  # fmt: skip
    """One real `python -m pipeline.build` (no assertion on its exit code); `prefix` wraps the command."""
    cmd = [sys.executable, "-m", "pipeline.build", "--lang", lang, "--manifests", str(manifests), "--out", str(out)]
    if config is not None:
        cmd += ["--config", str(config)]
    if stages:
        cmd += ["--stages", stages]
    if not ray:
        cmd.append("--no-ray")
    return subprocess.run([*(prefix or []), *cmd, *args], cwd=ROOT, env=env(**(extra_env or {})),
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def shard_keys(out: Path) -> list[str]:
    """Every sample key in every committed shard (with repeats, so duplicates show)."""
    import webdataset as wds

    urls = sorted(str(p) for p in (out / "shards").rglob("*.tar"))
    return [s["__key__"] for s in wds.WebDataset(urls, shardshuffle=False, empty_check=False)] if urls else []


def shard_json(out: Path) -> dict[str, dict]:
    """key -> the sample's .json, for every committed sample."""
    import webdataset as wds

    urls = sorted(str(p) for p in (out / "shards").rglob("*.tar"))
    samples = wds.WebDataset(urls, shardshuffle=False, empty_check=False) if urls else []
    return {s["__key__"]: json.loads(s["json"]) for s in samples}


def index_rows(out: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(out / "index.parquet").to_pylist()


def pending(out: Path) -> list[str]:
    """Video keys <out>/pending.json lists (left for the next run)."""
    path = out / "pending.json"
    return [e["video_key"] for e in json.loads(path.read_text())["pending"]] if path.exists() else []


class FaultServer:
    """A real HTTP server on 127.0.0.1. Routes are `path -> handler(request)`; `sent` counts bytes per path."""

    def __init__(self) -> None:
        self.routes: dict[str, Callable[[BaseHTTPRequestHandler], None]] = {}
        self.hits: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()
        self.planned: dict[str, list[str]] = {}  # path -> faults not served yet (flaky routes)
        self.stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                server.hits[path] += 1
                route = server.routes.get(path)
                if route is None:
                    self.send_error(404)
                    return
                try:
                    route(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a killed download)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a client that went away (a killed download, a reset we served): not news

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    # ---- handlers ------------------------------------------------------------------------------------------
    @staticmethod
    def head(req: BaseHTTPRequestHandler, code: int, length: int | None, ctype: str = "video/mp4") -> None:
        req.send_response(code)
        req.send_header("Content-Type", ctype)
        if length is None:
            req.send_header("Connection", "close")
            req.close_connection = True
        else:
            req.send_header("Content-Length", str(length))
        req.end_headers()

    def file(self, path: str, body: bytes) -> None:
        def serve(req):
            self.head(req, 200, len(body))
            req.wfile.write(body)
            self.sent[path] += len(body)

        self.routes[path] = serve

    def zeros(self, path: str, total: int, with_length: bool) -> None:
        """`total` bytes of zeros as video/mp4, generated as they are sent (never held in memory)."""
        chunk = bytes(1 << 20)

        def serve(req):
            self.head(req, 200, total if with_length else None)
            left = total
            while left > 0 and not self.stop.is_set():
                n = min(left, len(chunk))
                req.wfile.write(chunk[:n])
                self.sent[path] += n
                left -= n

        self.routes[path] = serve

    def drip(self, path: str, every_s: float, total: int = 1 << 20) -> None:
        """1 KiB every `every_s` seconds: no read ever times out, the download never ends on its own."""

        def serve(req):
            self.head(req, 200, total)
            while not self.stop.is_set():
                req.wfile.write(bytes(1024))
                req.wfile.flush()
                self.sent[path] += 1024
                self.stop.wait(every_s)

        self.routes[path] = serve

    def flaky(self, path: str, body: bytes, faults: list[str]) -> None:
        """Serves `body`, but answers the first requests with the listed faults in turn: "503", "429", "reset"."""
        todo = self.planned.setdefault(path, [])
        todo[:] = list(faults)
        lock = threading.Lock()

        def serve(req):
            with lock:
                fault = todo.pop(0) if todo else None
            if fault == "reset":
                req.close_connection = True
                req.connection.shutdown(2)  # no answer at all: the client sees the connection reset / closed
                return
            if fault is not None:
                req.send_response(int(fault))
                req.send_header("Content-Length", "0")
                if fault == "429":
                    req.send_header("Retry-After", "0")
                req.end_headers()
                return
            self.head(req, 200, len(body))
            req.wfile.write(body)
            self.sent[path] += len(body)

        self.routes[path] = serve


def fault_campaign(work: Path, media: Path, clips: tuple[str, ...], http_faults: dict[str, list[str]], plan: str,
                   config_yaml: str, stages: str | None = None, ray: bool = False, max_reruns: int = 2,
                   log: Callable[[str], None] = print) -> dict:  # fmt: skip
    """A fault-free build, then builds under the planned faults until one exits 0 (at most 1 + max_reruns).

    `clips` (under media/video_av) are served by a FaultServer; `http_faults[id]` are the faults its URL serves
    first; `plan` is a TFW_FAULTS plan (pipeline/inject.py) whose budget is shared by every run. Returns the
    figures: runs [(exit, faults fired, of them HTTP, videos pending, clips kept, wall s)], fired, planned, the
    kept keys of both builds, duplicates, whether every drop has a reason."""
    import shutil
    import time

    from pipeline import inject

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    server = FaultServer()
    try:
        bodies = {Path(c).stem.lower(): (media / "video_av" / c).read_bytes() for c in clips}
        for name, body in bodies.items():
            server.file(f"/{name}.mp4", body)
        man = manifest(work / "manifests", {name: f"{server.base}/{name}.mp4" for name in bodies})
        config = work / "build.yaml"
        config.write_text(config_yaml)
        n_http = sum(len(v) for v in http_faults.values())
        planned = n_http + sum(n for _, _, n in inject.parse(plan))
        log(f"{len(bodies)} videos served from {server.base}; {planned} transient faults planned ({n_http} HTTP, {plan})")
        t0 = time.monotonic()
        ref = build(work / "reference", man, config=config, stages=stages, ray=ray, timeout=3600)
        if ref.returncode != 0:
            raise RuntimeError(f"the fault-free build failed:\n{ref.stderr[-4000:]}")
        want = sorted(shard_keys(work / "reference"))
        log(f"fault-free build: exit 0, {len(want)} clips kept, {time.monotonic() - t0:.0f} s")
        for name, body in bodies.items():  # the same URLs, now failing first
            server.flaky(f"/{name}.mp4", body, http_faults.get(name, []))
        state, out = work / "faults", work / "faulty"
        env = {"TFW_FAULTS": plan, "TFW_FAULTS_DIR": str(state)}
        runs: list[tuple[int, int, int, int, int, float]] = []
        fired = http = 0
        for _ in range(1 + max_reruns):
            t0 = time.monotonic()
            proc = build(out, man, config=config, stages=stages, ray=ray, extra_env=env, timeout=3600)
            wall = time.monotonic() - t0
            http_now = n_http - sum(len(v) for v in server.planned.values())
            fired_now = (sum(inject.fired(state).values()) if state.exists() else 0) + http_now
            runs.append((proc.returncode, fired_now - fired, http_now - http, len(pending(out)), len(shard_keys(out)),
                         wall))  # fmt: skip
            fired, http = fired_now, http_now
            if proc.returncode not in (0, 3):
                raise RuntimeError(f"a faulty build failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
            if proc.returncode == 0:
                break
        got = shard_keys(out)
        return {
            "runs": runs, "fired": fired, "planned": planned, "want": want, "got": sorted(got),
            "duplicates": sorted(k for k, n in Counter(got).items() if n > 1),
            "reasons_ok": all(r["drop_reason"] for r in index_rows(out) if r["status"] != "ok"),
            "by_site": inject.fired(state) if state.exists() else {}, "http": http,
        }
    finally:
        server.close()
