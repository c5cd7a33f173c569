"""The circuit runner: a request (a batch of inputs and the current weights) in, primitive jobs
on a backend, values (and the Jacobian) out.

A training-step request builds the whole table of its gradient method (gradients.py: parameter
shift, the weights only, SPSA), submits it as ONE job (one circuit, one parameter array, every
observable broadcast against it) and returns the forward values and the Jacobian. The table is
split into several jobs only when the backend or the runner sets a maximum number of parameter
sets per job. An evaluation-only request submits the unshifted rows alone. With `backprop` (an
exact simulator) there is no table: `differentiable_values` evaluates the batch as one
differentiable statevector (statevector.py), counted as one job of `batch` circuits. (It was called the
scheduler; a scheduler, in a training loop, is the learning rate's.)

Backends plug in through the small `Backend` protocol below; a job journal plugs in through
`JobHook` (intent before submit, job id after submit, result after completion). Before
submitting, the runner asks the hook whether the job is already recorded: a finished job's
values are taken from the record, an in-flight one is re-attached by id (`Backend.attach`), so a
resumed run never pays twice for a job. A job whose result fails is submitted again up to the
backend's `job_retries`; then the request fails with `BackendFailure`.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol, Sequence

import numpy as np
import torch
from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp

from orchestrator.core.errors import BackendFailure, first_line
from orchestrator.core.usage import JobUsage
from orchestrator.quantum import shift_rule
from orchestrator.quantum.gradients import GradientMethod, ParameterShift
from orchestrator.quantum.statevector import statevector_circuit
from orchestrator.quantum.circuits import (DEFAULT_TRANSPILE_CACHE, CircuitTemplate, TranspileCache,
                                   TranspiledTemplate)


# --- the backend contract ----------------------------------------------------------------------

class BackendJob(Protocol):
    """A submitted job: an id a journal can record, and its expectation values when done."""

    job_id: str
    session_id: Optional[str] = None   # the dedicated session the job runs in, if any

    def result(self) -> np.ndarray:
        """(rows, n_observables) expectation values, rows in the submitted table's order."""

    def usage(self) -> JobUsage:
        """What the job cost; asked once its result is in."""
        return JobUsage()


class Backend(Protocol):
    """What the runner submits to. Subclass it to inherit the defaults of the optional members."""

    name: str                                   # part of the transpile cache key
    shots: Optional[int]                        # per parameter set; None = exact expectation values
    max_parameter_sets_per_job: Optional[int]   # None = no limit
    transpile_target: object                    # what qiskit.transpile compiles for (None: nothing)
    job_retries: Optional[int] = None           # resubmissions of a failed job; None: a local backend,
                                                # whose error is a bug to see, not an outage to wait out
    max_pending_jobs: Optional[int] = None      # jobs submitted and not yet finished at once (None: any)

    def submit(self, circuit: QuantumCircuit, observables: Sequence[SparsePauliOp],
               parameter_table: np.ndarray, shots: Optional[int], tag: Optional[str] = None,
               max_seconds: Optional[float] = None) -> BackendJob:
        """Evaluate every observable on every row of `parameter_table`, whose columns follow
        `circuit.parameters`, as one primitive job; a remote backend labels it with `tag` and has
        the service cancel it past `max_seconds` of QPU time (what is left of the budget)."""

    def attach(self, job_id: str, n_rows: int, n_observables: int) -> Optional[BackendJob]:
        """The job `job_id` submitted by an earlier process, or None where jobs cannot be found again."""
        return None

    def find(self, tag: str, n_rows: int, n_observables: int) -> Optional[BackendJob]:
        """The job an earlier process submitted with `tag` (and died before it learnt the job's id),
        or None."""
        return None

    def estimate_job_seconds(self, rows: int, circuit: QuantumCircuit, shots: Optional[int] = None) -> float:
        """QPU seconds a job of `rows` parameter sets x `shots` (None: the backend's) is expected
        to cost (0 on a simulator)."""
        return 0.0

    def seconds_per_shot(self, circuit: QuantumCircuit) -> float:
        """QPU seconds one shot of the transpiled `circuit` takes (0 on a simulator)."""
        return 0.0

    def session_seconds(self, session_ids: list) -> dict:
        """{session id: elapsed active seconds} of the dedicated sessions `session_ids`, as the
        service bills them ({}: no sessions here)."""
        return {}

    def usage(self) -> dict:
        """What summary.json reports of how this backend ran (execution mode, workers, ...)."""
        return {}

    def close(self) -> None:
        """Give back what the backend holds (a Session, Ray workers); called once at the end."""




# --- hooks and counters ------------------------------------------------------------------------

@dataclass(frozen=True)
class JobIntent:
    """What the runner is about to submit; enough for a journal to find the job again."""

    request: int        # 1-based request number of this runner
    index: int          # job number within the request, 0-based
    n_jobs: int         # jobs in the request
    backend: str
    row_start: int      # the job covers rows [row_start, row_stop) of the request's table
    row_stop: int
    shots: Optional[int]
    digest: str = ""    # sha256 of what the job computes (backend, shots, parameter rows)
    estimated_seconds: float = 0.0   # QPU seconds the backend expects the job to cost

    @property
    def rows(self) -> int:
        return self.row_stop - self.row_start


@dataclass(frozen=True)
class RecordedJob:
    """What a journal knows of a job from an earlier process: its id, and its values once done."""

    job_id: Optional[str]
    expectations: Optional[np.ndarray] = None


class FinishedJob(BackendJob):
    """A job whose values were read back from the journal instead of being run again."""

    def __init__(self, job_id: str, expectations: np.ndarray) -> None:
        self.job_id, self._expectations = job_id, expectations

    def result(self) -> np.ndarray:
        return self._expectations


class JobHook:
    """Called around every job. Subclass it (a job journal will); the defaults do nothing."""

    def recorded(self, intent: JobIntent) -> Optional[RecordedJob]:
        """The record of this very job from an earlier process, if any (a journal on resume)."""
        return None

    def before_submit(self, intent: JobIntent) -> None:
        pass

    def seconds_left(self) -> Optional[float]:
        """QPU seconds the budget leaves for the next job (None: no budget)."""
        return None

    def after_submit(self, intent: JobIntent, job_id: str, session_id: Optional[str] = None) -> None:
        pass

    def after_result(self, intent: JobIntent, job_id: str, expectations: np.ndarray,
                     usage: JobUsage = JobUsage()) -> None:
        pass

    def job_failed(self, intent: JobIntent, job_id: str, problem: BaseException) -> None:
        pass

    def prune(self, up_to_request: int) -> None:
        """A checkpoint covers the requests up to this one: what was kept for them may go."""

    def usage(self) -> dict:
        """What summary.json reports of the jobs this hook saw ({}: nothing)."""
        return {}


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
class RunnerCounters:
    step: JobCounts = field(default_factory=JobCounts)    # the most recent request (= training step)
    total: JobCounts = field(default_factory=JobCounts)   # since the runner was built (resumed: since the run began)
    requests: int = 0
    from_journal: int = 0      # jobs whose values came from the journal, not from a new submission
    reattached: int = 0        # jobs found again by id after the client that submitted them died
    resubmitted: int = 0       # failed jobs submitted again


@dataclass(frozen=True)
class ValuesAndJacobian:
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


# --- the runner -----------------------------------------------------------------------------

class CircuitRunner:
    """One request in, values (and the Jacobian) out, in as few jobs as the limits allow."""

    def __init__(self, template: CircuitTemplate, backend: Backend, *,
                 optimization_level: int = 1,
                 max_parameter_sets_per_job: Optional[int] = None,
                 transpile_cache: Optional[TranspileCache] = None,
                 job_hook: Optional[JobHook] = None,
                 gradient: GradientMethod = ParameterShift(),
                 eval_shots: Optional[int] = None) -> None:
        self.template = template
        self.gradient = gradient
        self.eval_shots = eval_shots     # validation and test requests (None: the backend's shots)
        self.backend = backend
        self.optimization_level = optimization_level
        self._own_limit = max_parameter_sets_per_job
        self.transpile_cache = DEFAULT_TRANSPILE_CACHE if transpile_cache is None else transpile_cache
        self.job_hook = job_hook or JobHook()
        self.counters = RunnerCounters()
        self.transpilations = 0   # transpiler runs this runner caused (the cache may hold earlier ones)

    @property
    def max_parameter_sets_per_job(self) -> Optional[int]:
        """The tighter of the runner's own limit and the backend's."""
        limits = [x for x in (self._own_limit, self.backend.max_parameter_sets_per_job) if x is not None]
        return min(limits) if limits else None

    @property
    def n_inputs(self) -> int:
        return len(self.template.input_parameters)

    @property
    def n_parameters(self) -> int:
        return len(self.template.parameters)

    def transpiled(self) -> TranspiledTemplate:
        before = self.transpile_cache.transpilations
        compiled = self.transpile_cache.get(self.template, self.backend.name,
                                            self.backend.transpile_target, self.optimization_level)
        self.transpilations += self.transpile_cache.transpilations - before
        return compiled

    def values_and_jacobian(self, inputs: np.ndarray, weights: np.ndarray) -> ValuesAndJacobian:
        """Forward values and the Jacobian of a batch (exact or estimated, as `gradient` says), from
        one request."""
        request = self.counters.requests + 1        # SPSA draws its signs from the request number
        n_inputs, n_weights = np.shape(inputs)[1], len(weights)
        expectations = self.evaluate(self.gradient.table(inputs, weights, request))
        values, jacobian = self.gradient.values_and_jacobian(expectations, n_inputs, n_weights, request,
                                                             batch=len(inputs))
        return ValuesAndJacobian(values=values, jacobian=jacobian)

    def differentiable_values(self, angles: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The exact values of a batch, (batch, n_observables), as a torch graph that backprop
        differentiates (float64 angles and weights in): one simulator call, counted as one job."""
        values = statevector_circuit(self.template.spec, angles.device).expectations(angles, weights)
        self.counters.requests += 1
        self.counters.step = JobCounts(jobs=1, circuits=len(angles))
        self.counters.total.add(self.counters.step)
        return values

    def values(self, inputs: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Forward values only: the unshifted rows, (batch, n_observables), at `eval_shots`."""
        return self.evaluate(shift_rule.evaluation_table(inputs, weights), shots=self.eval_shots)

    def evaluate(self, parameter_table: np.ndarray, shots: Optional[int] = None) -> np.ndarray:
        """One request: every row of a template-ordered table -> (rows, n_observables), at `shots`
        per row (None: the backend's own)."""
        table = np.asarray(parameter_table, dtype=np.float64)
        if table.ndim != 2 or table.shape[1] != self.n_parameters:
            raise ValueError(f"parameter table must be (rows, {self.n_parameters}), not {table.shape}")
        compiled = self.transpiled()
        circuit_ordered = table[:, compiled.columns]
        shots = self.backend.shots if shots is None or self.backend.shots is None else shots
        self.counters.requests += 1
        step = JobCounts()
        self.counters.step = step
        plan = plan_jobs(len(table), self.max_parameter_sets_per_job)
        intents = [JobIntent(request=self.counters.requests, index=i, n_jobs=len(plan),
                             backend=self.backend.name, row_start=a, row_stop=b, shots=shots,
                             digest=job_digest(f"{self.backend.name}/{self.template.key}", shots,
                                               circuit_ordered[a:b]),
                             estimated_seconds=self.backend.estimate_job_seconds(b - a, compiled.circuit, shots))
                   for i, (a, b) in enumerate(plan)]
        n_observables = len(compiled.observables)

        def submit(intent: JobIntent) -> BackendJob:
            self.job_hook.before_submit(intent)
            job = self.backend.submit(compiled.circuit, compiled.observables,
                                      circuit_ordered[intent.row_start:intent.row_stop], shots, job_tag(intent),
                                      max_seconds=self.job_hook.seconds_left())
            self.job_hook.after_submit(intent, job.job_id, getattr(job, "session_id", None))
            return job

        # submit jobs before waiting on any, so that remote (or threaded) jobs overlap, but never
        # more at once than the backend allows pending (IBM's Open plan: a few per instance)
        pending_limit = self.backend.max_pending_jobs or len(intents)
        submitted: list[tuple[JobIntent, BackendJob]] = []
        parts = []
        for intent in intents:
            if len(submitted) - len(parts) >= pending_limit:
                parts.append(self.collect(*submitted[len(parts)], submit, n_observables, shots, step))
            submitted.append((intent, self.recover(intent, n_observables) or submit(intent)))
        parts += [self.collect(intent, job, submit, n_observables, shots, step) for intent, job in submitted[len(parts):]]
        if not parts:
            return np.zeros((0, n_observables))
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    def collect(self, intent: JobIntent, job: BackendJob, submit: Callable[[JobIntent], BackendJob],
                n_observables: int, shots: Optional[int], step: JobCounts) -> np.ndarray:
        """The job's values, counted into the step's and the runner's totals."""
        expectations = self.result_of(intent, job, submit, n_observables)
        done = JobCounts(jobs=1, circuits=intent.rows, shots=intent.rows * (shots or 0))
        step.add(done)
        self.counters.total.add(done)
        return expectations

    def result_of(self, intent: JobIntent, job: BackendJob, submit: Callable[[JobIntent], BackendJob],
                  n_observables: int) -> np.ndarray:
        """The job's values; a failed job is submitted again up to the backend's `job_retries`."""
        failures = 0
        while True:
            try:
                expectations = np.asarray(job.result(), dtype=np.float64)
                break
            except Exception as problem:
                self.job_hook.job_failed(intent, job.job_id, problem)
                failures += 1
                retries = self.backend.job_retries
                if retries is None:     # a local backend: its error is a bug to see, not an outage
                    raise
                if failures > retries:
                    raise BackendFailure(f"{self.backend.name}: job {job.job_id} failed {failures} "
                                         f"time{'s' if failures > 1 else ''}; last: {first_line(problem)}") from problem
                self.counters.resubmitted += 1
                job = submit(intent)
        if expectations.shape != (intent.rows, n_observables):
            raise RuntimeError(f"backend {self.backend.name} returned {expectations.shape} for "
                               f"{intent.rows} rows x {n_observables} observables")
        if not isinstance(job, FinishedJob):
            self.job_hook.after_result(intent, job.job_id, expectations, job.usage())
        return expectations

    def recover(self, intent: JobIntent, n_observables: int):
        """The job from the journal: its stored values, or the in-flight job re-attached by id."""
        record = self.job_hook.recorded(intent)
        if record is None:
            return None
        if record.expectations is not None:
            self.counters.from_journal += 1
            return FinishedJob(record.job_id or "journal", record.expectations)
        if record.job_id:
            job = self.backend.attach(record.job_id, intent.rows, n_observables)
        else:   # journaled as intended, never as submitted: a kill may have come between the two
            job = self.backend.find(job_tag(intent), intent.rows, n_observables)
            if job is not None:
                self.job_hook.after_submit(intent, job.job_id, getattr(job, "session_id", None))
        if job is not None:
            self.counters.reattached += 1
        return job


def job_tag(intent: JobIntent) -> str:
    """The label a job carries on the service, so that it can be found without its id."""
    return f"hqo-{intent.digest[:40]}"


def job_digest(where: str, shots: Optional[int], rows: np.ndarray) -> str:
    """Identifies what a job computes (backend and circuit, shots, rows), so a journal never
    answers for another job."""
    digest = hashlib.sha256(f"{where}\0{shots}\0{rows.shape}\0".encode())
    digest.update(np.ascontiguousarray(rows, dtype=np.float64).tobytes())
    return digest.hexdigest()
