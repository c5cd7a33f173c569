"""The dressed variational circuit: its qiskit template, its observables, a transpile cache.
(tests/support/reference_sim.py holds an exact differentiable torch simulation of the same circuit,
the reference that Aer, the shift rule and the head's gradients are tested against.)

Default template (Mari et al., Quantum 4, 340, 2020), for n qubits and `depth` layers:

    H and RY(x_i) on every qubit                       (encoding, inputs x_0..x_{n-1})
    depth times: CNOT on even pairs (0,1),(2,3),...
                 CNOT on odd pairs  (1,2),(3,4),...
                 RY(theta) on every qubit              (weights theta_0..theta_{n*depth-1})
    read out <Z_i> on every qubit                      (observables)

`encoding` (hadamard-ry | ry | rx) and `entangler` (cnot-ladder | cnot-ring | cz-ladder) swap the
first two parts (their blocks: ansatz.py); `observables` the read-out: "z" (Z_i on every qubit, the default), "zz" (Z_i Z_i+1
on neighbouring pairs), "z+zz" (both), or a list of Pauli strings in qiskit's order (the last
letter is qubit 0), e.g. ["ZIII", "XXII"]. The head's last layer has one input per observable.

Every parameter sits in exactly one rotation gate whose generator is a Pauli/2, which is what
the two-term parameter-shift rule in `shift_rule.py` needs. The other encodings and entanglers
offered here keep that property.

Parameter order used everywhere in the project (the columns of a parameter table and of a
Jacobian): inputs first, then weights, i.e. `CircuitTemplate.parameters`.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Hashable

import numpy as np
from qiskit import QuantumCircuit, transpile
from qiskit.circuit import Parameter, ParameterVector
from qiskit.quantum_info import SparsePauliOp
from qiskit.transpiler import Target

from orchestrator.core.paulis import observable_labels
from orchestrator.quantum.ansatz import ENCODINGS, ENTANGLERS


@dataclass(frozen=True)
class QuantumSpec:
    """What circuit to build. Frozen and hashable: it is part of the transpile cache key."""

    n_qubits: int = 4
    depth: int = 6
    encoding: str = "hadamard-ry"    # hadamard-ry (default, Mari et al.) | ry | rx
    entangler: str = "cnot-ladder"   # cnot-ladder (default) | cnot-ring | cz-ladder
    # Pauli strings (qiskit order); None: Z on every qubit. `observable_labels` makes them from a config.
    observables: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.n_qubits < 1:
            raise ValueError(f"n_qubits must be at least 1, not {self.n_qubits}")
        if self.depth < 0:
            raise ValueError(f"depth must be at least 0, not {self.depth}")
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}, not {self.encoding!r}")
        if self.entangler not in ENTANGLERS:
            raise ValueError(f"entangler must be one of {', '.join(ENTANGLERS)}, not {self.entangler!r}")
        if self.observables is None:
            object.__setattr__(self, "observables", observable_labels("z", self.n_qubits))
        else:
            object.__setattr__(self, "observables", observable_labels(list(self.observables), self.n_qubits))

    @classmethod
    def of(cls, quantum) -> "QuantumSpec":
        """The circuit a config's quantum section describes."""
        return cls(n_qubits=quantum.n_qubits, depth=quantum.depth, encoding=quantum.encoding,
                   entangler=quantum.entangler, observables=observable_labels(quantum.observables, quantum.n_qubits))

    @property
    def n_inputs(self) -> int:
        return self.n_qubits

    @property
    def n_weights(self) -> int:
        return self.n_qubits * self.depth

    @property
    def n_parameters(self) -> int:
        return self.n_inputs + self.n_weights

    @property
    def n_observables(self) -> int:
        return len(self.observables)


def entangling_pairs(spec: QuantumSpec) -> list[tuple[int, int]]:
    """(control, target) pairs of one entangling block, in the order they are applied."""
    return ENTANGLERS[spec.entangler].pairs(spec.n_qubits)


@dataclass(frozen=True, eq=False)
class CircuitTemplate:
    """A parametrised circuit plus the observables read from it.

    `eq=False`: templates compare by identity; the cache identity is `key`.
    """

    spec: QuantumSpec
    circuit: QuantumCircuit
    input_parameters: tuple[Parameter, ...]
    weight_parameters: tuple[Parameter, ...]
    observables: tuple[SparsePauliOp, ...]

    @property
    def parameters(self) -> tuple[Parameter, ...]:
        """Column order of parameter tables and Jacobians: inputs, then weights."""
        return self.input_parameters + self.weight_parameters

    @property
    def key(self) -> Hashable:
        return ("dressed", self.spec)


def pauli_observables(labels: tuple[str, ...]) -> tuple[SparsePauliOp, ...]:
    """The operators of Pauli strings (qiskit labels are little-endian: qubit 0 is the last letter)."""
    return tuple(SparsePauliOp(label) for label in labels)


@functools.lru_cache(maxsize=None)
def build_dressed_circuit(spec: QuantumSpec = QuantumSpec()) -> CircuitTemplate:
    """The dressed-circuit template for `spec`; the same spec returns the same object."""
    n = spec.n_qubits
    inputs = ParameterVector("x", n)
    weights = ParameterVector("theta", spec.n_weights)
    circuit = QuantumCircuit(n, name=f"dressed_q{n}_d{spec.depth}")
    encoding, entangler = ENCODINGS[spec.encoding], ENTANGLERS[spec.entangler]
    for q in range(n):
        encoding.apply(circuit, q, inputs[q])
    for layer in range(spec.depth):
        entangler.apply(circuit, n)
        for q in range(n):
            circuit.ry(weights[layer * n + q], q)
    return CircuitTemplate(spec=spec, circuit=circuit, input_parameters=tuple(inputs),
                           weight_parameters=tuple(weights), observables=pauli_observables(spec.observables))


# --- transpile cache ---------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class TranspiledTemplate:
    """A template transpiled for one backend, with everything needed to submit it there.

    `columns[j]` is the template column (see `CircuitTemplate.parameters`) that feeds
    `circuit.parameters[j]`, so `table[:, columns]` reorders a template-ordered parameter table
    into the order qiskit primitives and Aer expect (the circuit's own, sorted by name).
    """

    template: CircuitTemplate
    circuit: QuantumCircuit
    observables: tuple[SparsePauliOp, ...]   # mapped onto the physical qubits of `circuit`
    physical_qubits: tuple[int, ...]         # physical qubit of logical qubit 0, 1, ...
    columns: np.ndarray


@dataclass
class TranspileCache:
    """Transpiles a template once per (template, backend name, optimisation level).

    `transpilations` counts real transpiler runs, so a test can prove that a second training
    step reuses the first step's circuit.
    """

    transpilations: int = 0
    _entries: dict = field(default_factory=dict, repr=False)

    def get(self, template: CircuitTemplate, backend_name: str, target: Any,
            optimization_level: int = 1) -> TranspiledTemplate:
        key = (template.key, backend_name, optimization_level)
        entry = self._entries.get(key)
        if entry is None:
            entry = transpile_template(template, target, optimization_level)
            self._entries[key] = entry
            self.transpilations += 1
        return entry

    def clear(self) -> None:
        self._entries.clear()


DEFAULT_TRANSPILE_CACHE = TranspileCache()


def transpile_template(template: CircuitTemplate, target: Any,
                       optimization_level: int = 1) -> TranspiledTemplate:
    """Transpile for `target` (a qiskit BackendV2 or Target; None: keep the circuit as is)."""
    if target is None:
        circuit = template.circuit
    else:
        # a fixed transpiler seed: the same template always lands on the same physical qubits
        where = {"target": target} if isinstance(target, Target) else {"backend": target}
        circuit = transpile(template.circuit, **where, optimization_level=optimization_level,
                            seed_transpiler=1234)
    layout = circuit.layout
    if layout is None:
        physical = tuple(range(template.spec.n_qubits))
        observables = template.observables
    else:
        physical = tuple(layout.final_index_layout())
        observables = tuple(o.apply_layout(layout) for o in template.observables)
    position = {p: i for i, p in enumerate(template.parameters)}
    unknown = [p.name for p in circuit.parameters if p not in position]
    if unknown:
        raise ValueError(f"transpiled circuit has parameters the template lacks: {unknown}")
    columns = np.array([position[p] for p in circuit.parameters], dtype=np.intp)
    return TranspiledTemplate(template=template, circuit=circuit, observables=observables,
                              physical_qubits=physical, columns=columns)
