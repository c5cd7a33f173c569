"""The names of quantum backends, as a config writes them, without qiskit: which family a name
belongs to. The config checks a name's form with it; the backend registry
(orchestrator/quantum/backends/registry.py) holds what each family does.

    aer_simulator      aer    qiskit-aer on this machine (exact, shots, a fake device's noise)
    fake_<device>      fake   a fake IBM device in qiskit-ibm-runtime's local testing mode, offline
    ibm_<device>       ibm    an IBM Quantum device through QiskitRuntimeService

Whether the device exists is checked when the family checks a config (before anything is written).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

AER_SIMULATOR = "aer_simulator"


@dataclass(frozen=True)
class BackendNames:
    """How a family's backends are named: one exact name, or a prefix and a device."""

    family: str
    exact: Optional[str] = None
    prefix: Optional[str] = None
    shown: str = ""              # how the error message and the docs show the form

    def claims(self, name: str) -> bool:
        if self.exact is not None:
            return name == self.exact
        return name.startswith(self.prefix) and len(name) > len(self.prefix)


# One line per backend family, in the order a message offers them.
NAMES = (
    BackendNames("aer", exact=AER_SIMULATOR, shown=AER_SIMULATOR),
    BackendNames("fake", prefix="fake_", shown="fake_<device> (offline, e.g. fake_fez)"),
    BackendNames("ibm", prefix="ibm_", shown="ibm_<device>"),
)


def names_of(family: str) -> BackendNames:
    """The name rule of `family` ('aer', 'fake', 'ibm' ...)."""
    return next(names for names in NAMES if names.family == family)


def family_of(name: str) -> Optional[str]:
    """'aer', 'fake', 'ibm' ... for a backend name of a known form; None for any other."""
    return next((names.family for names in NAMES if names.claims(name)), None)


def unknown_backend(name: str) -> str:
    """The one line that refuses a name of no known form."""
    forms = [names.shown for names in NAMES]
    return (f"unknown backend {name!r}: use {', '.join(forms[:-1])} or {forms[-1]}; "
            f"`orchestrate backends` lists them")
