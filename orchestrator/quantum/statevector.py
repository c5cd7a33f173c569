"""The dressed circuit as an exact, batched, differentiable statevector in torch: the values of
every observable for a whole batch in a few dozen tensor operations, and their exact gradients
(inputs and weights) by torch's backprop. What `quantum.gradient: backprop` (and `auto` on exact
Aer) trains with; parameter shift stays for shots, noise and devices (gradients.py).

Pure torch maths, no I/O. It simulates the same `QuantumSpec` that circuits.py builds with qiskit,
block by block from ansatz.py's names, so what trains here is what a device runs; the tests hold
its values and gradients to parameter shift on exact Aer to 1e-10 for every encoding, entangler
and observable set.

Why it is fast (docs/benchmarks.md has the figures and the libraries measured against it):

- The encoding is a product state: n - 1 batched outer products of per-qubit 2-vectors build the
  whole batch's states.
- A variational layer is a fixed entangler E (CNOTs: a permutation of basis states; CZs: signs)
  followed by RY on every qubit, whose tensor product R is built for every layer at once by n - 1
  batched Kronecker products of 2x2 matrices. For a narrow circuit (up to FUSED_MAX_QUBITS) E's
  permutation and signs are folded into R, and a layer is a single matmul of the batch's states.
  Wider, the state is permuted by E and the rotations act on groups of GROUP_QUBITS qubits, each
  one matmul.
- Every gate here is real except RX, so the state is kept as a real part and an optional
  imaginary part (rx encoding only): real matmuls throughout, no complex autograd.
- Readout: Z-type Pauli strings are the probabilities times a +-1 table; X and Y strings pair
  each amplitude with the one whose bits their X part flips.

Basis index k = sum over qubits q of bit_q(k) 2^q (qiskit's order: qubit 0 is the lowest bit).
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from orchestrator.quantum.ansatz import ENCODINGS, ENTANGLERS

# Up to FUSED_MAX_QUBITS, a layer's (RY x ... x RY) E is one 2^n x 2^n matrix, built for every layer
# at once; wider, that matrix would cost 4^n entries a layer, so the state is permuted by E and the
# rotations act on groups of GROUP_QUBITS qubits, one matmul each. Measured on the reference
# machine (2 cores, one torch thread, a W1 training step): fusing up to 6 qubits and groups of 4
# were the fastest of 4/6/8 and 2/3/4/6 at 4, 6, 8 and 12 qubits.
FUSED_MAX_QUBITS = 6
GROUP_QUBITS = 4


def bits(n_qubits: int) -> np.ndarray:
    """(n_qubits, 2^n) bit q of every basis index."""
    return (np.arange(2 ** n_qubits)[None, :] >> np.arange(n_qubits)[:, None]) & 1


def entangler_map(entangler: str, n_qubits: int) -> tuple[np.ndarray, np.ndarray]:
    """One entangling block as (f, signs): the block sends basis state k to signs[k] * |f(k)>."""
    block = ENTANGLERS[entangler]
    index = np.arange(2 ** n_qubits)
    signs = np.ones(2 ** n_qubits)
    for control, target in block.pairs(n_qubits):
        on = (index >> control) & 1
        if block.gate == "cx":
            index = index ^ (on << target)
        elif block.gate == "cz":
            signs = signs * np.where(on & ((index >> target) & 1), -1.0, 1.0)
        else:
            raise ValueError(f"entangler {entangler!r}: no statevector rule for gate {block.gate!r}")
    return index, signs


class PauliReadout:
    """<P> for Pauli strings P (qiskit labels: the last letter acts on qubit 0) on a batch of
    states given as real and (optional) imaginary parts, (batch, 2^n) each.

    P|k> = i^{#Y} (-1)^{z.k} |k xor x> with x the X/Y positions and z the Z/Y positions, so
    <P> = Re(i^{#Y} sum_j s_j conj(psi_j) psi_{j xor x}),  s_j = (-1)^{z.(j xor x)}.
    """

    def __init__(self, labels: tuple[str, ...], n_qubits: int, device: torch.device) -> None:
        index = np.arange(2 ** n_qubits)
        self.diagonal = all(set(label) <= {"I", "Z"} for label in labels)
        flips, signs, phases = [], [], []
        for label in labels:
            letters = label[::-1]                                # letters[q] acts on qubit q
            x = sum(1 << q for q, p in enumerate(letters) if p in "XY")
            z = np.array([p in "ZY" for p in letters], dtype=np.int64)
            flipped = index ^ x
            flips.append(flipped)
            signs.append(1.0 - 2.0 * ((z @ ((flipped[None, :] >> np.arange(n_qubits)[:, None]) & 1)) & 1))
            phases.append(sum(p == "Y" for p in letters) % 4)
        self.flips = torch.as_tensor(np.array(flips), device=device)                     # (n_obs, 2^n)
        self.signs = torch.as_tensor(np.array(signs), dtype=torch.float64, device=device)  # (n_obs, 2^n)
        # i^{#Y} w has real part (re, im) . (cos, -sin)(#Y pi / 2) of w = re + i im
        self.real_weight = torch.tensor([[1.0, 0.0, -1.0, 0.0][p] for p in phases], dtype=torch.float64, device=device)
        self.imag_weight = torch.tensor([[0.0, -1.0, 0.0, 1.0][p] for p in phases], dtype=torch.float64, device=device)

    def __call__(self, real: torch.Tensor, imag: torch.Tensor | None) -> torch.Tensor:
        if self.diagonal:
            probabilities = real * real if imag is None else real * real + imag * imag
            return probabilities @ self.signs.T
        paired_real = real[:, self.flips]                                          # (batch, n_obs, 2^n)
        overlap_real = (self.signs * real[:, None, :] * paired_real).sum(-1)
        if imag is None:
            return overlap_real * self.real_weight
        paired_imag = imag[:, self.flips]
        overlap_real = overlap_real + (self.signs * imag[:, None, :] * paired_imag).sum(-1)
        overlap_imag = (self.signs * (real[:, None, :] * paired_imag - imag[:, None, :] * paired_real)).sum(-1)
        return overlap_real * self.real_weight + overlap_imag * self.imag_weight


class Permutation(torch.autograd.Function):
    """x[:, index] for a permutation `index` of the last axis, whose gradient is the inverse
    permutation's gather (autograd's own backward of an index would scatter-add)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, index: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
        ctx.inverse = inverse
        return x[..., index]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad[..., ctx.inverse], None, None


def kron_vectors(factors: torch.Tensor) -> torch.Tensor:
    """(batch, n, 2) -> (batch, 2^n): the tensor product of n 2-vectors, vector q on bit q."""
    product = factors[:, 0]
    for q in range(1, factors.shape[1]):
        product = (factors[:, q, :, None] * product[:, None, :]).reshape(factors.shape[0], -1)
    return product


def kron_matrices(factors: torch.Tensor) -> torch.Tensor:
    """(layers, k, 2, 2) -> (layers, 2^k, 2^k): the tensor product of k 2x2 matrices per layer,
    matrix q acting on bit q."""
    layers = factors.shape[0]
    product = factors[:, 0]
    for q in range(1, factors.shape[1]):
        size = product.shape[-1] * 2
        product = (factors[:, q, :, None, :, None] * product[:, None, :, None, :]).reshape(layers, size, size)
    return product


class StatevectorCircuit:
    """The exact values of a spec's observables for a batch: `expectations(angles, weights)`,
    (batch, n_qubits) and (n_weights,) float64 tensors in, (batch, n_observables) out, differentiable
    in both, on `device` (the tensors' device). Built once per spec and device (`statevector_circuit`):
    the constructor precomputes index tables."""

    def __init__(self, spec, device: torch.device = torch.device("cpu")) -> None:
        n = spec.n_qubits
        on = functools.partial(torch.as_tensor, device=device)
        self.spec = spec
        self.encoding = ENCODINGS[spec.encoding]
        if self.encoding.rotation not in ("ry", "rx") or (self.encoding.hadamard and self.encoding.rotation != "ry"):
            raise ValueError(f"encoding {spec.encoding!r}: no statevector rule for it")
        if self.encoding.rotation == "rx":   # amplitude of k picks up (-i)^popcount(k) from the -i sin terms
            phase = (-1j) ** bits(n).sum(axis=0)
            self.phase_real = on(phase.real.round())
            self.phase_imag = on(phase.imag.round())
        image, signs = entangler_map(spec.entangler, n)
        self.fused = n <= FUSED_MAX_QUBITS
        # W = (R E)^T has W[a, b] = R[b, f(a)] signs[a]: E's permutation picks R's columns
        self.columns = on(image)
        self.signs = None if (signs == 1).all() else on(signs)
        inverse = np.argsort(image)
        self.gather, self.scatter = on(inverse), on(image)          # new[j] = old[f^-1(j)]
        self.groups = [(start, min(start + GROUP_QUBITS, n)) for start in range(0, n, GROUP_QUBITS)]
        self.readout = PauliReadout(spec.observables, n, device)

    def encoded(self, angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The product state after the encoding block: real and imaginary parts (batch, 2^n)."""
        half = angles / 2
        cos, sin = torch.cos(half), torch.sin(half)
        if self.encoding.hadamard:            # RY(x) H|0> = (cos - sin, cos + sin) / sqrt 2
            amplitudes = torch.stack([cos - sin, cos + sin], dim=-1) * (2 ** -0.5)
        else:                                 # RY(x)|0> = (cos, sin); RX(x)|0> = (cos, -i sin)
            amplitudes = torch.stack([cos, sin], dim=-1)
        magnitude = kron_vectors(amplitudes)
        if self.encoding.rotation != "rx":
            return magnitude, None
        return magnitude * self.phase_real, magnitude * self.phase_imag

    def rotations(self, weights: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """(depth, 2^k, 2^k): RY(theta) on qubits start..stop-1 of every layer, as one matrix a layer."""
        half = weights.reshape(self.spec.depth, self.spec.n_qubits)[:, start:stop] / 2
        cos, sin = torch.cos(half), torch.sin(half)
        factors = torch.stack([cos, -sin, sin, cos], dim=-1).reshape(half.shape + (2, 2))
        return kron_matrices(factors)

    def expectations(self, angles: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        real, imag = self.encoded(angles)
        if self.spec.depth:
            real, imag = (self.fused_layers if self.fused else self.grouped_layers)(weights, real, imag)
        return self.readout(real, imag)

    def fused_layers(self, weights, real, imag):
        layers = self.rotations(weights)[:, :, self.columns].transpose(1, 2)       # (depth, 2^n, 2^n)
        if self.signs is not None:
            layers = layers * self.signs[:, None]
        for layer in layers:
            real = real @ layer
            imag = None if imag is None else imag @ layer
        return real, imag

    def grouped_layers(self, weights, real, imag):
        n, batch = self.spec.n_qubits, real.shape[0]
        parts = [real] if imag is None else [real, imag]
        rotations = [self.rotations(weights, start, stop) for start, stop in self.groups]
        for depth in range(self.spec.depth):
            parts = [Permutation.apply(p, self.gather, self.scatter) for p in parts]
            if self.signs is not None:
                parts = [p * self.signs for p in parts]
            for (start, stop), rotation in zip(self.groups, rotations):
                # the group's qubits are bits start..stop-1: a (high, 2^k, low) view of each state
                view = (batch, 2 ** (n - stop), 2 ** (stop - start), 2 ** start)
                parts = [(rotation[depth] @ p.reshape(view)).reshape(batch, -1) for p in parts]
        return parts[0], (parts[1] if len(parts) > 1 else None)


@functools.lru_cache(maxsize=None)
def statevector_circuit(spec, device: torch.device = torch.device("cpu")) -> StatevectorCircuit:
    """The simulation of `spec` (a QuantumSpec) on `device`; the same pair returns the same object."""
    return StatevectorCircuit(spec, device)
