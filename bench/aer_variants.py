"""The Aer execution options bench/step.py compares on the W1 table, built here and not in the
package: a run uses one way only (orchestrator/quantum/backends/aer.py: AerSimulator, runtime
parameter binding, the `auto` readout), and this is the measurement behind that choice.

  AerVariant     AerBackend on an AerSimulator built with other options (method, runtime
                 parameter binding, max_parallel_threads / _experiments) and another readout
                 (probabilities | expectation_values | auto; plan_readout in aer.py)
  EstimatorRun   Aer's EstimatorV2, the whole table as one PUB, with backend options
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp
from qiskit_aer import AerSimulator

from orchestrator.quantum.backends.aer import AerBackend, AerOptions, ReadoutPlan, plan_readout
from orchestrator.quantum.backends.estimator import estimator_pub, expectations_from_pub_result

READOUTS = ("auto", "probabilities", "expectation_values")
METHODS = ("statevector", "density_matrix", "automatic")


class AerVariant(AerBackend):
    """Exact Aer with the given execution options; the defaults are what a run uses."""

    def __init__(self, readout: str = "auto", runtime_parameter_bind: bool = True, method: Optional[str] = None,
                 max_parallel_threads: int = 0, max_parallel_experiments: int = 1) -> None:
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {', '.join(READOUTS)}, not {readout!r}")
        if method is not None and method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
        super().__init__(AerOptions(max_parallel_threads=max_parallel_threads))
        self.readout = readout
        self.simulator = AerSimulator(method=method or "statevector",
                                      runtime_parameter_bind_enable=runtime_parameter_bind,
                                      max_parallel_threads=max_parallel_threads,
                                      max_parallel_experiments=max_parallel_experiments)
        self.transpile_target = self.simulator
        self._readout_plans: dict = {}

    def _plan(self, circuit: QuantumCircuit, observables: Sequence[SparsePauliOp],
              shots: Optional[int]) -> ReadoutPlan:
        # as AerBackend._plan, with this variant's readout: one plan per circuit, built once
        key = (id(circuit), tuple(str(o) for o in observables), shots is not None)
        entry = self._readout_plans.get(key)
        if entry is None or entry[0] is not circuit:
            entry = (circuit, plan_readout(circuit, observables, shots, self.readout))
            self._readout_plans[key] = entry
        return entry[1]


class EstimatorRun:
    """Aer's EstimatorV2 (exact) evaluating `table` as one PUB: call it for (rows, n_observables)."""

    def __init__(self, circuit: QuantumCircuit, observables: Sequence[SparsePauliOp], table: np.ndarray,
                 backend_options: Optional[dict] = None) -> None:
        from qiskit_aer.primitives import EstimatorV2

        self.estimator = EstimatorV2(options={"backend_options": backend_options} if backend_options else None)
        self.pub = estimator_pub(circuit, observables, table)

    def __call__(self) -> np.ndarray:
        return expectations_from_pub_result(self.estimator.run([self.pub]).result()[0])


# the table's rows, in its order: name -> EstimatorV2 backend options, then name -> AerVariant options
ESTIMATOR_ROWS = {
    "EstimatorV2 default (= the aer_floor anchor)": None,
    "EstimatorV2 + runtime_parameter_bind_enable": {"runtime_parameter_bind_enable": True},
    "EstimatorV2 + max_parallel_experiments=0": {"max_parallel_experiments": 0},
}
SIMULATOR_ROWS = {
    "AerSimulator, one experiment per parameter set, save_expval per Z_i":
        dict(runtime_parameter_bind=False, readout="expectation_values"),
    "  ... + max_parallel_experiments=0 (all cores)":
        dict(runtime_parameter_bind=False, readout="expectation_values", max_parallel_experiments=0),
    "AerSimulator, runtime parameter binding, save_expval per Z_i":
        dict(readout="expectation_values"),
    "AerSimulator, runtime parameter binding, save_probabilities [default]":
        dict(readout="probabilities"),
    "  ... + method=automatic": dict(readout="probabilities", method="automatic"),
    "  ... + max_parallel_threads=1": dict(readout="probabilities", max_parallel_threads=1),
}
