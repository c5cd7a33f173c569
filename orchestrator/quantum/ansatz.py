"""The dressed circuit's building blocks, by the names a config gives them: how the inputs enter
(encodings) and how each variational layer entangles the qubits (entanglers).

Pure: a block adds its gates to whatever circuit it is handed (circuits.py hands it a qiskit
QuantumCircuit), so this module imports no qiskit and the config takes its choices from here.
Every input angle sits in one rotation whose generator is a Pauli / 2 (RX, RY), which the
two-term parameter-shift rule (shift_rule.py) needs; a new block must keep that.

Adding a block is one entry in ENCODINGS or ENTANGLERS (the config offers it at once); the
exact reference simulation the tests check against (tests/support/reference_sim.py) needs the
same block too.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Encoding:
    """How input angle x enters qubit q: an optional Hadamard, then one rotation by x."""

    name: str
    hadamard: bool
    rotation: str            # "ry" | "rx": the circuit's method that applies it
    description: str

    def apply(self, circuit, qubit: int, angle) -> None:
        if self.hadamard:
            circuit.h(qubit)
        getattr(circuit, self.rotation)(angle, qubit)


@dataclass(frozen=True)
class Entangler:
    """One layer's entangling block: two-qubit gates on neighbouring pairs (even pairs, then odd),
    and on a ring also (last, first)."""

    name: str
    gate: str                # "cx" | "cz": the circuit's method that applies it
    ring: bool
    description: str

    def pairs(self, n_qubits: int) -> list[tuple[int, int]]:
        """(control, target) pairs of one block, in the order they are applied."""
        n = n_qubits
        pairs = [(q, q + 1) for q in range(0, n - 1, 2)] + [(q, q + 1) for q in range(1, n - 1, 2)]
        if self.ring and n > 2:
            pairs.append((n - 1, 0))
        return pairs

    def apply(self, circuit, n_qubits: int) -> None:
        for control, target in self.pairs(n_qubits):
            getattr(circuit, self.gate)(control, target)


ENCODINGS = {e.name: e for e in (
    Encoding("hadamard-ry", hadamard=True, rotation="ry", description="H then RY(x) (Mari et al.)"),
    Encoding("ry", hadamard=False, rotation="ry", description="RY(x)"),
    Encoding("rx", hadamard=False, rotation="rx", description="RX(x)"),
)}

ENTANGLERS = {e.name: e for e in (
    Entangler("cnot-ladder", gate="cx", ring=False, description="CNOTs on even then odd neighbours"),
    Entangler("cnot-ring", gate="cx", ring=True, description="the same plus (last, first)"),
    Entangler("cz-ladder", gate="cz", ring=False, description="CZs on the ladder"),
)}
