"""The exactness check shared by the candidate scripts.

check_batch() gives the fixed batch: 8 angle rows (numpy seed 0, uniform(-pi/2, pi/2)) and one
weight vector (normal(0, 0.5)). reference() gives <Z_q> of W1's circuit for them: from
qiskit.quantum_info.Statevector where qiskit is installed, else from the small numpy statevector
below (the candidates' venv has no qiskit). error() is the largest absolute difference.
"""
import numpy as np


def check_batch(qubits, depth):
    rng = np.random.default_rng(0)
    angles = rng.uniform(-np.pi / 2, np.pi / 2, (8, qubits))
    weights = rng.normal(0.0, 0.5, qubits * depth)
    return angles, weights


def _qiskit(angles, weights, qubits, depth):
    from qiskit import QuantumCircuit
    from qiskit.quantum_info import SparsePauliOp, Statevector
    out = []
    for x in angles:
        qc = QuantumCircuit(qubits)
        for q in range(qubits):
            qc.h(q); qc.ry(x[q], q)
        for d in range(depth):
            for q in range(0, qubits - 1, 2): qc.cx(q, q + 1)
            for q in range(1, qubits - 1, 2): qc.cx(q, q + 1)
            for q in range(qubits): qc.ry(weights[d * qubits + q], q)
        sv = Statevector(qc)   # little-endian: qubit 0 is the least significant bit
        out.append([sv.expectation_value(SparsePauliOp("I" * (qubits - 1 - q) + "Z" + "I" * q)).real
                    for q in range(qubits)])
    return np.array(out)


def _numpy(angles, weights, qubits, depth):
    H = np.array([[1, 1], [1, -1]]) / np.sqrt(2)
    ry = lambda t: np.array([[np.cos(t / 2), -np.sin(t / 2)], [np.sin(t / 2), np.cos(t / 2)]])
    def one(s, m, q):        # axis q of the (2,)*Q tensor is qubit q
        return np.moveaxis(np.tensordot(m, s, axes=([1], [q])), 0, q)
    def cnot(s, c, t):
        s = s.copy(); idx = [slice(None)] * qubits; idx[c] = 1
        s[tuple(idx)] = np.flip(s[tuple(idx)], axis=t if t < c else t - 1)
        return s
    out = []
    for x in angles:
        s = np.zeros((2,) * qubits); s[(0,) * qubits] = 1.0
        for q in range(qubits):
            s = one(one(s, H, q), ry(x[q]), q)
        for d in range(depth):
            for q in list(range(0, qubits - 1, 2)) + list(range(1, qubits - 1, 2)): s = cnot(s, q, q + 1)
            for q in range(qubits): s = one(s, ry(weights[d * qubits + q]), q)
        p = np.abs(s) ** 2
        out.append([p.take(0, axis=q).sum() - p.take(1, axis=q).sum() for q in range(qubits)])
    return np.array(out)


def reference(angles, weights, qubits, depth):
    try:
        import qiskit  # noqa: F401
    except ImportError:
        return _numpy(angles, weights, qubits, depth), "numpy statevector"
    return _qiskit(angles, weights, qubits, depth), "qiskit.quantum_info.Statevector"


def error(values, qubits, depth):
    """values: the candidate's <Z_q> for check_batch(), shape (8, qubits)."""
    angles, weights = check_batch(qubits, depth)
    ref, _ = reference(angles, weights, qubits, depth)
    return float(np.max(np.abs(np.asarray(values, dtype=np.float64) - ref)))
