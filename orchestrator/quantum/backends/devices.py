"""Backend names, one lookup for the whole project:

    aer_simulator      qiskit-aer on this machine (aer.py)
    fake_<device>      a fake IBM device in qiskit-ibm-runtime's local testing mode: the device's
                       noise, offline, through the same Session/Batch + Estimator path as hardware
    ibm_<device>       an IBM Quantum device (ibm.py), checked against the account's backends
                       when a run connects
"""
from __future__ import annotations

from orchestrator.core.errors import UserError

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


