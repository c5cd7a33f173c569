"""IBM Quantum devices (`ibm_<device>`) through qiskit-ibm-runtime (the Estimator path is runtime.py).

    service     QiskitRuntimeService from QISKIT_IBM_TOKEN / QISKIT_IBM_INSTANCE / QISKIT_IBM_CHANNEL
                or qiskit's saved account (`connect_service`: the network boundary, the one thing
                tests replace)
    device      service.backend(name), checked against the account's backends
    jobs        found again after a kill: by id (`attach`, service.job) or, when the id never
                reached the journal, by the job's tag (`find`, service.jobs)
"""
from __future__ import annotations

import os
from typing import Optional

from orchestrator.config import RETIRED_CHANNEL, RETIRED_CHANNEL_TEXT, Config
from orchestrator.core.backend_names import names_of
from orchestrator.core.errors import BackendFailure, UserError, first_line
from orchestrator.quantum.backends.fake import fake_twin_of
from orchestrator.quantum.backends.runtime import (DeviceFamily, RuntimeBackend, RuntimeJob, check_device_capacity,
                                                   scrub)

CREDENTIALS_HELP = ("set QISKIT_IBM_TOKEN (and QISKIT_IBM_INSTANCE, optionally QISKIT_IBM_CHANNEL), or save an "
                    "account once with QiskitRuntimeService.save_account(token=..., instance=...)")


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


# --- the backend -------------------------------------------------------------------------------

class IbmDeviceBackend(RuntimeBackend):
    """An IBM Quantum device of the account's service."""

    def __init__(self, name: str, runtime, shots: int, max_parameter_sets_per_job: Optional[int] = None,
                 service=None, **options) -> None:
        self.service = service if service is not None else connect_service(runtime.channel, runtime.instance)
        super().__init__(name, service_device(self.service, name), runtime, shots, max_parameter_sets_per_job,
                         **options)

    def attach(self, job_id: str, n_rows: int, n_observables: int) -> Optional[RuntimeJob]:
        """The job `job_id` submitted earlier (by a client that was killed), or None if the
        service cannot find it."""
        try:
            job = self.with_retries(f"find job {job_id}", lambda: self.service.job(job_id))
        except BackendFailure:
            return None
        return RuntimeJob(job, n_rows, n_observables)

    def find(self, tag: str, n_rows: int, n_observables: int) -> Optional[RuntimeJob]:
        """The newest job the service holds with `tag`, or None."""
        try:
            jobs = self.with_retries(f"look up jobs tagged {tag}", lambda: self.service.jobs(job_tags=[tag], limit=1))
        except BackendFailure:
            return None
        return RuntimeJob(jobs[0], n_rows, n_observables) if jobs else None


class IbmFamily(DeviceFamily):
    """ibm_<device>: the devices of the account's IBM Quantum service."""

    names = names_of("ibm")
    title = "IBM Quantum devices"

    def check(self, config: Config) -> None:
        q, r = config.quantum, config.runtime
        device = service_device(connect_service(r.channel, r.instance), q.backend)
        check_device_capacity(device, q.backend, q.n_qubits, self.default_shots(config))

    def make(self, config: Config) -> IbmDeviceBackend:
        q = config.quantum
        return IbmDeviceBackend(q.backend, config.runtime, self.default_shots(config), q.max_parameter_sets_per_job)

    def listing(self, config: Config) -> list[dict]:
        """The account's devices; one line (UserError) without credentials."""
        return describe_backends(connect_service(config.runtime.channel, config.runtime.instance))

    def fake_twin(self, backend: str) -> Optional[str]:
        return fake_twin_of(backend.removeprefix(self.names.prefix))


IBM = IbmFamily()
