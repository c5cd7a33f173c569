"""qiskit-ibm-runtime's Estimator as a backend: what an IBM device (ibm.py) and a fake device in
local testing mode (fake.py) share, on one code path.

    device      what the template is transpiled for, once (the runner's TranspileCache)
    mode        auto (the default): a Session (one reserved window) where the account may open one,
                else Batch, else job mode (IBM's Open plan refuses sessions: one warning, no
                failed run); or session / batch / job as configured. Opened lazily at the first
                job, closed by `close()` on exit, error and Ctrl-C
    jobs        Estimator(mode).run([one PUB]): qiskit-ibm-runtime's current Estimator
                (`executor_estimator.Estimator`, on the Executor; EstimatorV2 is deprecated since
                0.50); only transient failures retried, with jittered backoff

Its settings are the config's `runtime` section itself (no copy of its fields). The token never
passes through this module's state or messages: the service reads it itself.
"""
from __future__ import annotations

import logging
import math
import os
import random
import re
import time
from datetime import datetime
from typing import Any, Callable, Optional, Sequence

import numpy as np
from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp

from orchestrator.config import Config, RuntimeConfig
from orchestrator.core.errors import BackendFailure, UserError, first_line
from orchestrator.core.paulis import measurement_bases
from orchestrator.quantum.backends.estimator import estimator_pub, expectations_from_pub_result
from orchestrator.quantum.circuits import DEFAULT_TRANSPILE_CACHE, QuantumSpec, build_dressed_circuit
from orchestrator.quantum.runner import Backend, BackendJob, JobUsage

log = logging.getLogger(__name__)

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


def estimator_options(runtime: RuntimeConfig, shots: int) -> dict:
    """Estimator options as a plain dict (summary.json records them too)."""
    options: dict[str, Any] = {"default_shots": shots}
    if runtime.precision is not None:
        options = {"default_precision": runtime.precision}
    if runtime.resilience_level is not None:
        options["resilience_level"] = runtime.resilience_level
    if runtime.dynamical_decoupling:
        options["dynamical_decoupling"] = {"enable": True, **({"sequence_type": runtime.dd_sequence}
                                                              if runtime.dd_sequence else {})}
    if runtime.twirling:
        options["twirling"] = {"enable_gates": True, "enable_measure": True}
    return options


def scrub(text: str) -> str:
    """`text` with the token, should an error message ever echo it, replaced."""
    token = os.environ.get("QISKIT_IBM_TOKEN")
    return text.replace(token, "***") if token else text


def check_device_capacity(device, name: str, n_qubits: int, shots: int) -> None:
    if n_qubits > device.num_qubits:
        raise UserError(f"quantum.n_qubits = {n_qubits} is more than {name} has ({device.num_qubits} qubits)")
    try:
        max_shots = device.configuration().max_shots      # IBM devices and their fake twins say it there
    except Exception:
        max_shots = None
    if isinstance(max_shots, int) and shots > max_shots:
        raise UserError(f"{shots} shots per parameter set is more than {name} allows ({max_shots})")


# --- jobs --------------------------------------------------------------------------------------

class RuntimeJob(BackendJob):
    """A submitted (or re-attached) Estimator job: its id, its values, what it cost."""

    def __init__(self, job, n_rows: int, n_observables: int, session_id: Optional[str] = None,
                 with_retries: Callable[[str, Callable[[], Any]], Any] = lambda what, action: action()) -> None:
        self._job = job
        self.job_id = job.job_id()
        self.session_id = session_id
        self._shape = (n_rows, n_observables)
        self._with_retries = with_retries

    def result(self) -> np.ndarray:
        # a connection dropped while the result comes back is the network's failure, not the job's:
        # fetched again, never submitted again (a job that failed on the device raises at once)
        result = self._with_retries(f"fetch the result of job {self.job_id}", self._job.result)
        expectations = expectations_from_pub_result(result[0])
        if expectations.shape != self._shape:
            raise RuntimeError(f"job {self.job_id} returned {expectations.shape}, expected {self._shape}")
        return expectations

    def usage(self, wait_seconds: float = 30.0, sleep: Callable[[float], None] = time.sleep) -> JobUsage:
        """The QPU seconds the service bills for the job (`job.usage()`, final once its usage
        metrics say so: asked again for up to `wait_seconds`) and its time in the queue; nothing in
        local testing mode, which bills nothing."""
        from qiskit_ibm_runtime import RuntimeJobV2

        if not isinstance(self._job, RuntimeJobV2):   # local testing mode's jobs say 0 s: nothing is billed
            return JobUsage(session_id=self.session_id)
        try:
            deadline = time.monotonic() + wait_seconds
            metrics = self._job.metrics() or {}
            while (metrics.get("usage") or {}).get("status", "final") == "pending" and time.monotonic() < deadline:
                sleep(0.5)
                metrics = self._job.metrics() or {}
            billed = self._job.usage(partial=(metrics.get("usage") or {}).get("status") == "pending")
        except Exception as problem:   # the values are in; what they cost is asked again of the journal's estimate
            log.warning(f"could not read the usage of job {self.job_id}: {scrub(first_line(problem))}")
            return JobUsage(session_id=self.session_id)
        return JobUsage(billed_seconds=float(billed) if billed is not None else None,
                        queue_seconds=queue_seconds(metrics.get("timestamps") or {}), session_id=self.session_id)


def queue_seconds(timestamps: dict) -> Optional[float]:
    """Seconds from a job's creation to its start on the device, from its metrics' timestamps."""
    try:
        created, running = (datetime.fromisoformat(str(timestamps[k]).replace("Z", "+00:00"))
                            for k in ("created", "running"))
    except (KeyError, TypeError, ValueError):
        return None
    return max(0.0, (running - created).total_seconds())


# --- the backend -------------------------------------------------------------------------------

TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
TRANSIENT_WORDS = ("queue is full", "too many requests", "rate limit", "timed out", "timeout", "temporarily",
                   "service unavailable", "connection reset", "connection aborted", "connection refused",
                   "connection broken", "incompleteread", "remote end closed", "remotedisconnected")


def is_transient(problem: BaseException) -> bool:
    """Whether trying again later may succeed: a network error, an HTTP 408/425/429/5xx (as an
    attribute, or in the message the runtime re-raises it with), or the service saying it is busy."""
    if isinstance(problem, (OSError, TimeoutError)):     # requests' ConnectionError and Timeout are OSErrors
        return True
    status = http_status(problem)
    if status is not None:
        return status in TRANSIENT_STATUS or status >= 500
    return any(word in str(problem).lower() for word in TRANSIENT_WORDS)


def http_status(error: BaseException) -> Optional[int]:
    """The HTTP status of an error: its status_code, else the one in the message the runtime
    re-raises it with ("429 Client Error: ..."); None if it names none."""
    status = getattr(error, "status_code", None)
    if isinstance(status, int) and status > 0:
        return status
    found = re.search(r"\b([1-5]\d\d) (?:Client|Server) Error", str(error))
    return int(found.group(1)) if found else None


MAX_THROTTLE_WAITS = 120        # 429s / pending-limit refusals waited out per action before giving up
DEFAULT_THROTTLE_SECONDS = 15.0  # when the service asks to wait without saying how long
PENDING_LIMIT_WORDS = ("pending jobs", "pending job limit", "too many jobs", "maximum number of pending",
                       "max pending")
MAX_EXECUTION_TIME = 3 * 3600   # the service's own cap of a job's QPU time


def throttle_seconds(problem: BaseException) -> Optional[float]:
    """How long the service asks the client to wait before trying again (429 Too Many Requests,
    with its Retry-After header; the plan's pending-jobs limit), or None if it did not ask."""
    if not is_throttled(problem):
        return None
    for error in error_chain(problem):
        response = getattr(error, "response", None)
        retry_after = response.headers.get("Retry-After") if response is not None else None
        found = re.search(r"retry[- ]after\W+(\d+(?:\.\d+)?)", str(error).lower())
        for value in (retry_after, found.group(1) if found else None):
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                pass
    return DEFAULT_THROTTLE_SECONDS


def is_throttled(problem: BaseException) -> bool:
    """A 429, or the plan's pending-jobs limit, anywhere in the chain of errors."""
    return any(http_status(e) == 429 or any(w in str(e).lower() for w in PENDING_LIMIT_WORDS)
               for e in error_chain(problem))


def error_chain(problem: BaseException) -> list[BaseException]:
    """`problem` and the errors it was raised from (the client wraps requests' HTTPError)."""
    chain, error = [], problem
    while error is not None and all(error is not seen for seen in chain):
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


def max_execution_time(max_seconds: Optional[float]) -> Optional[int]:
    """A job's max_execution_time (whole seconds, at least 1, at most the service's cap) from what
    the budget leaves; None: no budget."""
    if max_seconds is None:
        return None
    return int(min(MAX_EXECUTION_TIME, max(1, math.floor(max_seconds))))


class RuntimeBackend(Backend):
    """Implements `orchestrator.quantum.runner.Backend` with qiskit-ibm-runtime's Estimator on
    `device`; fake.py and ibm.py say where the device comes from and what differs."""

    def __init__(self, name: str, device, runtime: RuntimeConfig, shots: int,
                 max_parameter_sets_per_job: Optional[int] = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.name, self.device, self.runtime = name, device, runtime
        self.shots = shots if runtime.precision is None else math.ceil(1 / runtime.precision ** 2)
        self.transpile_target = device
        self.max_parameter_sets_per_job = max_parameter_sets_per_job
        self.job_retries = runtime.retries        # a failed job is submitted again this many times
        self._sleep = sleep
        self.mode = "session" if runtime.execution_mode == "auto" else runtime.execution_mode
        self._mode = None
        self._estimator = None

    # what a kind of device does its own way (the defaults: a real device)

    def execution_device(self):
        """The device the Session/Batch and the jobs run on."""
        return self.device

    def prepared(self, circuit: QuantumCircuit, observables: Sequence[SparsePauliOp]) -> tuple:
        """The circuit and observables as submitted."""
        return circuit, observables

    def configure(self, estimator) -> None:
        """Options of the Estimator beyond the runtime section's."""

    def estimator(self):
        """The Estimator on the open Session/Batch (opened at the first job), or on the device (job mode)."""
        if self._estimator is None:
            from qiskit_ibm_runtime import Batch, Session
            from qiskit_ibm_runtime.executor_estimator import Estimator

            max_time = self.runtime.max_session_seconds
            device = self.execution_device()
            if self.mode == "session":
                self._mode = Session(backend=device, max_time=max_time)
            elif self.mode == "batch":
                self._mode = Batch(backend=device, max_time=max_time)
            estimator = Estimator(mode=self._mode or device)
            estimator.options.update(**estimator_options(self.runtime, self.shots))
            self.configure(estimator)
            self._estimator = estimator
        return self._estimator

    def submit(self, circuit: QuantumCircuit, observables: Sequence[SparsePauliOp],
               parameter_table: np.ndarray, shots: Optional[int], tag: Optional[str] = None,
               max_seconds: Optional[float] = None) -> RuntimeJob:
        circuit, observables = self.prepared(circuit, observables)
        # shots other than the Estimator's default (validation at fewer shots) travel with the PUB
        precision = None if shots is None or shots == self.shots else shots ** -0.5
        pub = estimator_pub(circuit, observables, parameter_table, precision)
        attempts = 0

        def submit_once():
            nonlocal attempts
            attempts += 1
            if attempts > 1 and tag:   # the service may have taken the job whose answer was lost
                taken = self.tagged_job(tag)
                if taken is not None:
                    log.warning(f"{self.name}: the service had taken job {taken.job_id()} before the "
                                f"connection failed; not submitting it again")
                    return taken
            return self.run_in_mode(pub, tag, max_seconds)

        job = self.with_retries("submit a job", submit_once)
        return RuntimeJob(job, len(parameter_table), len(observables), self.dedicated_session_id(), self.with_retries)

    def tagged_job(self, tag: str):
        """The service's newest job carrying `tag` (None where jobs cannot be looked up: local mode)."""
        return None

    def dedicated_session_id(self) -> Optional[str]:
        """The id of the open dedicated Session (billed by its elapsed time), None in batch or job mode."""
        from qiskit_ibm_runtime import Batch, Session

        mode = self._mode
        if isinstance(mode, Session) and not isinstance(mode, Batch):
            return mode.session_id
        return None

    def run_in_mode(self, pub: tuple, tag: Optional[str] = None, max_seconds: Optional[float] = None):
        """Submit `pub` in the current execution mode; under `auto`, a mode the account may not
        open (the Open plan refuses sessions) gives way to the next one: session, batch, job.
        `max_seconds` becomes the job's max_execution_time: the service cancels it past that."""
        while True:
            try:
                estimator = self.estimator()
                estimator.options.environment.job_tags = [tag] if tag else []
                estimator.options.max_execution_time = max_execution_time(max_seconds)
                return estimator.run([pub])
            except Exception as problem:
                if not is_mode_refusal(problem):
                    raise
                if self.runtime.execution_mode != "auto" or self.mode == "job":
                    raise UserError(f"{self.name} refused {self.mode} mode: this account may not open one "
                                    f"(IBM's Open plan allows no sessions); set runtime.execution_mode: auto "
                                    f"(or batch / job)") from None
                refused, self.mode = self.mode, FALLBACK_MODE[self.mode]
                self.close()
                log.warning(f"{self.name}: this account may not open a {refused} (IBM's Open plan allows none); "
                            f"running in {self.mode} mode instead")

    def with_retries(self, what: str, action: Callable[[], Any]) -> Any:
        """`action()`, retried on transient errors (network, 5xx, a full queue) with doubling,
        jittered backoff; the service asking the client to wait (429 with Retry-After, the plan's
        pending-jobs limit) is waited out without counting as a failed attempt; a permanent error
        (a bad request, no permission, not found) fails at once. Either way a BackendFailure with
        the service's message: the run stops resumably."""
        delay, failures, waits = self.runtime.retry_backoff_seconds, 0, 0
        while True:
            try:
                return action()
            except (UserError, KeyboardInterrupt):
                raise
            except Exception as problem:
                last = problem
                wait = throttle_seconds(problem)
                if wait is not None and waits < MAX_THROTTLE_WAITS:
                    waits += 1
                    log.info(f"{self.name}: the service asks to wait before it takes more ({scrub(first_line(problem, 160))}); "
                             f"waiting {wait:.0f} s")
                    self._sleep(wait)
                    continue
                if not is_transient(problem):
                    raise BackendFailure(f"{self.name}: could not {what}: {scrub(first_line(problem))} "
                                         f"(not retried: the service refused it)") from None
                failures += 1
                if failures > self.runtime.retries:
                    break
                self._sleep(delay * random.uniform(0.5, 1.5))   # jitter: retries of many runs spread out
                delay *= 2
        raise BackendFailure(f"{self.name}: could not {what} after {self.runtime.retries + 1} attempts: "
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
        return {"execution_mode": self.mode, "estimator_options": estimator_options(self.runtime, self.shots)}

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


class DeviceFamily:
    """What the fake and ibm backend families share (registry.py): a device whose jobs go through
    the run dir's job journal and are charged by the shot."""

    remote = True
    job_overhead_s = JOB_OVERHEAD_S
    _seconds_per_shot: dict = {}    # (device, circuit, optimisation level) -> seconds: one lookup per process

    def default_shots(self, config: Config) -> int:
        return config.quantum.shots or config.runtime.default_shots

    def seconds_per_shot(self, config: Config) -> float:
        """QPU seconds per shot of the config's transpiled circuit on its device (repetition delay +
        circuit duration), once per measurement basis of its observables. Asked of the device once
        per process: `estimate` needs it for its table and for the plan, and an ibm_<device> is a
        connection to the service each time."""
        q = config.quantum
        spec = QuantumSpec.of(config.quantum)
        key = (q.backend, spec, q.optimization_level)
        if key not in DeviceFamily._seconds_per_shot:
            backend = self.make(config)
            circuit = DEFAULT_TRANSPILE_CACHE.get(build_dressed_circuit(spec), backend.name, backend.transpile_target,
                                                  q.optimization_level).circuit
            DeviceFamily._seconds_per_shot[key] = backend.seconds_per_shot(circuit) * len(measurement_bases(spec.observables))
        return DeviceFamily._seconds_per_shot[key]

    def make(self, config: Config) -> RuntimeBackend:
        raise NotImplementedError

    def device_name(self, config: Config) -> str:
        """The device a run on quantum.backend uses (ibm_least_busy picks one)."""
        return config.quantum.backend

    def qpu_seconds_left(self, config: Config) -> Optional[float]:
        """What the account's usage window leaves (None: no limit, or none known)."""
        return None

    def queue_wait_seconds(self, config: Config) -> float:
        """Expected seconds a job waits in the device's queue now (0: local testing mode, no queue)."""
        return 0.0
