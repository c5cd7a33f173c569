"""The Aer simulator backend: exact expectation values by default, shots with a seed, a fake
IBM device's noise model.

Why AerSimulator directly and not Aer's EstimatorV2 (one PUB per job): both run the same C++
simulation, but EstimatorV2 binds every parameter set as a separate experiment and then walks
the results in Python one (row, observable) pair at a time. Running the circuit ourselves with
runtime parameter binding and one save instruction measured 2-3x faster on the reference
workload (912 parameter sets, 4 qubits; also at 6 and 8 qubits), with values identical to 1e-15;
bench/step.py prints the table of alternatives (EstimatorV2 and the other Aer execution options
are built there, by bench/aer_variants.py).

Readout. The default observables are diagonal (Z_i, Z_iZ_j), so one `save_probabilities` over
the measured qubits replaces one `save_expectation_value` per observable, and <O> =
probabilities @ eigenvalues(O). With shots, the same qubits are measured and the counts take the
place of the probabilities; observables with X or Y are read, as on a device, from the circuit
rotated into each of their measurement bases (one Aer job holds every basis). Non-diagonal
observables in exact mode use `save_expectation_value`.

Ray circuit workers (a large table split over several cores or nodes) wrap this backend:
workers/circuits.py, built by AerFamily.make (the aer family of backends/registry.py, below).

Noise. `noise_model: fake_<device>` builds Aer's NoiseModel.from_backend of that fake device and
simulates the density matrix: exact mode then gives the exact noisy expectation values of the
gates (readout errors only act on measurements, so they show with shots only); with shots,
the measured counts include readout errors too.
"""
from __future__ import annotations

import uuid
import dataclasses
import functools
import os
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from qiskit import ClassicalRegister, QuantumCircuit
from qiskit.quantum_info import SparsePauliOp
from qiskit_aer import AerSimulator

from orchestrator.config import Config
from orchestrator.core.backend_names import AER_SIMULATOR, names_of
from orchestrator.core.errors import UserError
from orchestrator.core.paulis import measurement_bases
from orchestrator.quantum.backends.devices import fake_device_class, resolve_fake_device
from orchestrator.quantum.runner import Backend, BackendJob

# `auto` readout uses probabilities up to this many measured qubits: measured faster than one
# save_expectation_value per qubit at 4, 6 and 8 qubits (bench/step.py); wider, the 2^n
# probabilities per row would outgrow n expectation values.
PROBABILITY_READOUT_MAX_QUBITS = 8


@dataclass(frozen=True)
class AerOptions:
    """What a run sets (AerFamily.make). The config has checked the values."""

    shots: Optional[int] = None                 # None: exact expectation values
    seed: Optional[int] = None                  # seeds the per-job simulator seeds when shots are used
    noise_model: Optional[str] = None           # a fake IBM device, e.g. "fake_manila" (qiskit-ibm-runtime)
    max_parallel_threads: int = 0               # Aer's OpenMP threads; 0 = every core
    max_parameter_sets_per_job: Optional[int] = None  # split larger tables into several jobs


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
    """How one Aer run gives the observables' values. `circuits` has one entry per measurement
    basis: one, unless shots must read X or Y, when each group of qubit-wise commuting
    observables gets the circuit rotated into its basis (all run as one Aer job)."""

    circuits: tuple[QuantumCircuit, ...]    # the submitted circuit plus rotations, save / measure instructions
    kind: str                               # probabilities | counts | expectation_values
    measured_qubits: tuple[int, ...]        # the same in every basis
    eigenvalues: tuple[np.ndarray, ...]     # per circuit (2^m, n_observables), zero where an observable
    n_observables: int                      # is read in another basis; () for expectation_values

    def expectations(self, experiments) -> np.ndarray:
        """(rows, n_observables) from Aer's experiment results (circuit-major: every row of the
        first circuit, then of the next)."""
        if self.kind == "expectation_values":
            labels = [f"obs{o}" for o in range(self.n_observables)]
            return np.array([[getattr(e.data, label) for label in labels] for e in experiments],
                            dtype=np.float64).reshape(-1, self.n_observables)
        rows = len(experiments) // len(self.circuits)
        values = 0.0
        for basis, eigenvalues in enumerate(self.eigenvalues):
            probabilities = self.probabilities(experiments[basis * rows:(basis + 1) * rows])
            # an elementwise product and a sum (not a BLAS matmul): each row's value then depends
            # on that row alone, so a table split over workers gives bit-identical results
            values = values + (probabilities[:, :, None] * eigenvalues[None, :, :]).sum(axis=1)
        return values

    def probabilities(self, experiments) -> np.ndarray:
        if self.kind == "probabilities":
            return np.array([e.data.probabilities for e in experiments], dtype=np.float64)
        # the readout register is the circuit's last: shift other classical bits away
        offset = self.circuits[0].num_clbits - len(self.measured_qubits)
        mask = 2 ** len(self.measured_qubits) - 1
        probabilities = np.zeros((len(experiments), mask + 1))
        for row, e in enumerate(experiments):
            for key, count in e.data.counts.items():
                probabilities[row, (int(key, 16) >> offset) & mask] += count
        return probabilities / probabilities.sum(axis=1, keepdims=True)


def plan_readout(circuit: QuantumCircuit, observables: Sequence[SparsePauliOp],
                 shots: Optional[int], readout: str = "auto") -> ReadoutPlan:
    diagonal = all(is_diagonal(o) for o in observables)
    measured = tuple(sorted({int(q) for o in observables
                             for q in np.flatnonzero((o.paulis.z | o.paulis.x).any(axis=0))}))
    if shots is not None:
        return measured_in_bases(circuit, observables, measured)
    prepared = circuit.copy()
    use_probabilities = diagonal and (readout == "probabilities" or (
        readout == "auto" and len(measured) <= PROBABILITY_READOUT_MAX_QUBITS))
    if use_probabilities:
        prepared.save_probabilities(list(measured), label="probabilities")
        return ReadoutPlan((prepared,), "probabilities", measured,
                           (diagonal_eigenvalues(observables, measured),), len(observables))
    for o, observable in enumerate(observables):
        prepared.save_expectation_value(observable, list(range(circuit.num_qubits)), label=f"obs{o}")
    return ReadoutPlan((prepared,), "expectation_values", measured, (), len(observables))


def measured_in_bases(circuit: QuantumCircuit, observables: Sequence[SparsePauliOp],
                      measured: tuple[int, ...]) -> ReadoutPlan:
    """Shots: per measurement basis, the circuit rotated so that its observables read as Z
    (H for X, S-dagger then H for Y) and `measured` measured."""
    if any(len(o.paulis) != 1 for o in observables):
        raise UserError("aer: shots read Pauli strings (one term each); use exact mode for sums")
    labels = [o.paulis[0].to_label() for o in observables]
    as_z = diagonal_eigenvalues([SparsePauliOp(label.replace("X", "Z").replace("Y", "Z"), o.coeffs)
                                 for label, o in zip(labels, observables)], measured)
    read = np.zeros(len(labels), dtype=bool)
    circuits, tables = [], []
    for basis in measurement_bases(tuple(labels)):
        prepared = circuit.copy()
        for q, letter in enumerate(reversed(basis)):
            if letter == "Y":
                prepared.sdg(q)
            if letter in "XY":
                prepared.h(q)
        register = ClassicalRegister(len(measured), "readout")
        prepared.add_register(register)
        for i, q in enumerate(measured):
            prepared.measure(q, register[i])
        # each observable is read in the first basis that holds it
        mine = ~read & np.array([all(a == "I" or a == b for a, b in zip(label, basis)) for label in labels])
        read |= mine
        circuits.append(prepared)
        tables.append(as_z * mine[None, :])
    return ReadoutPlan(tuple(circuits), "counts", measured, tuple(tables), len(observables))


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
        if len(experiments) != self._n_rows * len(self._plan.circuits):
            raise RuntimeError(f"Aer job {self.job_id} returned {len(experiments)} results "
                               f"for {self._n_rows} parameter sets")
        return self._plan.expectations(experiments)


class AerEmptyJob(BackendJob):
    def __init__(self, n_observables: int) -> None:
        self.job_id = f"empty-{uuid.uuid4()}"
        self._n = n_observables

    def result(self) -> np.ndarray:
        return np.zeros((0, self._n))


# --- the backend -------------------------------------------------------------------------------

class AerBackend(Backend):
    """Implements `orchestrator.quantum.runner.Backend` on qiskit-aer."""

    def __init__(self, options: AerOptions = AerOptions()) -> None:
        self.options = options
        self.shots = options.shots
        self.max_parameter_sets_per_job = options.max_parameter_sets_per_job
        noise_model, device = None, None
        if options.noise_model:
            from qiskit_aer.noise import NoiseModel

            device = resolve_fake_device(options.noise_model)
            noise_model = NoiseModel.from_backend(device)
        # runtime parameter binding: every parameter set bound inside Aer (fastest, see module doc)
        method = "density_matrix" if noise_model is not None else "statevector"
        self.simulator = AerSimulator(method=method, noise_model=noise_model, runtime_parameter_bind_enable=True,
                                      max_parallel_threads=options.max_parallel_threads)
        # with a noise model, circuits are compiled to the device's basis gates and coupling map,
        # so that its gate errors apply where the device would incur them
        self.name = f"aer/{device.name}" if device is not None else "aer"
        self.transpile_target = device if device is not None else self.simulator
        self._seeds = np.random.default_rng(options.seed)
        self._plans: dict = {}

    # the runner's entry point
    def submit(self, circuit: QuantumCircuit, observables: Sequence[SparsePauliOp],
               parameter_table: np.ndarray, shots: Optional[int], tag: Optional[str] = None,
               max_seconds: Optional[float] = None):
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
            entry = (circuit, plan_readout(circuit, observables, shots))
            self._plans[key] = entry
        return entry[1]

    def _submit_local(self, circuit, observables, table, shots, seed):
        plan = self._plan(circuit, observables, shots)
        binds = {parameter: table[:, j] for j, parameter in enumerate(circuit.parameters)}
        run_options = {"shots": shots} if shots is not None else {"shots": 1}  # exact: one pass
        if seed is not None:
            run_options["seed_simulator"] = seed
        if not circuit.parameters:
            # nothing to bind: exact mode simulates once; shots sample every row independently
            circuits = plan.circuits[0] if shots is None else [c for c in plan.circuits for _ in range(len(table))]
            return AerLocalJob(self.simulator.run(circuits, **run_options), plan, len(table),
                               repeat_single_result=shots is None)
        aer_job = self.simulator.run(list(plan.circuits), parameter_binds=[binds] * len(plan.circuits), **run_options)
        return AerLocalJob(aer_job, plan, len(table))


# --- the family ------------------------------------------------------------------------------

def check_aer_capacity(n_qubits: int, noisy: bool) -> None:
    """Refuse a circuit wider than Aer can hold in this machine's memory (a noisy one is a density
    matrix: half the qubits), before anything is written."""
    method = "density_matrix" if noisy else "statevector"
    limit = AerSimulator(method=method).configuration().n_qubits
    if n_qubits > limit:
        what = "a density matrix, with a noise model" if noisy else "a statevector"
        raise UserError(f"quantum.n_qubits = {n_qubits} is more than aer_simulator can hold in this machine's "
                        f"memory as {what}: at most {limit} qubits")


def aer_on_workers(options: AerOptions, workers: int, min_rows: int) -> Backend:
    """Aer with `options`, tables of at least `min_rows` rows split over `workers` Ray circuit workers."""
    from workers.circuits import FannedOutBackend

    # one core per worker; the runner has split the request into jobs already
    worker_options = dataclasses.replace(options, max_parallel_threads=1, max_parameter_sets_per_job=None)
    return FannedOutBackend(AerBackend(options), functools.partial(AerBackend, worker_options),
                            workers=workers, min_rows=min_rows)


class AerFamily:
    """aer_simulator: qiskit-aer on this machine, or on Ray circuit workers (quantum.circuit_workers)."""

    names = names_of("aer")
    title = "Aer"
    remote = False            # nothing to journal, nothing billed
    job_overhead_s = 0.0

    def check(self, config: Config) -> None:
        q = config.quantum
        if q.noise_model is not None:
            fake_device_class(q.noise_model)
        check_aer_capacity(q.n_qubits, noisy=q.noise_model is not None)

    def make(self, config: Config) -> Backend:
        q = config.quantum
        # OMP_NUM_THREADS caps Aer's threads: a sweep's trial sets it to the CPUs it holds, so that N
        # trials on an N-core node run N threads, not N teams of N (on 2 cores, 2 trials measured the
        # same either way: 22-25 s per SMS epoch; the cap is for nodes with many cores and trials)
        options = AerOptions(shots=q.shots, seed=q.seed, noise_model=q.noise_model,
                             max_parameter_sets_per_job=q.max_parameter_sets_per_job,
                             max_parallel_threads=int(os.environ.get("OMP_NUM_THREADS") or 0))
        if not q.circuit_workers:
            return AerBackend(options)
        from workers.cluster import connect

        connect(config.ray.address)   # the workers join the run's cluster
        return aer_on_workers(options, q.circuit_workers, q.min_rows_for_workers)

    def default_shots(self, config: Config) -> Optional[int]:
        return config.quantum.shots      # None: exact

    def seconds_per_shot(self, config: Config) -> float:
        return 0.0

    def listing(self, config: Config) -> list[dict]:
        return [{"name": AER_SIMULATOR, "qubits": None, "processor": None, "status": "local simulator", "queue": None}]

    def device_name(self, config: Config) -> str:
        return config.quantum.backend

    def qpu_seconds_left(self, config: Config) -> Optional[float]:
        return None     # a simulator: no QPU time

    def queue_wait_seconds(self, config: Config) -> float:
        return 0.0

    def fake_twin(self, backend: str) -> Optional[str]:
        return None


AER = AerFamily()
