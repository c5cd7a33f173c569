"""The fake provider's devices by name: fake_<device> backends (fake.py) and the noise models of
aer_simulator (quantum.noise_model) look them up here. (Which family a backend name belongs to is
orchestrator/core/backend_names.py.)
"""
from __future__ import annotations

from typing import Optional

from orchestrator.core.errors import UserError

# helper classes of the fake provider that are not devices
NOT_DEVICES = {"fakeproviderforbackendv2", "fakefractionalbackend", "fakeprovider"}


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




def processor_of(device) -> Optional[str]:
    """The device's processor as IBM names it ("Heron r2", "Nighthawk r1"), from its configuration."""
    try:
        processor = getattr(device.configuration(), "processor_type", None) or {}
    except Exception:
        return None
    family, revision = processor.get("family"), processor.get("revision")
    return None if not family else f"{family} r{revision}" if revision is not None else str(family)
