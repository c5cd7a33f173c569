"""An exact, differentiable (torch) simulation of the dressed circuit: the reference that Aer
results, the parameter-shift Jacobian and HybridHead's gradients are tested against.

It follows orchestrator/quantum/circuits.py gate by gate, but shares no code with it, so a
mistake in the template cannot hide in both."""
from __future__ import annotations

import numpy as np
import torch

from orchestrator.quantum.circuits import QuantumSpec, entangling_pairs


def simulate_expectations(spec: QuantumSpec, inputs, weights):
    """Exact values of the template's observables (spec.observables) for a batch, as a
    differentiable torch computation.

    inputs: (batch, n_qubits); weights: (n_weights,) shared by the batch, or (batch, n_weights)
    per row -> (batch, n_observables), float64 torch tensors (numpy arrays are accepted). A plain
    statevector of shape (batch, 2, ..., 2), one axis per qubit: the reference that Aer results,
    the parameter-shift Jacobian and HybridHead's gradients are tested against.
    """
    inputs = torch.as_tensor(inputs, dtype=torch.float64)
    weights = torch.as_tensor(weights, dtype=torch.float64)
    if inputs.ndim != 2 or inputs.shape[1] != spec.n_qubits:
        raise ValueError(f"inputs must have shape (batch, {spec.n_qubits}), not {tuple(inputs.shape)}")
    if weights.shape not in ((spec.n_weights,), (inputs.shape[0], spec.n_weights)):
        raise ValueError(f"weights must have shape ({spec.n_weights},) or (batch, {spec.n_weights}), "
                         f"not {tuple(weights.shape)}")
    n, batch = spec.n_qubits, inputs.shape[0]
    state = torch.zeros((batch,) + (2,) * n, dtype=torch.complex128)
    state[(slice(None),) + (0,) * n] = 1.0

    def axis(q: int) -> int:
        return 1 + q

    def single(state, q, u00, u01, u10, u11):
        a0, a1 = state.select(axis(q), 0), state.select(axis(q), 1)
        return torch.stack([u00 * a0 + u01 * a1, u10 * a0 + u11 * a1], dim=axis(q))

    def per_sample(v):  # (batch,) -> broadcastable against a state with one qubit axis removed
        return v.reshape((-1,) + (1,) * (n - 1)).to(torch.complex128)

    def ry(state, q, angle):
        c, s = torch.cos(angle / 2), torch.sin(angle / 2)
        if angle.ndim:
            c, s = per_sample(c), per_sample(s)
        return single(state, q, c, -s, s, c)

    def rx(state, q, angle):
        c, s = per_sample(torch.cos(angle / 2)), per_sample(torch.sin(angle / 2))
        return single(state, q, c, -1j * s, -1j * s, c)

    def hadamard(state, q):
        h = 2 ** -0.5
        return single(state, q, h, h, h, -h)

    def controlled(state, control, target, phase_only):
        off = state.select(axis(control), 0)
        on = state.select(axis(control), 1)
        t = axis(target) - (1 if target > control else 0)  # the control axis is gone in `on`
        if phase_only:
            on = torch.stack([on.select(t, 0), -on.select(t, 1)], dim=t)
        else:
            on = on.flip(t)
        return torch.stack([off, on], dim=axis(control))

    for q in range(n):
        if spec.encoding == "hadamard-ry":
            state = hadamard(state, q)
        state = rx(state, q, inputs[:, q]) if spec.encoding == "rx" else ry(state, q, inputs[:, q])
    pairs = entangling_pairs(spec)
    for layer in range(spec.depth):
        for control, target in pairs:
            state = controlled(state, control, target, phase_only=spec.entangler == "cz-ladder")
        for q in range(n):
            state = ry(state, q, weights[..., layer * n + q])
    return torch.stack([pauli_expectation(state, label) for label in spec.observables], dim=1)


def pauli_expectation(state, label: str):
    """<psi|P|psi> per batch row of a (batch, 2, ..., 2) state; `label` in qiskit's order (its
    last letter acts on qubit 0, which is axis 1 here)."""
    n = state.ndim - 1
    applied = state
    for q in range(n):
        letter, axis = label[n - 1 - q], 1 + q
        a0, a1 = applied.select(axis, 0), applied.select(axis, 1)
        if letter == "X":
            applied = torch.stack([a1, a0], dim=axis)
        elif letter == "Y":
            applied = torch.stack([-1j * a1, 1j * a0], dim=axis)
        elif letter == "Z":
            applied = torch.stack([a0, -a1], dim=axis)
    return (state.conj() * applied).real.reshape(state.shape[0], -1).sum(dim=1)


def simulate_expectations_numpy(spec: QuantumSpec, inputs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """`simulate_expectations` as float64 numpy in, numpy out."""
    with torch.no_grad():
        return simulate_expectations(spec, np.asarray(inputs, np.float64),
                                     np.asarray(weights, np.float64)).numpy()


def simulate_table(spec: QuantumSpec, parameter_table: np.ndarray) -> np.ndarray:
    """Exact (rows, n_observables) values of a template-ordered parameter table (inputs, weights)."""
    table = np.asarray(parameter_table, np.float64)
    return simulate_expectations_numpy(spec, table[:, :spec.n_inputs], table[:, spec.n_inputs:])
