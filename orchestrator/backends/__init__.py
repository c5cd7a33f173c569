"""Backends that the scheduler submits parameter tables to (see orchestrator.scheduler.Backend).

Backend names, one lookup for the whole project:

    aer_simulator      qiskit-aer on this machine (orchestrator/backends/aer.py)
    fake_<device>      a fake IBM device in qiskit-ibm-runtime's local testing mode: the device's
                       noise, offline, through the same Session/Batch + Estimator path as hardware
    ibm_<device>       an IBM Quantum device (orchestrator/backends/ibm.py), checked against the
                       account's backends when a run connects

Helpers shared by every EstimatorV2-based backend live here too: a whole parameter table is ONE
PUB, its observables an (n_observables, 1) array broadcast against the (rows, n_parameters)
parameter values, so one job returns every <O_o> for every row.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp

from orchestrator.errors import UserError

AER_SIMULATOR = "aer_simulator"
# helper classes of the fake provider that are not devices
NOT_DEVICES = {"fakeproviderforbackendv2", "fakefractionalbackend", "fakeprovider"}


def backend_kind(name: str) -> str:
    """'aer', 'fake' or 'ibm' (see the module doc); an unknown name is a UserError."""
    if name == AER_SIMULATOR:
        return "aer"
    if name.startswith("fake_"):
        fake_device_class(name)
        return "fake"
    if name.startswith("ibm_") and len(name) > 4:
        return "ibm"
    raise UserError(f"unknown backend {name!r}: use {AER_SIMULATOR}, fake_<device> (offline, e.g. fake_fez) "
                    f"or ibm_<device>; `orchestrate backends` lists them")


def check_backend_name(name: str) -> None:
    backend_kind(name)


def fake_device_names() -> list[str]:
    """Every fake device of qiskit_ibm_runtime.fake_provider as a backend name: fake_fez, ..."""
    from qiskit_ibm_runtime import fake_provider

    return sorted({"fake_" + n.lower().removeprefix("fake").removesuffix("v2") for n in dir(fake_provider)
                   if n.startswith("Fake") and n.lower() not in NOT_DEVICES})


def fake_device_class(name: str) -> type:
    """The fake device class for "fake_manila", "manila" or "FakeManilaV2"."""
    from qiskit_ibm_runtime import fake_provider

    short = name.lower().removeprefix("fake_").removeprefix("fake").removesuffix("v2")
    classes = {n.lower(): n for n in dir(fake_provider) if n.startswith("Fake") and n.lower() not in NOT_DEVICES}
    for candidate in (f"fake{short}v2", f"fake{short}"):
        if candidate in classes:
            return getattr(fake_provider, classes[candidate])
    raise UserError(f"unknown fake device {name!r}; known: {', '.join(fake_device_names())}")


def resolve_fake_device(name: str):
    """A fresh instance of the fake device `name` (see fake_device_class)."""
    return fake_device_class(name)()


def estimator_pub(circuit: QuantumCircuit, observables: Sequence[SparsePauliOp],
                  parameter_table: np.ndarray) -> tuple:
    """(circuit, observables (n_obs, 1), parameter values (rows, n_params)): evs come back (n_obs, rows)."""
    return circuit, [[observable] for observable in observables], np.asarray(parameter_table, dtype=np.float64)


def expectations_from_pub_result(pub_result) -> np.ndarray:
    """An EstimatorV2 PubResult of `estimator_pub` -> (rows, n_observables)."""
    return np.ascontiguousarray(np.asarray(pub_result.data.evs, dtype=np.float64).T)
