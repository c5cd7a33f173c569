"""Turns a request (a batch of inputs and the current weights) into primitive jobs on a backend.

A training-step request builds the whole parameter-shift table of the batch (see
`shift_rule.py`), submits it as ONE job (one circuit, one parameter array, every observable
broadcast against it) and returns the forward values and the full Jacobian. The table is split
into several jobs only when the backend or the scheduler sets a maximum number of parameter
sets per job. An evaluation-only request submits the unshifted rows alone.

Backends plug in through the small `Backend` protocol below; a job journal plugs in through
`JobHook` (intent before submit, job id after submit, result after completion).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Protocol, Sequence

import numpy as np
from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp

from orchestrator import shift_rule
from orchestrator.circuits import (DEFAULT_TRANSPILE_CACHE, CircuitTemplate, TranspileCache,
                                   TranspiledTemplate)


# --- the backend contract ----------------------------------------------------------------------

class BackendJob(Protocol):
    """A submitted job: an id a journal can record, and its expectation values when done."""

    job_id: str

    def result(self) -> np.ndarray:
        """(rows, n_observables) expectation values, rows in the submitted table's order."""


class Backend(Protocol):
    name: str                                   # part of the transpile cache key
    shots: Optional[int]                        # per parameter set; None = exact expectation values
    max_parameter_sets_per_job: Optional[int]   # None = no limit
    transpile_target: object                    # what qiskit.transpile compiles for (None: nothing)

    def submit(self, circuit: QuantumCircuit, observables: Sequence[SparsePauliOp],
               parameter_table: np.ndarray, shots: Optional[int]) -> BackendJob:
        """Evaluate every observable on every row of `parameter_table`, whose columns follow
        `circuit.parameters`, as one primitive job."""


# --- hooks and counters ------------------------------------------------------------------------

@dataclass(frozen=True)
class JobIntent:
    """What the scheduler is about to submit; enough for a journal to find the job again."""

    request: int        # 1-based request number of this scheduler
    index: int          # job number within the request, 0-based
    n_jobs: int         # jobs in the request
    backend: str
    row_start: int      # the job covers rows [row_start, row_stop) of the request's table
    row_stop: int
    shots: Optional[int]


class JobHook:
    """Called around every job. Subclass it (a job journal will); the defaults do nothing."""

    def before_submit(self, intent: JobIntent) -> None:
        pass

    def after_submit(self, intent: JobIntent, job_id: str) -> None:
        pass

    def after_result(self, intent: JobIntent, job_id: str, expectations: np.ndarray) -> None:
        pass


@dataclass
class JobCounts:
    """jobs submitted; circuits = parameter sets evaluated; shots = parameter sets x shots per
    set (0 on an exact backend)."""

    jobs: int = 0
    circuits: int = 0
    shots: int = 0

    def add(self, other: "JobCounts") -> None:
        self.jobs += other.jobs
        self.circuits += other.circuits
        self.shots += other.shots


@dataclass
class SchedulerCounters:
    step: JobCounts = field(default_factory=JobCounts)    # the most recent request (= training step)
    total: JobCounts = field(default_factory=JobCounts)   # since the scheduler was built
    requests: int = 0


@dataclass(frozen=True)
class ShiftResult:
    values: np.ndarray     # (batch, n_observables)
    jacobian: np.ndarray   # (batch, n_observables, n_inputs + n_weights)


def plan_jobs(n_rows: int, max_rows_per_job: Optional[int]) -> list[tuple[int, int]]:
    """Contiguous [start, stop) row ranges: one job unless the limit demands more, and then
    as few as the limit allows, of near-equal size."""
    if n_rows <= 0:
        return []
    if max_rows_per_job is None or n_rows <= max_rows_per_job:
        return [(0, n_rows)]
    if max_rows_per_job < 1:
        raise ValueError(f"max parameter sets per job must be at least 1, not {max_rows_per_job}")
    n_jobs = math.ceil(n_rows / max_rows_per_job)
    bounds = np.linspace(0, n_rows, n_jobs + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


# --- the scheduler -----------------------------------------------------------------------------

class ParameterShiftScheduler:
    """One request in, values (and the Jacobian) out, in as few jobs as the limits allow."""

    def __init__(self, template: CircuitTemplate, backend: Backend, *,
                 optimization_level: int = 1,
                 max_parameter_sets_per_job: Optional[int] = None,
                 transpile_cache: Optional[TranspileCache] = None,
                 job_hook: Optional[JobHook] = None) -> None:
        self.template = template
        self.backend = backend
        self.optimization_level = optimization_level
        self._own_limit = max_parameter_sets_per_job
        self.transpile_cache = DEFAULT_TRANSPILE_CACHE if transpile_cache is None else transpile_cache
        self.job_hook = job_hook or JobHook()
        self.counters = SchedulerCounters()

    @property
    def max_parameter_sets_per_job(self) -> Optional[int]:
        """The tighter of the scheduler's own limit and the backend's."""
        limits = [x for x in (self._own_limit, self.backend.max_parameter_sets_per_job) if x is not None]
        return min(limits) if limits else None

    @property
    def n_inputs(self) -> int:
        return len(self.template.input_parameters)

    @property
    def n_parameters(self) -> int:
        return len(self.template.parameters)

    def transpiled(self) -> TranspiledTemplate:
        return self.transpile_cache.get(self.template, self.backend.name,
                                        self.backend.transpile_target, self.optimization_level)

    def values_and_jacobian(self, inputs: np.ndarray, weights: np.ndarray) -> ShiftResult:
        """Forward values and the full Jacobian of a batch, from one request."""
        table = shift_rule.shifted_parameter_table(inputs, weights)
        expectations = self.evaluate(table)
        values, jacobian = shift_rule.values_and_jacobian(expectations, len(inputs), self.n_parameters)
        return ShiftResult(values=values, jacobian=jacobian)

    def values(self, inputs: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Forward values only: the unshifted rows, (batch, n_observables)."""
        return self.evaluate(shift_rule.evaluation_table(inputs, weights))

    def evaluate(self, parameter_table: np.ndarray) -> np.ndarray:
        """One request: every row of a template-ordered table -> (rows, n_observables)."""
        table = np.asarray(parameter_table, dtype=np.float64)
        if table.ndim != 2 or table.shape[1] != self.n_parameters:
            raise ValueError(f"parameter table must be (rows, {self.n_parameters}), not {table.shape}")
        compiled = self.transpiled()
        circuit_ordered = table[:, compiled.columns]
        shots = self.backend.shots
        self.counters.requests += 1
        step = JobCounts()
        self.counters.step = step
        plan = plan_jobs(len(table), self.max_parameter_sets_per_job)
        intents = [JobIntent(request=self.counters.requests, index=i, n_jobs=len(plan),
                             backend=self.backend.name, row_start=a, row_stop=b, shots=shots)
                   for i, (a, b) in enumerate(plan)]
        submitted = []
        # submit every job before waiting on any, so that remote (or threaded) jobs overlap
        for intent in intents:
            self.job_hook.before_submit(intent)
            job = self.backend.submit(compiled.circuit, compiled.observables,
                                      circuit_ordered[intent.row_start:intent.row_stop], shots)
            self.job_hook.after_submit(intent, job.job_id)
            submitted.append((intent, job))
        parts = []
        for intent, job in submitted:
            expectations = np.asarray(job.result(), dtype=np.float64)
            rows = intent.row_stop - intent.row_start
            if expectations.shape != (rows, len(compiled.observables)):
                raise RuntimeError(f"backend {self.backend.name} returned {expectations.shape} for "
                                   f"{rows} rows x {len(compiled.observables)} observables")
            self.job_hook.after_result(intent, job.job_id, expectations)
            done = JobCounts(jobs=1, circuits=rows, shots=rows * (shots or 0))
            step.add(done)
            self.counters.total.add(done)
            parts.append(expectations)
        if not parts:
            return np.zeros((0, len(compiled.observables)))
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
