"""Backends the scheduler submits parameter tables to, and the one place a run builds them.

    devices.py     backend names: aer_simulator, fake_<device>, ibm_<device> (one lookup)
    aer.py         qiskit-aer on this machine (exact, shots, a fake device's noise model)
    ibm.py         IBM Quantum devices and their fake twins, through qiskit-ibm-runtime
    estimator.py   the one-PUB Estimator helpers both use

`make_scheduler(config, run_dir)` is what a run calls: the backend from `make_backend`, the job
journal of the run dir on a remote backend (given to the scheduler when it is built), and the
dressed-circuit template of the config.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from orchestrator.config import Config
from orchestrator.core.errors import UserError
from orchestrator.core.paulis import observable_labels
from orchestrator.quantum.backends.devices import backend_kind, fake_device_class
from orchestrator.quantum.circuits import QuantumSpec, build_dressed_circuit
from orchestrator.quantum.gradients import GradientMethod
from orchestrator.quantum.scheduler import Backend, ParameterShiftScheduler

if TYPE_CHECKING:
    from orchestrator.quantum.backends.aer import AerOptions


def check_backend(config: Config) -> None:
    """Everything about the configured backend that can be checked before anything is written:
    the name, a fake device or noise model that exists, credentials and the device for ibm_."""
    q = config.quantum
    kind = backend_kind(q.backend)
    if q.noise_model is not None:
        fake_device_class(q.noise_model)
    if kind == "aer":
        check_aer_capacity(q.n_qubits, noisy=q.noise_model is not None)
        return
    if kind == "ibm":
        from orchestrator.quantum.backends.ibm import connect_service, service_device

        device = service_device(connect_service(config.runtime.channel, config.runtime.instance), q.backend)
    else:
        device = fake_device_class(q.backend)()
    check_device_capacity(device, q.backend, q.n_qubits, q.shots or config.runtime.default_shots)


def check_aer_capacity(n_qubits: int, noisy: bool) -> None:
    """Refuse a circuit wider than Aer can hold in this machine's memory (a noisy one is a density
    matrix: half the qubits), before anything is written."""
    from qiskit_aer import AerSimulator

    method = "density_matrix" if noisy else "statevector"
    limit = AerSimulator(method=method).configuration().n_qubits
    if n_qubits > limit:
        what = "a density matrix, with a noise model" if noisy else "a statevector"
        raise UserError(f"quantum.n_qubits = {n_qubits} is more than aer_simulator can hold in this machine's "
                        f"memory as {what}: at most {limit} qubits")


def check_device_capacity(device, name: str, n_qubits: int, shots: int) -> None:
    if n_qubits > device.num_qubits:
        raise UserError(f"quantum.n_qubits = {n_qubits} is more than {name} has ({device.num_qubits} qubits)")
    try:
        max_shots = device.configuration().max_shots      # IBM devices and their fake twins say it there
    except Exception:
        max_shots = None
    if isinstance(max_shots, int) and shots > max_shots:
        raise UserError(f"{shots} shots per parameter set is more than {name} allows ({max_shots})")


def make_backend(config: Config) -> Backend:
    """The configured backend: Aer (fanned out over Ray circuit workers when the config asks for
    them), a fake device in local testing mode, or an IBM Quantum device."""
    q = config.quantum
    if backend_kind(q.backend) != "aer":
        from orchestrator.quantum.backends.ibm import RuntimeBackend, runtime_options

        return RuntimeBackend(q.backend, runtime_options(config))
    from orchestrator.quantum.backends.aer import AerBackend, AerOptions

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


def aer_on_workers(options: "AerOptions", workers: int, min_rows: int) -> Backend:
    """Aer with `options`, tables of at least `min_rows` rows split over `workers` Ray circuit workers."""
    from orchestrator.quantum.backends.aer import AerBackend
    from workers.circuits import FannedOutBackend

    # one core per worker; the scheduler has split the request into jobs already
    worker_options = dataclasses.replace(options, max_parallel_threads=1, max_parameter_sets_per_job=None)
    return FannedOutBackend(AerBackend(options), functools.partial(AerBackend, worker_options),
                            workers=workers, min_rows=min_rows)


def quantum_spec(config: Config) -> QuantumSpec:
    q = config.quantum
    return QuantumSpec(n_qubits=q.n_qubits, depth=q.depth, encoding=q.encoding, entangler=q.entangler,
                       observables=observable_labels(q.observables, q.n_qubits))


def make_scheduler(config: Config, run_dir: Optional[Path] = None) -> ParameterShiftScheduler:
    """A scheduler on the configured backend; on a remote backend (fake_/ibm_ devices) with a
    `run_dir`, its jobs go through that run dir's job journal and its QPU budget."""
    backend = make_backend(config)
    journal = None
    if run_dir is not None and backend_kind(config.quantum.backend) != "aer":
        from orchestrator.quantum.journal import JobJournal

        journal = JobJournal(run_dir, config.runtime.max_qpu_seconds)
    return ParameterShiftScheduler(build_dressed_circuit(quantum_spec(config)), backend,
                                   optimization_level=config.quantum.optimization_level, job_hook=journal,
                                   gradient=gradient_method(config), eval_shots=config.quantum.eval_shots)


def gradient_method(config: Config) -> GradientMethod:
    """The configured gradient; SPSA's signs follow the training seed, so reruns draw the same."""
    q = config.quantum
    return GradientMethod(q.gradient, spsa_step=q.spsa_step, spsa_samples=q.spsa_samples, seed=config.train.seed)
