"""Ray circuit workers: evaluate slices of a large parameter table on several cores or nodes.

`CircuitWorker` is the actor: its constructor builds a simulator backend once (from a factory
the driver gives it, e.g. `functools.partial(AerBackend, options)`), and `evaluate` runs one
contiguous slice of a table. `FannedOutBackend` is the driver's side: it wraps the local backend,
sends tables of at least `min_rows` rows to the workers in slices and concatenates the slices in
order, so the result is the unsplit evaluation's (bit-identical in exact mode). Smaller tables
stay on the local backend. To the runner it is one backend and one job, like any other.

This module knows nothing of Aer: whatever backend the factory builds must offer
`run(circuit, observables, table, shots, seed) -> (rows, n_observables)` and, on the local
backend, `next_seed(shots)`.
"""
from __future__ import annotations

import logging
import os
import uuid
from typing import Any, Callable, Optional, Sequence

import numpy as np

from orchestrator.core.errors import BackendFailure, UserError
from orchestrator.core.usage import JobUsage
from workers.cluster import connect, place_actors, placement_timeout_s

RESTARTS = 3   # per actor: restarts after a crash, and retries of the slice it was evaluating
# a slice's wait: the placement timeout plus this per row (measured ~0.1-0.5 ms a row at 4-8 qubits)
SECONDS_PER_ROW = float(os.environ.get("ORCHESTRATOR_SECONDS_PER_ROW", "0.01"))

log = logging.getLogger(__name__)


class CircuitWorker:
    def __init__(self, make_backend: Callable[[], Any]) -> None:
        self.backend = make_backend()

    def ready(self) -> bool:
        """Returns once the actor runs somewhere: it found a place on the cluster."""
        return True

    def evaluate(self, circuit, observables: Sequence, parameter_table: np.ndarray,
                 shots: Optional[int], seed: Optional[int]) -> np.ndarray:
        """(rows, n_observables) for one slice; columns of the table follow circuit.parameters."""
        return self.backend.run(circuit, observables, parameter_table, shots=shots, seed=seed)


def start_circuit_workers(make_backend: Callable[[], Any], count: int, cpus_per_worker: float = 1,
                          timeout_s: float | None = None) -> list:
    """Start `count` CircuitWorker actors on the connected Ray cluster; returns the handles of
    those that found a place within `timeout_s` (default: the cluster's placement timeout), with
    a warning when that is fewer than asked; none at all is a UserError.

    A worker whose process dies is restarted by Ray and the slice it was evaluating runs again
    there (max_restarts, max_task_retries): a slice is a pure function of its rows, so the
    result equals an undisturbed evaluation's.
    """
    import ray

    timeout_s = placement_timeout_s() if timeout_s is None else timeout_s
    actor = ray.remote(num_cpus=cpus_per_worker, max_restarts=RESTARTS, max_task_retries=RESTARTS)(CircuitWorker)
    placed = place_actors(ray, lambda: actor.remote(make_backend), count, timeout_s)
    if not placed:
        raise UserError(f"aer: no circuit worker found a place on the Ray cluster within {timeout_s:.0f} s "
                        f"(each needs {cpus_per_worker:g} CPU; free now: {ray.available_resources().get('CPU', 0):g})")
    if len(placed) < count:
        log.warning(f"only {len(placed)} of {count} circuit workers found a place on the Ray cluster within "
                    f"{timeout_s:.0f} s: splitting tables over {len(placed)}")
    return placed


class WorkerJob:
    """A job whose table was split over circuit workers; slices come back in order.

    The wait is bounded: a worker that Ray restarts but can place nowhere (its node gone, no CPU
    free) would otherwise hold the run forever. Past the placement timeout plus a generous time
    per row, the run stops resumably, saying so in one line."""

    def __init__(self, refs: list, rows: int) -> None:
        self._refs = refs
        self.job_id = f"ray-{uuid.uuid4()}"
        self.timeout_s = placement_timeout_s() + SECONDS_PER_ROW * rows

    def result(self) -> np.ndarray:
        import ray

        try:
            return np.concatenate(ray.get(self._refs, timeout=self.timeout_s), axis=0)
        except ray.exceptions.GetTimeoutError:
            for ref in self._refs:
                ray.cancel(ref, force=True)
            free = ray.available_resources().get("CPU", 0)
            raise BackendFailure(f"aer: the circuit workers did not return a table within {self.timeout_s:.0f} s "
                                 f"(a restarted worker may have found no place on the cluster; CPUs free: {free:g})"
                                 ) from None

    session_id = None

    def usage(self) -> JobUsage:
        return JobUsage()    # a simulator bills nothing


class FannedOutBackend:
    """`local`, with tables of at least `min_rows` rows split over `workers` Ray circuit workers.

    The workers start at the first large table, on the cluster this process is connected to
    (a local Ray when none), and stop at `close()`.
    """

    def __init__(self, local, make_worker_backend: Callable[[], Any], workers: int, min_rows: int) -> None:
        if workers < 1:
            raise ValueError(f"a fanned-out backend needs at least 1 worker, not {workers}")
        self.local = local
        self.make_worker_backend = make_worker_backend
        self.workers, self.min_rows = workers, min_rows
        self.name = local.name
        self.shots = local.shots
        self.max_parameter_sets_per_job = local.max_parameter_sets_per_job
        self.transpile_target = local.transpile_target
        self.job_retries = local.job_retries
        self.max_pending_jobs = None
        self._actors: list = []

    def submit(self, circuit, observables: Sequence, parameter_table: np.ndarray, shots: Optional[int],
               tag: Optional[str] = None, max_seconds: Optional[float] = None):
        table = np.asarray(parameter_table, dtype=np.float64)
        if len(table) < self.min_rows:
            return self.local.submit(circuit, observables, table, shots)
        import ray

        actors = self._started_actors(ray)
        circuit_ref, observables_ref = ray.put(circuit), ray.put(list(observables))
        slices = np.array_split(np.arange(len(table)), len(actors))
        refs = [actor.evaluate.remote(circuit_ref, observables_ref, table[rows[0]:rows[-1] + 1],
                                      shots, self.local.next_seed(shots))
                for actor, rows in zip(actors, slices) if len(rows)]
        return WorkerJob(refs, len(table))

    def _started_actors(self, ray) -> list:
        if not self._actors:
            connect()   # a no-op when this process has joined a cluster already
            cpus = ray.cluster_resources().get("CPU", 0)
            if self.workers > cpus:   # actors that can never be placed would hang the job
                raise UserError(f"aer: {self.workers} circuit workers need that many CPUs, "
                                f"but the Ray cluster has {cpus:g}")
            self._actors = start_circuit_workers(self.make_worker_backend, self.workers)
        return self._actors

    def attach(self, job_id: str, n_rows: int, n_observables: int):
        return None   # worker jobs live in this process only

    def find(self, tag: str, n_rows: int, n_observables: int):
        return None

    def estimate_job_seconds(self, rows: int, circuit, shots: Optional[int] = None) -> float:
        return self.local.estimate_job_seconds(rows, circuit, shots)

    def seconds_per_shot(self, circuit) -> float:
        return self.local.seconds_per_shot(circuit)

    def usage(self) -> dict:
        return {**self.local.usage(), "circuit_workers": len(self._actors)}

    def close(self) -> None:
        """Stop the circuit workers this backend started, then the local backend."""
        if self._actors:
            import ray

            for actor in self._actors:
                ray.kill(actor)
            self._actors = []
        self.local.close()
