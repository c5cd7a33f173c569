"""hybrid-quantum-orchestrator: hybrid classical-to-quantum text classifiers.

The command line is `orchestrate` (orchestrator/cli.py). From Python:

    from orchestrator import HybridTextClassifier     # a scikit-learn estimator (orchestrator/api.py)
    from orchestrator import HybridHead, QuantumLayer  # the torch module and its circuit layer
    from orchestrator import UserError                 # bad input: a ValueError with a one-line message

The names load on first use (module __getattr__), so `import orchestrator` stays fast.
"""
from __future__ import annotations

import importlib

__all__ = ["HybridTextClassifier", "HybridHead", "QuantumLayer", "quantum_layer", "UserError"]

_WHERE = {"HybridTextClassifier": "orchestrator.api", "HybridHead": "orchestrator.quantum.model",
          "QuantumLayer": "orchestrator.quantum.model", "quantum_layer": "orchestrator.quantum.model",
          "UserError": "orchestrator.core.errors"}


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
