"""A stand-in for IBM Quantum's cloud service, replacing it at its network boundary only.

`FakeCloudService` is what `QiskitRuntimeService` would be: it names devices (`ibm_fez` backed
by the fake device FakeFez, ...), hands out jobs, keeps them by id and finds them again with
`job(job_id)`. It runs every job in qiskit-ibm-runtime's real local testing mode (its parent
class), so the primitives, Session and Batch are the real ones. What a real cloud keeps across a
client crash is kept in a folder: each job's result, and a log of every submission, so a test
can count submissions across a kill -9 of the client.

`install(root)` puts it in place in this process: `orchestrator.quantum.backends.ibm.connect_service`
returns it, and qiskit-ibm-runtime's Session/Batch and primitives, which create a local service
for a local device, get it too. `python -m tests.support.fake_cloud ROOT -- orchestrate args...` runs the
command line that way in a subprocess (so it can be killed).

Behaviour switches, read from ROOT/behaviour.json when a job is submitted:
    {"hang_on_submission": 3}    the 3rd submission's job never returns its result to this client
                                 (the job itself finishes in the cloud): the client looks stuck
                                 on an in-flight job, which is when the test kills it
    {"fail_results": [2, 5]}     the 2nd and 5th submissions' jobs fail (RuntimeJobFailureError)
    {"fail_all": true}           every job fails
    {"usage_seconds_per_row": x} jobs report quantum_seconds = rows * x in their usage metrics
    {"interrupt_on_submission": 2} the user presses Ctrl-C while the 2nd job is being submitted
    {"refuse_sessions": true}    an Open-plan account: a job submitted in a Session is refused with
                                 the service's own error (Batch and job mode are allowed)
    {"kill_after_submission": 3} the client process dies (SIGKILL) right after the cloud took its
                                 3rd job: before the client learnt the job's id
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import signal
import sys
import time
import uuid
from pathlib import Path

import numpy as np
from qiskit.providers.exceptions import QiskitBackendNotFoundError
from qiskit_ibm_runtime.api.exceptions import RequestsApiError
from qiskit_ibm_runtime.exceptions import IBMRuntimeError, RuntimeJobFailureError, RuntimeJobNotFound
from qiskit_ibm_runtime.fake_provider.local_service import QiskitRuntimeLocalService

from orchestrator.quantum.backends.devices import resolve_fake_device

# What IBM Quantum answers an Open-plan account that runs a job in a session (HTTP 403).
OPEN_PLAN_REFUSAL = ("'403 Client Error: Forbidden for url: https://quantum.cloud.ibm.com/api/v1/jobs. "
                     "You are not authorized to run a session when using the open plan., Error code: 1352.'")

DEVICES = {"ibm_fez": "fake_fez", "ibm_kingston": "fake_kingston", "ibm_torino": "fake_torino",
           "ibm_manila": "fake_manila"}


class CloudJob:
    """A job as the cloud returns it: an id, a result (once done), usage metrics."""

    def __init__(self, job_id: str, cloud: "FakeCloudService", hang: bool = False) -> None:
        self._id, self._cloud, self._hang = job_id, cloud, hang

    def job_id(self) -> str:
        return self._id

    def result(self):
        while self._hang:          # the client waits on a job that is in flight (forever)
            time.sleep(0.05)
        stored = self._cloud.stored(self._id)
        if stored["failed"]:
            raise RuntimeJobFailureError(f"Unable to retrieve job result. Job {self._id} failed: error in the device")
        return stored["result"]

    def metrics(self) -> dict:
        stored = self._cloud.stored(self._id)
        return {"usage": {"quantum_seconds": stored["quantum_seconds"], "seconds": stored["quantum_seconds"]}}


class FakeCloudService(QiskitRuntimeLocalService):
    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = Path(root)
        (self.root / "jobs").mkdir(parents=True, exist_ok=True)

    # --- what QiskitRuntimeService offers -----------------------------------------------------

    def backend(self, name: str = None, instance=None, use_fractional_gates=False):
        if name not in DEVICES:
            raise QiskitBackendNotFoundError(f"The backend {name} is not available to this account. "
                                             "This might happen for example when a backend is retired.")
        return resolve_fake_device(DEVICES[name])

    def backends(self, name=None, min_num_qubits=None, instance=None, dynamic_circuits=None, filters=None,
                 **kwargs):
        devices = []
        for ibm_name, fake_name in DEVICES.items():
            device = resolve_fake_device(fake_name)
            device.name = ibm_name   # how the cloud names it
            devices.append(device)
        return devices

    def usage(self) -> dict:
        return {}   # no usage limit

    def job(self, job_id: str) -> CloudJob:
        if not (self.root / "jobs" / f"{job_id}.pkl").is_file():
            raise RuntimeJobNotFound(f"Job not found: {job_id}")
        return CloudJob(job_id, self)

    def jobs(self, limit=10, skip=0, backend_name=None, pending=None, program_id=None, instance=None,
             job_tags=None, session_id=None, created_after=None, created_before=None, descending=True, **kwargs):
        """The account's jobs carrying every tag in `job_tags`, newest first."""
        found = []
        for path in (self.root / "jobs").glob("*.pkl"):
            stored = self.stored(path.stem)
            if set(job_tags or []) <= set(stored.get("tags") or []):
                found.append((path.stat().st_mtime_ns, path.stem))
        found.sort(reverse=descending)
        return [CloudJob(job_id, self) for _, job_id in found[skip:skip + limit]]

    # --- where the primitives submit --------------------------------------------------------------

    def _run_executor(self, backend, options, inputs, dry_run=False):
        """Where qiskit-ibm-runtime's Estimator (the client-side one, on the Executor) submits a
        job for a local device. The real service receives the job's tags and PUBs with the
        request; local testing mode passes neither here, so they are read from the callers
        (Executor.run's options, Estimator.run's pubs)."""
        executor, estimator_call = caller_with("Executor"), caller_with("Estimator", "pubs")
        tags = list(executor.f_locals["self"].options.environment.job_tags or []) if executor else []
        pubs = estimator_call.f_locals["pubs"] if estimator_call else []
        rows = sum(int(np.shape(pub[2])[0]) if len(pub) > 2 else 1 for pub in pubs)
        if tags:   # a device whose noise replays: the same job (its tag names its rows) gives the same values
            seed = int(hashlib.sha256(tags[0].encode()).hexdigest()[:8], 16)
            options = options.model_copy(update={"seed_simulator": seed})
        return self.submit(lambda: super(FakeCloudService, self)._run_executor(backend, options, inputs, dry_run),
                           tags, rows)

    def submit(self, run_locally, tags: list, rows: int) -> "CloudJob":
        behaviour = self.behaviour()
        number = self.count_submission()
        if number == behaviour.get("interrupt_on_submission"):
            raise KeyboardInterrupt
        status = behaviour.get("http_errors", {}).get(str(number))
        if status:   # as QiskitRuntimeService._run re-raises an HTTP error of the API
            kind = "Server" if status >= 500 else "Client"
            refusal = RequestsApiError(f"{status} {kind} Error: for url: https://quantum.cloud.ibm.com/api/v1/jobs", status)
            raise IBMRuntimeError(f"Failed to run program: {refusal}")
        if behaviour.get("refuse_sessions") and submitted_in_a_session():
            # as QiskitRuntimeService._run re-raises the API's refusal
            raise IBMRuntimeError(f"Failed to run program: {RequestsApiError(OPEN_PLAN_REFUSAL, 403)}")
        local_job = run_locally()
        failed = behaviour.get("fail_all", False) or number in behaviour.get("fail_results", [])
        result = None if failed else local_job.result()   # the job runs to completion "in the cloud"
        per_row = behaviour.get("usage_seconds_per_row")
        job_id = f"cloud-{uuid.uuid4().hex[:16]}"
        stored = {"result": result, "failed": failed, "tags": tags,
                  "quantum_seconds": rows * per_row if per_row is not None and not failed else None}
        with open(self.root / "jobs" / f"{job_id}.pkl", "wb") as file:
            pickle.dump(stored, file)
        if number == behaviour.get("kill_after_submission"):
            os.kill(os.getpid(), signal.SIGKILL)   # the cloud has the job; the client never hears its id
        return CloudJob(job_id, self, hang=number == behaviour.get("hang_on_submission"))

    # --- the cloud's own bookkeeping --------------------------------------------------------------

    def stored(self, job_id: str) -> dict:
        with open(self.root / "jobs" / f"{job_id}.pkl", "rb") as file:
            return pickle.load(file)

    def behaviour(self) -> dict:
        path = self.root / "behaviour.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def count_submission(self) -> int:
        with open(self.root / "submissions.log", "a") as log:
            log.write("job\n")
        return submissions(self.root)


def submitted_in_a_session() -> bool:
    """Whether the job being submitted comes through a Session that is not a Batch. The real
    service sees the session id on the request; local testing mode passes none, so look at the
    callers (the Executor on a Session) instead."""
    from qiskit_ibm_runtime import Batch, Session

    executor = caller_with("Executor")
    mode = executor.f_locals["self"].mode if executor else None
    return isinstance(mode, Session) and not isinstance(mode, Batch)


def caller_with(class_name: str, local: str = "self"):
    """The nearest calling frame of a method of qiskit-ibm-runtime's class `class_name` that has
    `local`, or None."""
    frame = sys._getframe(1)
    while frame is not None:
        caller = frame.f_locals.get("self")
        if (type(caller).__name__ == class_name and type(caller).__module__.startswith("qiskit_ibm_runtime")
                and local in frame.f_locals):
            return frame
        frame = frame.f_back
    return None


def jobs_kept(root: Path) -> int:
    """Jobs the cloud ran and keeps (and would bill): a request refused, or one whose client died
    before the cloud had it, is not among them."""
    return len(list((Path(root) / "jobs").glob("*.pkl")))


def submissions(root: Path) -> int:
    path = Path(root) / "submissions.log"
    return len(path.read_text().splitlines()) if path.is_file() else 0


def install(root: Path, patch=setattr) -> FakeCloudService:
    """Replace the IBM cloud service (only it) in this process with a FakeCloudService in `root`;
    `patch` is setattr, or pytest's monkeypatch.setattr to undo it after a test."""
    import qiskit_ibm_runtime.fake_provider.local_service as local_service_module
    import qiskit_ibm_runtime.session as session_module

    from orchestrator.quantum.backends import ibm

    cloud = FakeCloudService(root)
    patch(ibm, "connect_service", lambda runtime: cloud)
    patch(session_module, "QiskitRuntimeLocalService", lambda: cloud)        # Session / Batch on a local device
    patch(local_service_module, "QiskitRuntimeLocalService", lambda: cloud)  # job mode (primitives on a device)
    return cloud


if __name__ == "__main__":
    # python -m tests.support.fake_cloud ROOT -- ARGS...: `orchestrate ARGS...` against the fake cloud in ROOT
    root, separator, *arguments = sys.argv[1:]
    assert separator == "--", "usage: python -m tests.support.fake_cloud ROOT -- ARGS..."
    install(Path(root))
    from orchestrator.cli import main

    sys.exit(main(arguments))
