"""Joining a Ray cluster or starting a local one, with bounded waits and one clear error.

A dead RAY_ADDRESS (nothing listening) is refused at once by a TCP probe of the GCS port; an address that
accepts connections but never answers is given up after RAY_CONNECT_TIMEOUT_S (Ray itself would retry for many
minutes); RAY_ADDRESS=auto with no cluster says so; a local start that fails (ports, a slow raylet under load) is
tried once more. Every failure is a RayUnavailable naming the address, which the build reports as a refusal.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from . import faults

log = logging.getLogger(__name__)

RAY_CONNECT_TIMEOUT_S = float(os.environ.get("TFW_RAY_CONNECT_TIMEOUT_S", 30.0))  # joining RAY_ADDRESS


class RayUnavailable(RuntimeError):
    """Ray could not be joined or started: the build refuses to begin (exit 2), whatever the cause's wording."""


def _init_in_thread(timeout: float, **kwargs) -> None:
    """ray.init(**kwargs), given up after `timeout` s: a silent peer would otherwise block it for many minutes.
    (A hung attempt stays in a daemon thread; main() then exits at once after the error line.)"""
    import ray

    result: list[BaseException | None] = []

    def go() -> None:
        try:
            ray.init(**kwargs)
            result.append(None)
        except BaseException as exc:  # handed to the caller's thread
            result.append(exc)

    thread = threading.Thread(target=go, name="ray-init", daemon=True)
    thread.start()
    thread.join(timeout)
    if not result:
        raise RuntimeError(f"Ray did not answer within {timeout:.0f} s")
    if result[0] is not None:
        raise result[0]


def connect_ray(address: str | None, num_cpus: int | None) -> None:
    """Join the cluster at `address` (RAY_ADDRESS) or start a local one: a bounded wait and one clear error."""
    kwargs = {"num_cpus": num_cpus, "logging_level": logging.WARNING, "log_to_driver": True}
    if address:
        if address != "auto":
            hostport = address.split("://", 1)[-1].rstrip("/")
            host, _, port = hostport.rpartition(":")
            try:
                with socket.create_connection((host or "127.0.0.1", int(port)), timeout=5.0):
                    pass
            except (OSError, ValueError) as exc:
                raise RayUnavailable(f"cannot reach the Ray cluster at {address} (RAY_ADDRESS): {exc}; "
                                   "start it, fix RAY_ADDRESS, or unset it for a local cluster") from None
        try:
            _init_in_thread(RAY_CONNECT_TIMEOUT_S, address=address, **kwargs)
        except Exception as exc:
            raise RayUnavailable(f"cannot join the Ray cluster at {address} (RAY_ADDRESS): {exc}") from None
        return
    import ray

    for attempt in (1, 2):  # a local start can fail under load (ports, a slow raylet): once more, then give up
        try:
            # address="local": a new cluster of our own. A bare ray.init() joins the cluster named in
            # <RAY_TMPDIR>/ray/ray_current_cluster (the last `ray start` on this machine, even a dead one),
            # which refuses num_cpus: joining is what RAY_ADDRESS is for.
            ray.init(address="local", **kwargs)
            return
        except Exception as exc:
            if attempt == 2:
                raise RayUnavailable(f"could not start a local Ray cluster: {faults.describe(exc)}") from None
            log.warning("starting a local Ray cluster failed (%s); trying once more", faults.describe(exc))
            ray.shutdown()
            time.sleep(2.0)
