"""The Ray actor that evaluates slices of a parameter table on Aer.

Its constructor builds the Aer backend once; `evaluate` runs one contiguous slice of a table
and returns its expectation values. `AerBackend` (orchestrator/backends/aer.py) splits a large
table over several of these when configured with `workers: N` and concatenates the slices in
order, so the result is the unsplit evaluation's (bit-identical in exact mode).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp

from orchestrator.backends.aer import AerBackend, AerOptions


class CircuitWorker:
    def __init__(self, options: AerOptions) -> None:
        self.backend = AerBackend(options)

    def evaluate(self, circuit: QuantumCircuit, observables: Sequence[SparsePauliOp],
                 parameter_table: np.ndarray, shots: Optional[int], seed: Optional[int]) -> np.ndarray:
        """(rows, n_observables) for one slice; columns of the table follow circuit.parameters."""
        return self.backend.run(circuit, observables, parameter_table, shots=shots, seed=seed)


def start_circuit_workers(options: AerOptions, count: int, cpus_per_worker: float = 1) -> list:
    """Start `count` CircuitWorker actors on the connected Ray cluster; returns their handles."""
    import ray

    actor = ray.remote(num_cpus=cpus_per_worker)(CircuitWorker)
    return [actor.remote(options) for _ in range(count)]
