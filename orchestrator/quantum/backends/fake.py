"""Fake IBM devices (`fake_<device>`) in qiskit-ibm-runtime's local testing mode: a device's noise,
offline, through the same Session/Batch + Estimator path as hardware (runtime.py).

What differs from a real device: the device is the fake provider's, there is no service (no job
is found again after a kill: local mode keeps none), jobs rehearse on the device cut down to the
circuit's qubits (rehearsal.py), resilience defaults to level 0 and the simulator is seeded.
"""
from __future__ import annotations

from typing import Optional, Sequence

from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp

from orchestrator.config import Config
from orchestrator.core.backend_names import names_of
from orchestrator.core.errors import UserError
from orchestrator.quantum.backends.devices import (fake_device_class, fake_device_names, processor_of,
                                                   resolve_fake_device)
from orchestrator.quantum.backends.rehearsal import (RehearsalDevice, active_qubits, compact_circuit,
                                                     compact_observable)
from orchestrator.quantum.backends.runtime import DeviceFamily, RuntimeBackend, check_device_capacity


class FakeDeviceBackend(RuntimeBackend):
    """A fake device in local testing mode."""

    def __init__(self, name: str, runtime, shots: int, max_parameter_sets_per_job: Optional[int] = None,
                 seed: Optional[int] = None) -> None:
        if runtime.resilience_level is None:
            # local testing mode at the Estimator's default (1: measurement twirling + TREX) simulates
            # every twirled copy: 35 s a W1 job on fake_fez instead of 5 s (bench/rehearsal.py)
            runtime = runtime.model_copy(update={"resilience_level": 0})
        super().__init__(name, resolve_fake_device(name), runtime, shots, max_parameter_sets_per_job)
        self.seed = seed
        self._execution_device = None     # the rehearsal device the jobs run on
        self._rehearsed = None            # (circuit, (compact circuit, compact observables))

    def execution_device(self):
        return self._execution_device or self.device

    def prepared(self, circuit: QuantumCircuit, observables: Sequence[SparsePauliOp]) -> tuple:
        """`circuit` on its qubits only (rehearsal.py): the device cut down to them, built at the
        first job of the run, and the circuit and observables renumbered."""
        if self._rehearsed is None or self._rehearsed[0] is not circuit:
            qubits = active_qubits(circuit)
            if self._execution_device is None or self._execution_device.qubits != qubits:
                self.close()   # a Session/Batch holds the device it was opened on
                self._execution_device = RehearsalDevice(self.device, qubits)
            compact = (compact_circuit(circuit, qubits), [compact_observable(o, qubits) for o in observables])
            self._rehearsed = (circuit, compact)
        return self._rehearsed[1]

    def configure(self, estimator) -> None:
        if self.seed is not None:
            estimator.options.simulator.seed_simulator = self.seed   # reproducible local runs


class FakeFamily(DeviceFamily):
    """fake_<device>: every fake device of qiskit_ibm_runtime.fake_provider."""

    names = names_of("fake")
    title = "fake devices"

    def check(self, config: Config) -> None:
        q = config.quantum
        check_device_capacity(fake_device_class(q.backend)(), q.backend, q.n_qubits, self.default_shots(config))

    def make(self, config: Config) -> FakeDeviceBackend:
        q = config.quantum
        return FakeDeviceBackend(q.backend, config.runtime, self.default_shots(config),
                                 q.max_parameter_sets_per_job, seed=q.seed)

    def listing(self, config: Config) -> list[dict]:
        rows = []
        for name in fake_device_names():
            device = resolve_fake_device(name)
            rows.append({"name": name, "qubits": device.num_qubits, "processor": processor_of(device),
                         "status": "local (fake device: its noise, offline)", "queue": None})
        return rows

    def fake_twin(self, backend: str) -> Optional[str]:
        return backend


def fake_twin_of(device: str) -> Optional[str]:
    """The fake device named like `device` (fake_fez for fez), if the fake provider has one."""
    try:
        fake_device_class("fake_" + device)
    except UserError:
        return None
    return "fake_" + device


FAKE = FakeFamily()
