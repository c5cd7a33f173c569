"""Ray for the whole project: joining a cluster (or starting a local one) the same way for every
command, and placing actors on it without ever waiting for room that may never come."""
from __future__ import annotations

import logging
import os
import socket
import sys
from typing import Any, Callable, Optional

from orchestrator.core.errors import UserError

PLACEMENT_TIMEOUT_S = 60.0  # ORCHESTRATOR_PLACEMENT_TIMEOUT_S overrides it


def connect(address: Optional[str] = None):
    """Join the cluster at `address` (or RAY_ADDRESS); otherwise start a local Ray on this machine.

    What the workers print or log (warnings, errors, tracebacks) reaches this process's output,
    each line prefixed with the worker's name and pid (and its node's ip on another node): on a
    cluster, `ray job logs` shows it. Without a terminal, the prefixes carry no colour codes."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not sys.stderr.isatty():
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    import ray

    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        check_reachable(address)
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=True)
    else:
        # Ray starts workers at niceness 15: on a machine doing anything else, the actors that do
        # all the work would starve behind it. Our own local cluster runs them at normal priority.
        os.environ.setdefault("RAY_worker_niceness", "0")
        ray.init(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=True,
                 configure_logging=True)
    return ray


def check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """Refuse an address nothing answers at, at once: Ray itself would retry it for minutes.

    `auto` and `local` are left to Ray (they name no host)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        if address in ("auto", "local"):
            return
        raise UserError(f"Ray address {address!r} is not host:port (nor 'auto')")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as problem:
        raise UserError(f"no Ray cluster answers at {address} ({problem.strerror or problem}); "
                        f"check --ray-address / RAY_ADDRESS") from None


def placement_timeout_s() -> float:
    """How long an actor may wait for a place on the cluster before the run goes on without it."""
    return float(os.environ.get("ORCHESTRATOR_PLACEMENT_TIMEOUT_S", PLACEMENT_TIMEOUT_S))


def place_actors(ray, start: Callable[[], Any], count: int, timeout_s: float) -> list:
    """Start `count` actors with `start()` and keep those that found a place on the cluster within
    `timeout_s`; the others are killed, so their requests do not linger in Ray's queue."""
    started = [start() for _ in range(count)]
    placed = placed_actors(ray, started, timeout_s)
    for actor in started:
        if actor not in placed:
            ray.kill(actor)
    return placed


def placed_actors(ray, actors: list, timeout_s: float) -> list:
    """The actors whose ready() returned within `timeout_s`: those that found a place on the cluster.

    Ray queues an actor it has no room for until room appears, which may be never: this bounds the wait.
    """
    probes = {actor.ready.remote(): actor for actor in actors}
    done, _ = ray.wait(list(probes), num_returns=len(probes), timeout=timeout_s)
    return [probes[ref] for ref in done if ray_call_succeeded(ray, ref)]


def ray_call_succeeded(ray, ref) -> bool:
    try:
        ray.get(ref)
        return True
    except ray.exceptions.RayActorError:
        return False
