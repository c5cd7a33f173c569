"""Backends the runner submits parameter tables to, by family, and the one place a run builds them.

    registry.py    the families (aer, fake, ibm) and what they answer; check_backend, make_backend,
                   make_runner (what a run calls)
    aer.py         qiskit-aer on this machine (exact, shots, a fake device's noise model)
    runtime.py     qiskit-ibm-runtime's Estimator path shared by fake and ibm devices
    fake.py        fake devices in local testing mode (rehearsal.py: cut down to the circuit's qubits)
    ibm.py         IBM Quantum devices and their service
    devices.py     the fake provider's devices by name
    estimator.py   the one-PUB Estimator helpers
"""
from orchestrator.quantum.backends.registry import (FAMILIES, backend_family, check_backend, make_backend,
                                                    make_runner)

__all__ = ["FAMILIES", "backend_family", "check_backend", "make_backend", "make_runner"]
