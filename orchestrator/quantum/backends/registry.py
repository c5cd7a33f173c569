"""The backend families, and the one place a run builds its backend and its circuit runner.

    aer    aer_simulator     aer.py    qiskit-aer here (exact, shots, a fake device's noise), or on
                                       Ray circuit workers
    fake   fake_<device>     fake.py   a fake IBM device in local testing mode: its noise, offline
    ibm    ibm_<device>      ibm.py    an IBM Quantum device of the account's service

One object per family answers everything the rest of the project asks of a backend name:

    names              its name rule (orchestrator/core/backend_names.py: the config checks a
                       name's form with it, without qiskit); claims(name)
    check(config)      what can be checked before anything is written (device, credentials, size)
    make(config)       the Backend (runner.py's protocol) the runner submits to
    remote             its jobs go through the run dir's job journal and count against
                       runtime.max_qpu_seconds; a run on it is a plan of phases (training/phases.py)
    default_shots(config), seconds_per_shot(config), job_overhead_s    what `estimate` charges
    listing(config)    its rows of `orchestrate backends`
    device_name(config)        the device a run uses (ibm_least_busy picks one; resolve records it)
    qpu_seconds_left(config)   what the account's usage window leaves (IBM's Open plan), or None
    queue_wait_seconds(config) how long a job is expected to wait in the device's queue now
    fake_twin(name)    the fake device whose noise stands for it on Aer (a plan's noisy phase)

Adding a family: its module (a Backend and the family object), one line in FAMILIES below, and its
name rule in core/backend_names.NAMES.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Protocol

from orchestrator.config import Config
from orchestrator.core.backend_names import BackendNames, family_of, unknown_backend
from orchestrator.core.errors import UserError
from orchestrator.quantum.backends.aer import AER
from orchestrator.quantum.backends.fake import FAKE
from orchestrator.quantum.backends.ibm import IBM
from orchestrator.quantum.circuits import QuantumSpec, build_dressed_circuit
from orchestrator.quantum.gradients import gradient_method
from orchestrator.quantum.runner import Backend, CircuitRunner


class BackendFamily(Protocol):
    names: BackendNames
    title: str               # "IBM Quantum devices": how `orchestrate backends` names the family
    remote: bool
    job_overhead_s: float

    def check(self, config: Config) -> None: ...

    def make(self, config: Config) -> Backend: ...

    def default_shots(self, config: Config) -> Optional[int]: ...

    def seconds_per_shot(self, config: Config) -> float: ...

    def listing(self, config: Config) -> list[dict]: ...

    def device_name(self, config: Config) -> str: ...

    def qpu_seconds_left(self, config: Config) -> Optional[float]: ...

    def queue_wait_seconds(self, config: Config) -> float: ...

    def fake_twin(self, backend: str) -> Optional[str]: ...


FAMILIES: dict[str, BackendFamily] = {family.names.family: family for family in (AER, FAKE, IBM)}


def backend_family(name: str) -> BackendFamily:
    """The family of the backend `name`; a name of no known form is one line."""
    family = FAMILIES.get(family_of(name) or "")
    if family is None:
        raise UserError(unknown_backend(name))
    return family


def check_backend(config: Config) -> None:
    """Everything about the configured backend that can be checked before anything is written."""
    backend_family(config.quantum.backend).check(config)


def make_backend(config: Config) -> Backend:
    return backend_family(config.quantum.backend).make(config)


def make_runner(config: Config, run_dir: Optional[Path] = None) -> CircuitRunner:
    """A runner on the configured backend; on a remote backend (fake_/ibm_ devices) with a
    `run_dir`, its jobs go through that run dir's job journal and its QPU budget."""
    q = config.quantum
    family = backend_family(q.backend)
    journal = None
    backend = family.make(config)
    if run_dir is not None and family.remote:
        from orchestrator.quantum.journal import JobJournal

        journal = JobJournal(run_dir, config.runtime.max_qpu_seconds, backend.session_seconds)
    return CircuitRunner(build_dressed_circuit(QuantumSpec.of(q)), backend,
                                   optimization_level=q.optimization_level, job_hook=journal,
                                   gradient=gradient_method(q, config.train.seed), eval_shots=q.eval_shots)
