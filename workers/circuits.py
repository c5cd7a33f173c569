"""The Ray actor that evaluates slices of a parameter table on Aer.

Its constructor builds the Aer backend once; `evaluate` runs one contiguous slice of a table
and returns its expectation values. `AerBackend` (orchestrator/backends/aer.py) splits a large
table over several of these when configured with `workers: N` and concatenates the slices in
order, so the result is the unsplit evaluation's (bit-identical in exact mode).
"""
from __future__ import annotations

import sys
from typing import Optional, Sequence

import numpy as np
from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp

from orchestrator.backends.aer import AerBackend, AerOptions
from orchestrator.errors import UserError

RESTARTS = 3   # per actor: restarts after a crash, and retries of the slice it was evaluating


class CircuitWorker:
    def __init__(self, options: AerOptions) -> None:
        self.backend = AerBackend(options)

    def ready(self) -> bool:
        """Returns once the actor runs somewhere: it found a place on the cluster."""
        return True

    def evaluate(self, circuit: QuantumCircuit, observables: Sequence[SparsePauliOp],
                 parameter_table: np.ndarray, shots: Optional[int], seed: Optional[int]) -> np.ndarray:
        """(rows, n_observables) for one slice; columns of the table follow circuit.parameters."""
        return self.backend.run(circuit, observables, parameter_table, shots=shots, seed=seed)


def start_circuit_workers(options: AerOptions, count: int, cpus_per_worker: float = 1,
                          timeout_s: float | None = None) -> list:
    """Start `count` CircuitWorker actors on the connected Ray cluster; returns the handles of
    those that found a place within `timeout_s` (default: ray_runtime's placement timeout), with
    a warning on stderr when that is fewer than asked; none at all is a UserError.

    A worker whose process dies is restarted by Ray and the slice it was evaluating runs again
    there (max_restarts, max_task_retries): a slice is a pure function of its rows, so the
    result equals an undisturbed evaluation's.
    """
    import ray

    from orchestrator.ray_runtime import placed_actors, placement_timeout_s

    timeout_s = placement_timeout_s() if timeout_s is None else timeout_s
    actor = ray.remote(num_cpus=cpus_per_worker, max_restarts=RESTARTS, max_task_retries=RESTARTS)(CircuitWorker)
    started = [actor.remote(options) for _ in range(count)]
    placed = placed_actors(ray, started, timeout_s)
    for worker in started:
        if worker not in placed:
            ray.kill(worker)
    if not placed:
        raise UserError(f"aer: no circuit worker found a place on the Ray cluster within {timeout_s:.0f} s "
                        f"(each needs {cpus_per_worker:g} CPU; free now: {ray.available_resources().get('CPU', 0):g})")
    if len(placed) < count:
        print(f"warning: only {len(placed)} of {count} circuit workers found a place on the Ray cluster within "
              f"{timeout_s:.0f} s: splitting tables over {len(placed)}", file=sys.stderr)
    return placed
