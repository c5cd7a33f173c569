"""The circuit's read-out as a config names it: "z", "zz", "z+zz" or a list of Pauli strings,
made into Pauli strings in qiskit's order (the last letter is qubit 0). Pure: the config checks
them without importing qiskit."""
from __future__ import annotations

OBSERVABLE_SETS = ("z", "zz", "z+zz")
PAULI_LETTERS = frozenset("IXYZ")


def observable_labels(observables: str | list[str], n_qubits: int) -> tuple[str, ...]:
    """The Pauli strings of "z", "zz", "z+zz" or a list of strings, checked against `n_qubits`.
    Raises ValueError naming what is wrong."""
    def z_on(*qubits: int) -> str:
        return "".join("Z" if q in qubits else "I" for q in reversed(range(n_qubits)))

    if isinstance(observables, str):
        if observables not in OBSERVABLE_SETS:
            raise ValueError(f"observables must be one of {', '.join(OBSERVABLE_SETS)} or a list of Pauli "
                             f"strings, not {observables!r}")
        if "zz" in observables and n_qubits < 2:
            raise ValueError(f"observables {observables!r} need at least 2 qubits (zz reads neighbouring pairs)")
        singles = [z_on(q) for q in range(n_qubits)] if observables != "zz" else []
        pairs = [z_on(q, q + 1) for q in range(n_qubits - 1)] if "zz" in observables else []
        return tuple(singles + pairs)
    if not observables:
        raise ValueError("observables: the list is empty; give at least one Pauli string")
    labels = []
    for label in observables:
        if not isinstance(label, str) or len(label) != n_qubits or not set(label.upper()) <= PAULI_LETTERS:
            raise ValueError(f"observables: {label!r} is not a Pauli string of {n_qubits} letters from I, X, Y, Z "
                             f"(one per qubit; the last letter is qubit 0)")
        if set(label.upper()) == {"I"}:
            raise ValueError(f"observables: {label!r} is the identity: its value is always 1")
        labels.append(label.upper())
    if len(set(labels)) < len(labels):
        raise ValueError(f"observables: {sorted({l for l in labels if labels.count(l) > 1})[0]!r} is given twice")
    return tuple(labels)


def measurement_bases(labels: tuple[str, ...]) -> list[str]:
    """The bases a device measures to read `labels`: Pauli strings that agree on every qubit both
    use (qubit-wise commuting) share one, grouped greedily as the estimator does. Each basis costs
    every parameter set its shots once more."""
    bases: list[list[str]] = []
    for label in labels:
        for basis in bases:
            if all(a == "I" or b == "I" or a == b for a, b in zip(basis, label)):
                basis[:] = [b if a == "I" else a for a, b in zip(basis, label)]
                break
        else:
            bases.append(list(label))
    return ["".join(basis) for basis in bases]
