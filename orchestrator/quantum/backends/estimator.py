"""Helpers shared by every Estimator-based backend (qiskit-ibm-runtime's Estimator, Aer's
EstimatorV2): a whole parameter table is ONE PUB, its observables an (n_observables, 1) array
broadcast against the (rows, n_parameters) parameter values, so one job returns every <O_o> for
every row."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp


def estimator_pub(circuit: QuantumCircuit, observables: Sequence[SparsePauliOp],
                  parameter_table: np.ndarray, precision: Optional[float] = None) -> tuple:
    """(circuit, observables (n_obs, 1), parameter values (rows, n_params)[, precision]): evs come
    back (n_obs, rows). A precision p asks for 1 / p^2 shots for this PUB."""
    pub = (circuit, [[observable] for observable in observables], np.asarray(parameter_table, dtype=np.float64))
    return pub if precision is None else pub + (precision,)


def expectations_from_pub_result(pub_result) -> np.ndarray:
    """An Estimator PubResult of `estimator_pub` -> (rows, n_observables)."""
    return np.ascontiguousarray(np.asarray(pub_result.data.evs, dtype=np.float64).T)
