"""IBM Quantum devices (`ibm_<device>`) through qiskit-ibm-runtime (the Estimator path is runtime.py).

    service     QiskitRuntimeService from QISKIT_IBM_TOKEN / QISKIT_IBM_INSTANCE / QISKIT_IBM_CHANNEL
                and runtime.url / QISKIT_IBM_URL, or qiskit's saved account (`connect_service`); tests
                point it at a local IBM Quantum Platform over HTTP (tests/support/ibm_platform.py)
    device      service.backend(name), checked against the account's backends
    jobs        found again after a kill: by id (`attach`, service.job) or, when the id never
                reached the journal, by the job's tag (`find`, service.jobs)
"""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Optional

from orchestrator.config import RETIRED_CHANNEL, RETIRED_CHANNEL_TEXT, Config
from orchestrator.core.backend_names import family_of, names_of
from orchestrator.core.errors import BackendFailure, UserError, first_line
from orchestrator.quantum.backends.devices import processor_of
from orchestrator.quantum.backends.fake import fake_twin_of
from orchestrator.quantum.backends.runtime import (DeviceFamily, RuntimeBackend, RuntimeJob, check_device_capacity,
                                                   scrub)

log = logging.getLogger(__name__)

CREDENTIALS_HELP = ("set QISKIT_IBM_TOKEN (and QISKIT_IBM_INSTANCE, optionally QISKIT_IBM_CHANNEL), or save an "
                    "account once with QiskitRuntimeService.save_account(token=..., instance=...)")


# --- the service ------------------------------------------------------------------------------

_SERVICES: dict = {}   # one connection per account and address in a process: check, make and estimate share it


def connect_service(runtime):
    """QiskitRuntimeService for the config's `runtime` section: the token from QISKIT_IBM_TOKEN (else
    qiskit's saved account, which carries its own URL), the URL from runtime.url or QISKIT_IBM_URL
    (else IBM's cloud); one clear error without credentials or when the service refuses them."""
    channel = runtime.channel or os.environ.get("QISKIT_IBM_CHANNEL")
    if channel == RETIRED_CHANNEL:
        raise UserError(RETIRED_CHANNEL_TEXT.replace("config: runtime.channel", "the IBM channel"))
    token = os.environ.get("QISKIT_IBM_TOKEN")
    url = runtime.url or os.environ.get("QISKIT_IBM_URL")
    instance = runtime.instance or os.environ.get("QISKIT_IBM_INSTANCE")
    # the client's own variables (IAM_URL, ...) decide where it goes too
    key = (channel, token, url, instance, os.environ.get("IAM_URL"), os.environ.get("GLOBAL_SEARCH_URL"))
    if key not in _SERVICES:
        _SERVICES[key] = new_service(channel, token, url, instance)
    return _SERVICES[key]


def new_service(channel: Optional[str], token: Optional[str], url: Optional[str], instance: Optional[str]):
    from qiskit_ibm_runtime import QiskitRuntimeService

    if not token:
        try:
            saved = QiskitRuntimeService.saved_accounts()
        except Exception:  # an unreadable account file is the same as none
            saved = {}
        if not saved:
            raise UserError(f"no IBM Quantum credentials: {CREDENTIALS_HELP}")
    where = f" at {url}" if url else ""
    # the client warns "Loading account with the given token" on every construction: that is the point
    with logging_level("qiskit_ibm_runtime.qiskit_runtime_service", logging.ERROR):
        try:
            if token:
                service = QiskitRuntimeService(channel=channel or "ibm_quantum_platform", token=token, url=url,
                                               instance=instance)
            else:
                service = QiskitRuntimeService(channel=channel, instance=instance)
            # the client builds even when the compute API behind `url` cannot be reached: ask it once
            service.usage()
        except Exception as problem:
            raise UserError(f"could not connect to IBM Quantum{where}: {scrub(first_line(problem))}") from None
    return service


@contextlib.contextmanager
def logging_level(name: str, level: int):
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)


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
        rows.append({"name": device.name, "qubits": device.num_qubits, "processor": processor_of(device),
                     "status": state, "queue": pending, "local": False})
    return sorted(rows, key=lambda row: row["name"])


# --- the instance's usage window (IBM's Open plan: 600 QPU s per rolling 28 days) ----------------

QUEUED_JOB_SECONDS = 10.0      # assumed device time of each job ahead in a queue (for wall-time estimates)
OPEN_PLAN_PENDING_JOBS = 3     # jobs queued or running at once on an Open-plan instance
LEAST_BUSY = "ibm_least_busy"


def usage_window(service) -> Optional[dict]:
    """The instance's QPU usage in its current window, as the service reports it (`service.usage()`):
    consumed, limit and remaining seconds, the plan and the window's dates; None when the instance
    has no usage limit (or the service does not say)."""
    try:
        usage = service.usage() or {}
    except Exception as problem:
        log.info(f"could not read the instance's usage: {scrub(first_line(problem))}")
        return None
    limit = usage.get("usage_limit_seconds", usage.get("usage_allocation_seconds"))
    if limit is None:
        return None
    consumed = float(usage.get("usage_consumed_seconds") or 0.0)
    period = usage.get("usage_period") or {}
    return {"plan": usage.get("plan_id") or usage.get("plan"), "consumed_seconds": consumed,
            "limit_seconds": float(limit), "remaining_seconds": max(0.0, float(limit) - consumed),
            "period_start": period.get("start_time"), "period_end": period.get("end_time")}


def is_open_plan(window: Optional[dict]) -> bool:
    plan = str((window or {}).get("plan") or "").lower()
    return "open" in plan or (window is not None and not plan and window["limit_seconds"] <= 600)


def instance_usage(config: Config, backend: Optional[str] = None) -> dict:
    """`orchestrate usage`: the instance's usage window, and `backend`'s status and queue."""
    if backend is not None and IbmFamily.names.family != family_of(backend):
        raise UserError(f"--backend {backend}: usage is an IBM Quantum instance's; name an ibm_<device>")
    service = connect_service(config.runtime)
    usage = {"instance": service.active_instance(), "window": usage_window(service),
             "backend": None}
    if backend is not None:
        device = service_device(service, backend)
        status = device.status()
        usage["backend"] = {"name": backend, "operational": status.operational, "status": status.status_msg,
                            "pending_jobs": status.pending_jobs}
    return usage


def describe_usage(usage: dict) -> list[str]:
    window, lines = usage["window"], [f"instance {usage['instance'] or '(the account default)'}"]
    if window is None:
        lines.append("  no QPU usage limit on this instance")
    else:
        dates = (f" ({window['period_start']} to {window['period_end']})" if window.get("period_start") else "")
        lines.append(f"  plan: {window['plan'] or 'unknown'}; QPU time in this window{dates}: "
                     f"{window['consumed_seconds']:.1f} s used of {window['limit_seconds']:g} s, "
                     f"{window['remaining_seconds']:.1f} s left")
    if usage["backend"]:
        b = usage["backend"]
        lines.append(f"  {b['name']}: {'online' if b['operational'] else 'offline'} ({b['status']}), "
                     f"{b['pending_jobs']} jobs in its queue")
    return lines


def least_busy_device(service, n_qubits: int) -> str:
    """The operational device with the fewest pending jobs that has `n_qubits` qubits."""
    try:
        return service.least_busy(min_num_qubits=n_qubits, operational=True, simulator=False).name
    except Exception as problem:
        raise UserError(f"{LEAST_BUSY}: no operational device with {n_qubits}+ qubits is available to this account "
                        f"({scrub(first_line(problem))})") from None


# --- the backend -------------------------------------------------------------------------------

class IbmDeviceBackend(RuntimeBackend):
    """An IBM Quantum device of the account's service."""

    def __init__(self, name: str, runtime, shots: int, max_parameter_sets_per_job: Optional[int] = None,
                 service=None, **options) -> None:
        self.service = service if service is not None else connect_service(runtime)
        super().__init__(name, service_device(self.service, name), runtime, shots, max_parameter_sets_per_job,
                         **options)
        self.max_pending_jobs = runtime.max_pending_jobs or (
            OPEN_PLAN_PENDING_JOBS if is_open_plan(usage_window(self.service)) else None)

    def tagged_job(self, tag: str):
        jobs = self.service.jobs(job_tags=[tag], limit=1)
        return jobs[0] if jobs else None

    def session_seconds(self, session_ids: list) -> dict:
        """{session id: elapsed active seconds} of dedicated sessions, as the service reports them."""
        from qiskit_ibm_runtime import Session

        return {session_id: Session.from_id(session_id, service=self.service).usage() for session_id in session_ids}

    def attach(self, job_id: str, n_rows: int, n_observables: int) -> Optional[RuntimeJob]:
        """The job `job_id` submitted earlier (by a client that was killed), or None if the
        service cannot find it."""
        try:
            job = self.with_retries(f"find job {job_id}", lambda: self.service.job(job_id))
        except BackendFailure:
            return None
        return RuntimeJob(job, n_rows, n_observables, with_retries=self.with_retries)

    def find(self, tag: str, n_rows: int, n_observables: int) -> Optional[RuntimeJob]:
        """The newest job the service holds with `tag`, or None."""
        try:
            job = self.with_retries(f"look up jobs tagged {tag}", lambda: self.tagged_job(tag))
        except BackendFailure:
            return None
        return RuntimeJob(job, n_rows, n_observables, with_retries=self.with_retries) if job is not None else None


class IbmFamily(DeviceFamily):
    """ibm_<device>: the devices of the account's IBM Quantum service."""

    names = names_of("ibm")
    title = "IBM Quantum devices"
    _least_busy: dict = {}

    def check(self, config: Config) -> None:
        q = config.quantum
        service = connect_service(config.runtime)
        name = self.device_name(config, service)
        check_device_capacity(service_device(service, name), name, q.n_qubits, self.default_shots(config))

    def make(self, config: Config) -> IbmDeviceBackend:
        q = config.quantum
        service = connect_service(config.runtime)
        return IbmDeviceBackend(self.device_name(config, service), config.runtime, self.default_shots(config),
                                q.max_parameter_sets_per_job, service=service)

    def device_name(self, config: Config, service=None) -> str:
        """The device the run uses: quantum.backend, or for ibm_least_busy the least busy device that
        fits the circuit, picked once per process (a run records it in config.yaml: `resolve`)."""
        q = config.quantum
        if q.backend != LEAST_BUSY:
            return q.backend
        key = (config.runtime.url, config.runtime.instance, q.n_qubits)
        if key not in self._least_busy:
            self._least_busy[key] = least_busy_device(service or connect_service(config.runtime), q.n_qubits)
            log.info(f"{LEAST_BUSY}: picked {self._least_busy[key]}")
        return self._least_busy[key]

    def queue_wait_seconds(self, config: Config) -> float:
        """The device's pending jobs now, each assumed to hold it QUEUED_JOB_SECONDS (IBM publishes
        the queue's length, not its jobs' durations)."""
        service = connect_service(config.runtime)
        try:
            pending = service_device(service, self.device_name(config, service)).status().pending_jobs or 0
        except UserError:
            raise
        except Exception as problem:
            log.warning(f"could not read {config.quantum.backend}'s queue: {scrub(first_line(problem))}")
            return 0.0
        return pending * QUEUED_JOB_SECONDS

    def qpu_seconds_left(self, config: Config) -> Optional[float]:
        """What is left of the instance's usage window (IBM's Open plan: 600 s per rolling 28 days);
        None without a limit."""
        window = usage_window(connect_service(config.runtime))
        return None if window is None else window["remaining_seconds"]

    def listing(self, config: Config) -> list[dict]:
        """The account's devices; one line (UserError) without credentials."""
        return describe_backends(connect_service(config.runtime))

    def fake_twin(self, backend: str) -> Optional[str]:
        return fake_twin_of(backend.removeprefix(self.names.prefix))


IBM = IbmFamily()
