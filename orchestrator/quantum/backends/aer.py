"""The Aer simulator backend: exact expectation values by default, shots with a seed, a fake
IBM device's noise model.

Why AerSimulator directly and not Aer's EstimatorV2 (still available as `engine: estimator`,
one PUB per job): both run the same C++ simulation, but EstimatorV2 binds every parameter set
as a separate experiment and then walks the results in Python one (row, observable) pair at a
time. Running the circuit ourselves with runtime parameter binding and one save instruction
measured 2-3x faster on the reference workload (912 parameter sets, 4 qubits; also at 6 and 8
qubits), with values identical to 1e-15; bench/step.py prints the table of alternatives.

Readout. All of the project's observables are diagonal (Z_i), so by default one
`save_probabilities` over the measured qubits replaces one `save_expectation_value` per
observable, and <O> = probabilities @ eigenvalues(O). With shots, the same qubits are measured
and the counts take the place of the probabilities. Non-diagonal observables fall back to
`save_expectation_value` (exact mode only).

Ray circuit workers (a large table split over several cores or nodes) wrap this backend:
workers/circuits.py, built by `make_backend` (backends/__init__.py).

Noise. `noise_model: fake_<device>` builds Aer's NoiseModel.from_backend of that fake device and
simulates the density matrix: exact mode then gives the exact noisy expectation values of the
gates (readout errors only act on measurements, so they show with shots only); with shots,
the measured counts include readout errors too.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from qiskit import ClassicalRegister, QuantumCircuit
from qiskit.quantum_info import SparsePauliOp
from qiskit_aer import AerSimulator

from orchestrator.core.errors import UserError
from orchestrator.quantum.backends.devices import resolve_fake_device
from orchestrator.quantum.backends.estimator import estimator_pub, expectations_from_pub_result
from orchestrator.quantum.scheduler import Backend, BackendJob

ENGINES = ("simulator", "estimator")
READOUTS = ("auto", "probabilities", "expectation_values")
METHODS = ("statevector", "density_matrix", "automatic")
# `auto` readout uses probabilities up to this many measured qubits: measured faster than one
# save_expectation_value per qubit at 4, 6 and 8 qubits (bench/step.py); wider, the 2^n
# probabilities per row would outgrow n expectation values.
PROBABILITY_READOUT_MAX_QUBITS = 8


@dataclass(frozen=True)
class AerOptions:
    shots: Optional[int] = None                 # None: exact expectation values
    engine: str = "simulator"                   # simulator (fastest) | estimator (Aer EstimatorV2, one PUB; exact only)
    seed: Optional[int] = None                  # seeds the per-job simulator seeds when shots are used
    noise_model: Optional[str] = None           # a fake IBM device, e.g. "fake_manila" (qiskit-ibm-runtime)
    method: Optional[str] = None                # None: statevector; density_matrix with a noise model
    runtime_parameter_bind: bool = True         # bind parameter sets inside Aer (fastest, see module doc)
    readout: str = "auto"                       # auto | probabilities | expectation_values
    max_parallel_threads: int = 0               # Aer's OpenMP threads; 0 = every core
    max_parallel_experiments: int = 1           # Aer's default; only matters without runtime binding
    max_parameter_sets_per_job: Optional[int] = None  # split larger tables into several jobs

    def __post_init__(self) -> None:
        if self.shots is not None and self.shots < 1:
            raise UserError(f"aer: shots must be at least 1 or empty (exact), not {self.shots}")
        if self.method is not None and self.method not in METHODS:
            raise UserError(f"aer: method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if self.engine not in ENGINES:
            raise UserError(f"aer: engine must be one of {', '.join(ENGINES)}, not {self.engine!r}")
        if self.engine == "estimator" and self.shots is not None:
            raise UserError("aer: the estimator engine gives exact values only (Aer's EstimatorV2 "
                            "imitates shots with Gaussian noise); use engine: simulator for shots")
        if self.readout not in READOUTS:
            raise UserError(f"aer: readout must be one of {', '.join(READOUTS)}, not {self.readout!r}")
        if self.max_parameter_sets_per_job is not None and self.max_parameter_sets_per_job < 1:
            raise UserError("aer: max_parameter_sets_per_job must be at least 1")


# --- readout: how expectation values come out of one Aer run -----------------------------------

def is_diagonal(observable: SparsePauliOp) -> bool:
    return not observable.paulis.x.any()


def diagonal_eigenvalues(observables: Sequence[SparsePauliOp],
                         measured_qubits: Sequence[int]) -> np.ndarray:
    """(2^m, n_observables): the value of each Z-type observable on each basis state of the
    measured qubits; basis index bit i is the outcome of measured_qubits[i]."""
    m = len(measured_qubits)
    bits = (np.arange(2 ** m)[:, None] >> np.arange(m)[None, :]) & 1          # (2^m, m)
    table = np.zeros((2 ** m, len(observables)))
    for o, observable in enumerate(observables):
        z = observable.paulis.z[:, list(measured_qubits)].astype(np.int64)  # (terms, m)
        parity = (bits @ z.T) & 1                                              # (2^m, terms)
        table[:, o] = (1.0 - 2.0 * parity) @ observable.coeffs.real
    return table


@dataclass(frozen=True, eq=False)
class ReadoutPlan:
    circuit: QuantumCircuit                 # the submitted circuit plus save / measure instructions
    kind: str                               # probabilities | counts | expectation_values
    measured_qubits: tuple[int, ...]
    eigenvalues: Optional[np.ndarray]       # for probabilities and counts
    n_observables: int

    def expectations(self, experiments) -> np.ndarray:
        """(rows, n_observables) from Aer's per-parameter-set experiment results."""
        if self.kind == "expectation_values":
            labels = [f"obs{o}" for o in range(self.n_observables)]
            return np.array([[getattr(e.data, label) for label in labels] for e in experiments],
                            dtype=np.float64).reshape(-1, self.n_observables)
        if self.kind == "probabilities":
            probabilities = np.array([e.data.probabilities for e in experiments], dtype=np.float64)
        else:
            # the readout register is the circuit's last: shift other classical bits away
            offset = self.circuit.num_clbits - len(self.measured_qubits)
            mask = 2 ** len(self.measured_qubits) - 1
            probabilities = np.zeros((len(experiments), mask + 1))
            for row, e in enumerate(experiments):
                for key, count in e.data.counts.items():
                    probabilities[row, (int(key, 16) >> offset) & mask] += count
            probabilities /= probabilities.sum(axis=1, keepdims=True)
        # an elementwise product and a sum (not a BLAS matmul): each row's value then depends on
        # that row alone, so a table split over workers gives bit-identical results
        return (probabilities[:, :, None] * self.eigenvalues[None, :, :]).sum(axis=1)


def plan_readout(circuit: QuantumCircuit, observables: Sequence[SparsePauliOp],
                 shots: Optional[int], readout: str = "auto") -> ReadoutPlan:
    diagonal = all(is_diagonal(o) for o in observables)
    measured = tuple(sorted({int(q) for o in observables for q in np.flatnonzero(o.paulis.z.any(axis=0))}))
    prepared = circuit.copy()
    if shots is not None:
        if not diagonal:
            raise UserError("aer: shots need diagonal (Z-type) observables; use exact mode")
        register = ClassicalRegister(len(measured), "readout")
        prepared.add_register(register)
        for i, q in enumerate(measured):
            prepared.measure(q, register[i])
        return ReadoutPlan(prepared, "counts", measured, diagonal_eigenvalues(observables, measured),
                           len(observables))
    use_probabilities = diagonal and (readout == "probabilities" or (
        readout == "auto" and len(measured) <= PROBABILITY_READOUT_MAX_QUBITS))
    if use_probabilities:
        prepared.save_probabilities(list(measured), label="probabilities")
        return ReadoutPlan(prepared, "probabilities", measured,
                           diagonal_eigenvalues(observables, measured), len(observables))
    for o, observable in enumerate(observables):
        prepared.save_expectation_value(observable, list(range(circuit.num_qubits)), label=f"obs{o}")
    return ReadoutPlan(prepared, "expectation_values", measured, None, len(observables))


# --- jobs --------------------------------------------------------------------------------------

class AerLocalJob(BackendJob):
    """A job running in Aer's own thread pool."""

    def __init__(self, aer_job, plan: ReadoutPlan, n_rows: int, repeat_single_result: bool = False) -> None:
        self._aer_job, self._plan, self._n_rows = aer_job, plan, n_rows
        self._repeat = repeat_single_result
        self.job_id = aer_job.job_id()

    def result(self) -> np.ndarray:
        result = self._aer_job.result()
        if not result.success:
            raise RuntimeError(f"Aer job {self.job_id} failed: {result.status}")
        experiments = result.results
        if self._repeat and len(experiments) == 1:
            # a circuit without parameters, exact mode: one simulation serves every row
            return np.repeat(self._plan.expectations(experiments), self._n_rows, axis=0)
        if len(experiments) != self._n_rows:
            raise RuntimeError(f"Aer job {self.job_id} returned {len(experiments)} results "
                               f"for {self._n_rows} parameter sets")
        return self._plan.expectations(experiments)


class AerEstimatorJob(BackendJob):
    """One EstimatorV2 job holding one PUB."""

    def __init__(self, primitive_job) -> None:
        self._job = primitive_job
        self.job_id = primitive_job.job_id()

    def result(self) -> np.ndarray:
        return expectations_from_pub_result(self._job.result()[0])


class AerEmptyJob(BackendJob):
    def __init__(self, n_observables: int) -> None:
        self.job_id = f"empty-{uuid.uuid4()}"
        self._n = n_observables

    def result(self) -> np.ndarray:
        return np.zeros((0, self._n))


# --- the backend -------------------------------------------------------------------------------

class AerBackend(Backend):
    """Implements `orchestrator.quantum.scheduler.Backend` on qiskit-aer."""

    def __init__(self, options: AerOptions = AerOptions()) -> None:
        self.options = options
        self.shots = options.shots
        self.max_parameter_sets_per_job = options.max_parameter_sets_per_job
        noise_model, device = None, None
        if options.noise_model:
            from qiskit_aer.noise import NoiseModel

            device = resolve_fake_device(options.noise_model)
            noise_model = NoiseModel.from_backend(device)
        method = options.method or ("density_matrix" if noise_model is not None else "statevector")
        self.simulator = AerSimulator(method=method, noise_model=noise_model,
                                      runtime_parameter_bind_enable=options.runtime_parameter_bind,
                                      max_parallel_threads=options.max_parallel_threads,
                                      max_parallel_experiments=options.max_parallel_experiments)
        # with a noise model, circuits are compiled to the device's basis gates and coupling map,
        # so that its gate errors apply where the device would incur them
        self.name = f"aer/{device.name}" if device is not None else "aer"
        self.transpile_target = device if device is not None else self.simulator
        self.estimator = None
        if options.engine == "estimator":
            from qiskit_aer.primitives import EstimatorV2

            self.estimator = EstimatorV2.from_backend(self.simulator)
        self._seeds = np.random.default_rng(options.seed)
        self._plans: dict = {}

    # the scheduler's entry point
    def submit(self, circuit: QuantumCircuit, observables: Sequence[SparsePauliOp],
               parameter_table: np.ndarray, shots: Optional[int], tag: Optional[str] = None):
        table = np.asarray(parameter_table, dtype=np.float64)
        if len(table) == 0:
            return AerEmptyJob(len(observables))
        return self._submit_local(circuit, observables, table, shots, self.next_seed(shots))

    def run(self, circuit: QuantumCircuit, observables: Sequence[SparsePauliOp],
            parameter_table: np.ndarray, shots: Optional[int] = None,
            seed: Optional[int] = None) -> np.ndarray:
        """Evaluate here and now, without workers: (rows, n_observables). `seed` sets the
        simulator seed of this call (shots only)."""
        table = np.asarray(parameter_table, dtype=np.float64)
        if len(table) == 0:
            return np.zeros((0, len(observables)))
        return self._submit_local(circuit, observables, table, shots, seed).result()

    def usage(self) -> dict:
        return {"circuit_workers": 0}   # a FannedOutBackend (workers/circuits.py) reports its own

    def next_seed(self, shots: Optional[int]) -> Optional[int]:
        """The next simulator seed of this backend's seeded stream (None in exact mode): a fresh
        seed per job (or per worker slice), so runs are reproducible yet no two jobs share
        their random numbers."""
        return int(self._seeds.integers(0, 2**31 - 1)) if shots is not None else None

    def _plan(self, circuit: QuantumCircuit, observables: Sequence[SparsePauliOp],
              shots: Optional[int]) -> ReadoutPlan:
        key = (id(circuit), tuple(str(o) for o in observables), shots is not None)
        entry = self._plans.get(key)
        if entry is None or entry[0] is not circuit:   # holding `circuit` keeps its id unique
            entry = (circuit, plan_readout(circuit, observables, shots, self.options.readout))
            self._plans[key] = entry
        return entry[1]

    def _submit_local(self, circuit, observables, table, shots, seed):
        if self.estimator is not None:
            if shots is not None:
                raise UserError("aer: the estimator engine gives exact values only")
            return AerEstimatorJob(self.estimator.run([estimator_pub(circuit, observables, table)]))
        plan = self._plan(circuit, observables, shots)
        binds = {parameter: table[:, j] for j, parameter in enumerate(circuit.parameters)}
        run_options = {"shots": shots} if shots is not None else {"shots": 1}  # exact: one pass
        if seed is not None:
            run_options["seed_simulator"] = seed
        if not circuit.parameters:
            # nothing to bind: exact mode simulates once; shots sample every row independently
            circuits = plan.circuit if shots is None else [plan.circuit] * len(table)
            return AerLocalJob(self.simulator.run(circuits, **run_options), plan, len(table),
                               repeat_single_result=shots is None)
        aer_job = self.simulator.run(plan.circuit, parameter_binds=[binds], **run_options)
        return AerLocalJob(aer_job, plan, len(table))
