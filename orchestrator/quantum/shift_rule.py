"""The two-term parameter-shift rule as pure numpy functions (no I/O, no qiskit).

For a gate exp(-i p G/2) with G a Pauli, an expectation value f obeys exactly

    df/dp = [f(p + s) - f(p - s)] / (2 sin s),      s = pi/2 by default.

A parameter table for a batch holds, per sample, `1 + 2 * n_parameters` rows:

    row 0          the unshifted parameters (inputs of the sample, then the shared weights)
    row 1 + 2k     parameter k shifted by +s
    row 2 + 2k     parameter k shifted by -s

so one evaluation of the whole table yields the forward values AND the full Jacobian with
respect to every input angle and every weight. Rows of sample b start at b * rows_per_sample.
"""
from __future__ import annotations

import numpy as np

SHIFT = np.pi / 2


def rows_per_sample(n_parameters: int) -> int:
    """Parameter sets one sample needs: the unshifted row plus a +/- pair per parameter."""
    return 1 + 2 * n_parameters


def evaluation_table(inputs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Unshifted rows only, (batch, n_inputs + n_weights): what an evaluation-only request runs."""
    inputs = np.asarray(inputs, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    if inputs.ndim != 2 or weights.ndim != 1:
        raise ValueError(f"inputs must be (batch, n_inputs) and weights (n_weights,), "
                         f"got {inputs.shape} and {weights.shape}")
    return np.concatenate([inputs, np.broadcast_to(weights, (inputs.shape[0], weights.shape[0]))], axis=1)


def shift_offsets(n_parameters: int, shift: float = SHIFT) -> np.ndarray:
    """(rows_per_sample, n_parameters): what is added to a sample's unshifted row."""
    offsets = np.zeros((rows_per_sample(n_parameters), n_parameters))
    eye = np.eye(n_parameters)
    offsets[1::2] = shift * eye
    offsets[2::2] = -shift * eye
    return offsets


def shifted_parameter_table(inputs: np.ndarray, weights: np.ndarray, shift: float = SHIFT) -> np.ndarray:
    """(batch * rows_per_sample, n_inputs + n_weights): every row a training step evaluates."""
    base = evaluation_table(inputs, weights)
    batch, n_parameters = base.shape
    offsets = shift_offsets(n_parameters, shift)
    return (base[:, None, :] + offsets[None, :, :]).reshape(batch * offsets.shape[0], n_parameters)


def values_and_jacobian(expectations: np.ndarray, batch_size: int, n_parameters: int,
                        shift: float = SHIFT) -> tuple[np.ndarray, np.ndarray]:
    """Assemble forward values and the Jacobian from a shifted table's expectation values.

    expectations: (batch * rows_per_sample, n_observables), in the row order of
    `shifted_parameter_table`. Returns values (batch, n_observables) and
    jacobian (batch, n_observables, n_parameters), jacobian[b, o, k] = d<O_o>/d p_k.
    """
    expectations = np.asarray(expectations, dtype=np.float64)
    per_sample = rows_per_sample(n_parameters)
    if expectations.ndim != 2 or expectations.shape[0] != batch_size * per_sample:
        raise ValueError(f"expected ({batch_size * per_sample}, n_observables) expectation values "
                         f"for {batch_size} samples x {per_sample} rows, got {expectations.shape}")
    grouped = expectations.reshape(batch_size, per_sample, expectations.shape[1])
    values = grouped[:, 0, :]
    plus, minus = grouped[:, 1::2, :], grouped[:, 2::2, :]          # (batch, n_parameters, n_obs)
    jacobian = ((plus - minus) / (2.0 * np.sin(shift))).transpose(0, 2, 1)
    return np.ascontiguousarray(values), np.ascontiguousarray(jacobian)


def vector_jacobian_product(grad_values: np.ndarray, jacobian: np.ndarray,
                            n_inputs: int) -> tuple[np.ndarray, np.ndarray]:
    """Backpropagate d loss / d values through the Jacobian.

    grad_values (batch, n_observables), jacobian (batch, n_observables, n_inputs + n_weights)
    -> grad_inputs (batch, n_inputs) per sample, grad_weights (n_weights,) summed over the
    batch, since the weights are shared by every sample.
    """
    per_parameter = np.einsum("bo,bop->bp", np.asarray(grad_values, np.float64), jacobian)
    return per_parameter[:, :n_inputs], per_parameter[:, n_inputs:].sum(axis=0)
