"""IBM Quantum through qiskit-ibm-runtime: devices (`ibm_<device>`) and the local testing mode's
fake devices (`fake_<device>`), on one code path.

    service     QiskitRuntimeService from QISKIT_IBM_TOKEN / QISKIT_IBM_INSTANCE / QISKIT_IBM_CHANNEL
                or qiskit's saved account (`connect_service`); none for a fake device, whose
                Session/Batch runs in local testing mode
    device      service.backend(name), or the fake device; its target is what the template is
                transpiled for, once (the scheduler's TranspileCache)
    mode        auto (the default): a Session (one reserved window) where the account may open one,
                else Batch, else job mode (IBM's Open plan refuses sessions: one warning, no
                failed run); or session / batch / job as configured. Opened lazily at the first
                job, closed by `close()` on exit, error and Ctrl-C
    jobs        Estimator(mode).run([one PUB]): qiskit-ibm-runtime's current Estimator
                (`executor_estimator.Estimator`, on the Executor; EstimatorV2 is deprecated since
                0.50); only transient failures retried, with jittered backoff; `attach(job_id)`
                finds a job a killed client submitted (service.job)

The token never passes through this module's state or messages: the service reads it itself.
"""
from __future__ import annotations

import logging
import math
import os
import random
import re
import time
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np
from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp

from orchestrator.config import RETIRED_CHANNEL, RETIRED_CHANNEL_TEXT, Config
from orchestrator.core.errors import UserError, first_line
from orchestrator.quantum.backends.devices import backend_kind, resolve_fake_device
from orchestrator.quantum.backends.estimator import estimator_pub, expectations_from_pub_result
from orchestrator.quantum.backends.rehearsal import (RehearsalDevice, active_qubits, compact_circuit,
                                                     compact_observable)
from orchestrator.quantum.scheduler import Backend, BackendFailure, BackendJob

log = logging.getLogger(__name__)

CREDENTIALS_HELP = ("set QISKIT_IBM_TOKEN (and QISKIT_IBM_INSTANCE, optionally QISKIT_IBM_CHANNEL), or save an "
                    "account once with QiskitRuntimeService.save_account(token=..., instance=...)")
DEFAULT_REP_DELAY_S = 250e-6   # IBM devices' usual default repetition delay, when the device does not say
JOB_OVERHEAD_S = 2.0           # assumed fixed QPU seconds per job in `estimate` (loading, compiling)


# A mode the service refused under execution_mode auto, and the one tried next.
FALLBACK_MODE = {"session": "batch", "batch": "job"}
# How the service words a refused session (IBM's Open plan: no sessions): message and error code.
MODE_REFUSALS = ("not authorized to run a session", "error code: 1352")


def is_mode_refusal(problem: BaseException) -> bool:
    """Whether `problem` (or an error it wraps) is the service refusing the execution mode."""
    seen: list[BaseException] = []
    pending = [problem]
    while pending:
        error = pending.pop()
        if error is None or any(error is s for s in seen):
            continue
        seen.append(error)
        if any(refusal in str(error).lower() for refusal in MODE_REFUSALS):
            return True
        pending += [error.__cause__, error.__context__] + [a for a in error.args if isinstance(a, BaseException)]
    return False


@dataclass(frozen=True)
class RuntimeOptions:
    execution_mode: str = "auto"              # auto (session, else batch, else job) | session | batch | job
    max_session_seconds: Optional[int] = None
    shots: int = 1024
    precision: Optional[float] = None
    resilience_level: Optional[int] = None
    dynamical_decoupling: bool = False
    dd_sequence: Optional[str] = None
    twirling: bool = False
    retries: int = 3
    retry_backoff_seconds: float = 2.0
    max_parameter_sets_per_job: Optional[int] = None
    channel: Optional[str] = None
    instance: Optional[str] = None
    seed: Optional[int] = None                # the local simulator's seed (fake devices only)

    def estimator_options(self) -> dict:
        """Estimator options as a plain dict (recorded in the run's resolved config too)."""
        options: dict[str, Any] = {"default_shots": self.shots}
        if self.precision is not None:
            options = {"default_precision": self.precision}
        if self.resilience_level is not None:
            options["resilience_level"] = self.resilience_level
        if self.dynamical_decoupling:
            options["dynamical_decoupling"] = {"enable": True, **({"sequence_type": self.dd_sequence}
                                                                 if self.dd_sequence else {})}
        if self.twirling:
            options["twirling"] = {"enable_gates": True, "enable_measure": True}
        return options


# --- the service (the network boundary: tests replace `connect_service`, nothing else) ---------

def connect_service(channel: Optional[str] = None, instance: Optional[str] = None):
    """QiskitRuntimeService from the environment or the saved account; one clear error without either."""
    from qiskit_ibm_runtime import QiskitRuntimeService

    if (channel or os.environ.get("QISKIT_IBM_CHANNEL")) == RETIRED_CHANNEL:
        raise UserError(RETIRED_CHANNEL_TEXT.replace("config: runtime.channel", "the IBM channel"))
    if not os.environ.get("QISKIT_IBM_TOKEN"):
        try:
            saved = QiskitRuntimeService.saved_accounts()
        except Exception:  # an unreadable account file is the same as none
            saved = {}
        if not saved:
            raise UserError(f"no IBM Quantum credentials: {CREDENTIALS_HELP}")
    try:
        return QiskitRuntimeService(channel=channel, instance=instance)
    except Exception as problem:
        raise UserError(f"could not connect to IBM Quantum: {scrub(first_line(problem))}") from None


def service_device(service, name: str):
    """service.backend(name), or one line naming the operational backends the account can use."""
    try:
        return service.backend(name)
    except Exception as problem:
        available = operational_backend_names(service)
        listed = ", ".join(available) if available else "none"
        raise UserError(f"IBM backend {name!r} is not available to this account (retired or unknown: "
                        f"{scrub(first_line(problem))}); operational backends: {listed}") from None


def operational_backend_names(service) -> list[str]:
    try:
        return sorted(b.name for b in service.backends(operational=True, simulator=False))
    except Exception:
        return []


def describe_backends(service) -> list[dict]:
    """name, qubits, status, queue length of every backend the account sees."""
    rows = []
    for device in service.backends():
        try:
            status = device.status()
            state = "online" if status.operational else "offline"
            if status.status_msg and status.status_msg != "active":
                state += f" ({status.status_msg})"
            pending = status.pending_jobs
        except Exception as problem:
            state, pending = f"unknown ({first_line(problem)})", None
        rows.append({"name": device.name, "qubits": device.num_qubits, "status": state, "queue": pending,
                     "local": False})
    return sorted(rows, key=lambda row: row["name"])


def scrub(text: str) -> str:
    """`text` with the token, should an error message ever echo it, replaced."""
    token = os.environ.get("QISKIT_IBM_TOKEN")
    return text.replace(token, "***") if token else text


# --- jobs --------------------------------------------------------------------------------------

class RuntimeJob(BackendJob):
    """A submitted (or re-attached) Estimator job: its id, its values, its QPU seconds."""

    def __init__(self, job, n_rows: int, n_observables: int) -> None:
        self._job = job
        self.job_id = job.job_id()
        self._shape = (n_rows, n_observables)

    def result(self) -> np.ndarray:
        expectations = expectations_from_pub_result(self._job.result()[0])
        if expectations.shape != self._shape:
            raise RuntimeError(f"job {self.job_id} returned {expectations.shape}, expected {self._shape}")
        return expectations

    def quantum_seconds(self) -> Optional[float]:
        """QPU seconds billed for the job from its usage metrics; None when not reported (local mode)."""
        try:
            usage = (self._job.metrics() or {}).get("usage") or {}
        except Exception:
            return None
        seconds = usage.get("quantum_seconds", usage.get("seconds"))
        return float(seconds) if seconds is not None else None


# --- the backend -------------------------------------------------------------------------------

TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
TRANSIENT_WORDS = ("queue is full", "too many requests", "rate limit", "timed out", "timeout", "temporarily",
                   "service unavailable", "connection reset", "connection aborted", "connection refused")


def is_transient(problem: BaseException) -> bool:
    """Whether trying again later may succeed: a network error, an HTTP 408/425/429/5xx (as an
    attribute, or in the message the runtime re-raises it with), or the service saying it is busy."""
    if isinstance(problem, (OSError, TimeoutError)):     # requests' ConnectionError and Timeout are OSErrors
        return True
    status = getattr(problem, "status_code", None)
    if not isinstance(status, int) or status <= 0:
        found = re.search(r"\b([1-5]\d\d) (?:Client|Server) Error", str(problem))
        status = int(found.group(1)) if found else None
    if status is not None:
        return status in TRANSIENT_STATUS or status >= 500
    return any(word in str(problem).lower() for word in TRANSIENT_WORDS)


class RuntimeBackend(Backend):
    """Implements `orchestrator.quantum.scheduler.Backend` with qiskit-ibm-runtime's Estimator."""

    def __init__(self, name: str, options: RuntimeOptions, service=None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.kind = backend_kind(name)
        if self.kind == "fake" and options.resilience_level is None:
            # local testing mode at the Estimator's default (1: measurement twirling + TREX) simulates
            # every twirled copy: 35 s a W1 job on fake_fez instead of 5 s (bench/rehearsal.py)
            options = dataclasses.replace(options, resilience_level=0)
        self.options = options
        if self.kind == "fake":
            self.service, self.device = None, resolve_fake_device(name)
        elif self.kind == "ibm":
            self.service = service if service is not None else connect_service(options.channel, options.instance)
            self.device = service_device(self.service, name)
        else:
            raise ValueError(f"{name} is not an IBM Quantum or fake device")
        self.name = name
        self.shots = options.shots if options.precision is None else math.ceil(1 / options.precision ** 2)
        self.transpile_target = self.device
        self.max_parameter_sets_per_job = options.max_parameter_sets_per_job
        self.job_retries = options.retries        # a failed job is submitted again this many times
        self._sleep = sleep
        self.mode = "session" if options.execution_mode == "auto" else options.execution_mode
        self._mode = None
        self._estimator = None
        self._execution_device = None     # fake devices: the rehearsal device the jobs run on
        self._rehearsed = None            # (circuit, (compact circuit, compact observables))

    def estimator(self):
        """The Estimator on the open Session/Batch (opened at the first job), or on the device (job mode)."""
        if self._estimator is None:
            from qiskit_ibm_runtime import Batch, Session
            from qiskit_ibm_runtime.executor_estimator import Estimator

            max_time = self.options.max_session_seconds
            device = self._execution_device or self.device
            if self.mode == "session":
                self._mode = Session(backend=device, max_time=max_time)
            elif self.mode == "batch":
                self._mode = Batch(backend=device, max_time=max_time)
            estimator = Estimator(mode=self._mode or device)
            estimator.options.update(**self.options.estimator_options())
            if self.kind == "fake" and self.options.seed is not None:
                estimator.options.simulator.seed_simulator = self.options.seed   # reproducible local runs
            self._estimator = estimator
        return self._estimator

    def submit(self, circuit: QuantumCircuit, observables: Sequence[SparsePauliOp],
               parameter_table: np.ndarray, shots: Optional[int], tag: Optional[str] = None) -> RuntimeJob:
        if self.kind == "fake":
            circuit, observables = self.rehearsal(circuit, observables)
        # shots other than the Estimator's default (validation at fewer shots) travel with the PUB
        precision = None if shots is None or shots == self.shots else shots ** -0.5
        pub = estimator_pub(circuit, observables, parameter_table, precision)
        job = self.with_retries("submit a job", lambda: self.run_in_mode(pub, tag))
        return RuntimeJob(job, len(parameter_table), len(observables))

    def rehearsal(self, circuit: QuantumCircuit, observables: Sequence[SparsePauliOp]) -> tuple:
        """A fake device runs `circuit` on its qubits only (rehearsal.py): the device cut down to
        them, built at the first job of the run, and the circuit and observables renumbered."""
        if self._rehearsed is None or self._rehearsed[0] is not circuit:
            qubits = active_qubits(circuit)
            if self._execution_device is None or self._execution_device.qubits != qubits:
                self.close()   # a Session/Batch holds the device it was opened on
                self._execution_device = RehearsalDevice(self.device, qubits)
            compact = (compact_circuit(circuit, qubits), [compact_observable(o, qubits) for o in observables])
            self._rehearsed = (circuit, compact)
        return self._rehearsed[1]

    def run_in_mode(self, pub: tuple, tag: Optional[str] = None):
        """Submit `pub` in the current execution mode; under `auto`, a mode the account may not
        open (the Open plan refuses sessions) gives way to the next one: session, batch, job."""
        while True:
            try:
                estimator = self.estimator()
                estimator.options.environment.job_tags = [tag] if tag else []
                return estimator.run([pub])
            except Exception as problem:
                if not is_mode_refusal(problem):
                    raise
                if self.options.execution_mode != "auto" or self.mode == "job":
                    raise UserError(f"{self.name} refused {self.mode} mode: this account may not open one "
                                    f"(IBM's Open plan allows no sessions); set runtime.execution_mode: auto "
                                    f"(or batch / job)") from None
                refused, self.mode = self.mode, FALLBACK_MODE[self.mode]
                self.close()
                log.warning(f"{self.name}: this account may not open a {refused} (IBM's Open plan allows none); "
                            f"running in {self.mode} mode instead")

    def attach(self, job_id: str, n_rows: int, n_observables: int) -> Optional[RuntimeJob]:
        """The job `job_id` submitted earlier (by a client that was killed), or None if the
        service cannot find it (local testing mode keeps no jobs across processes)."""
        if self.service is None:
            return None
        try:
            job = self.with_retries(f"find job {job_id}", lambda: self.service.job(job_id))
        except BackendFailure:
            return None
        return RuntimeJob(job, n_rows, n_observables)

    def find(self, tag: str, n_rows: int, n_observables: int) -> Optional[RuntimeJob]:
        """The newest job the service holds with `tag`, or None (local testing mode keeps none)."""
        if self.service is None:
            return None
        try:
            jobs = self.with_retries(f"look up jobs tagged {tag}", lambda: self.service.jobs(job_tags=[tag], limit=1))
        except BackendFailure:
            return None
        return RuntimeJob(jobs[0], n_rows, n_observables) if jobs else None

    def with_retries(self, what: str, action: Callable[[], Any]) -> Any:
        """`action()`, retried on transient errors (network, 5xx, 429, a full queue) with doubling,
        jittered backoff; a permanent error (a bad request, no permission, not found) fails at once.
        Either way a BackendFailure with the service's message: the run stops resumably."""
        delay = self.options.retry_backoff_seconds
        for attempt in range(self.options.retries + 1):
            try:
                return action()
            except (UserError, KeyboardInterrupt):
                raise
            except Exception as problem:
                last = problem
                if not is_transient(problem):
                    raise BackendFailure(f"{self.name}: could not {what}: {scrub(first_line(problem))} "
                                         f"(not retried: the service refused it)") from None
                if attempt < self.options.retries:
                    self._sleep(delay * random.uniform(0.5, 1.5))   # jitter: retries of many runs spread out
                    delay *= 2
        raise BackendFailure(f"{self.name}: could not {what} after {self.options.retries + 1} attempts: "
                             f"{scrub(first_line(last))}")

    def close(self) -> None:
        """Close the Session/Batch, so no reserved QPU time runs on after the run."""
        mode, self._mode, self._estimator = self._mode, None, None
        if mode is not None:
            try:
                mode.close()
            except Exception as problem:
                log.warning(f"closing the {self.mode} on {self.name} failed: {first_line(problem)}")

    def usage(self) -> dict:
        return {"execution_mode": self.mode, "estimator_options": self.options.estimator_options()}

    def estimate_job_seconds(self, rows: int, circuit: QuantumCircuit, shots: Optional[int] = None) -> float:
        """QPU seconds one job of `rows` parameter sets is expected to take (see `orchestrate estimate`)."""
        return JOB_OVERHEAD_S + rows * (shots or self.shots) * self.seconds_per_shot(circuit)

    def seconds_per_shot(self, circuit: QuantumCircuit) -> float:
        """Estimated QPU seconds per shot of `circuit`: repetition delay + circuit duration."""
        rep_delay = float(getattr(self.device, "default_rep_delay", None) or DEFAULT_REP_DELAY_S)
        try:
            duration = float(circuit.estimate_duration(self.device.target, unit="s"))
        except Exception:
            duration = 0.0
        return rep_delay + duration


def runtime_options(config: Config) -> RuntimeOptions:
    """RuntimeOptions from a run config's quantum and runtime sections."""
    q, r = config.quantum, config.runtime
    return RuntimeOptions(execution_mode=r.execution_mode, max_session_seconds=r.max_session_seconds,
                          shots=q.shots or r.default_shots, precision=r.precision,
                          resilience_level=r.resilience_level, dynamical_decoupling=r.dynamical_decoupling,
                          dd_sequence=r.dd_sequence, twirling=r.twirling, retries=r.retries,
                          retry_backoff_seconds=r.retry_backoff_seconds,
                          max_parameter_sets_per_job=q.max_parameter_sets_per_job,
                          channel=r.channel, instance=r.instance, seed=q.seed)
