"""How a training step's parameter table is built and read back: the gradient methods.

Pure numpy, no I/O. Each method lays out, per sample, rows of parameters to evaluate (row 0 is
always the unshifted sample) and turns their expectation values back into the forward values
and a Jacobian of shape (batch, n_observables, n_parameters), parameters in template order
(inputs, then weights). One request, one table, one job, whichever the method:

    parameter-shift          exact: 1 + 2 x (inputs + weights) rows per sample (57 on W1)
    parameter-shift-weights  exact for the circuit weights, 1 + 2 x weights rows; the input
                             columns of the Jacobian are zero (the pre-net learns nothing: freeze it)
    spsa                     simultaneous perturbation (Spall 1992): 1 + 2 x `samples` rows per sample
                             whatever the parameter count; every parameter moves at once by
                             +/- c along a random sign vector, and the Jacobian is estimated from
                             the two values. Unbiased to O(c^2); the signs are drawn from
                             (seed, request number), so a resumed run draws the same ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from orchestrator.quantum import shift_rule

METHODS = ("parameter-shift", "parameter-shift-weights", "spsa")


def gradient_method(quantum, seed: int) -> "GradientMethod":
    """The gradient a config's quantum section names; SPSA's signs follow the training `seed`, so
    reruns draw the same."""
    return GradientMethod(quantum.gradient, spsa_step=quantum.spsa_step, spsa_samples=quantum.spsa_samples, seed=seed)


@dataclass(frozen=True)
class GradientMethod:
    name: str = "parameter-shift"
    spsa_step: float = 0.1          # c: how far every parameter moves in an SPSA evaluation
    spsa_samples: int = 1           # perturbations per sample (their estimates are averaged)
    seed: int = 0                   # SPSA's sign vectors: a function of (seed, request)

    def __post_init__(self) -> None:
        if self.name not in METHODS:
            raise ValueError(f"gradient method must be one of {', '.join(METHODS)}, not {self.name!r}")

    @property
    def trains_inputs(self) -> bool:
        """Whether the Jacobian holds the input angles' columns (else the pre-net cannot learn)."""
        return self.name != "parameter-shift-weights"

    def rows_per_sample(self, n_inputs: int, n_weights: int) -> int:
        if self.name == "spsa":
            return 1 + 2 * self.spsa_samples
        differentiated = n_weights if self.name == "parameter-shift-weights" else n_inputs + n_weights
        return shift_rule.rows_per_sample(differentiated)

    def offsets(self, batch: int, n_inputs: int, n_weights: int, request: int) -> np.ndarray:
        """(batch, rows_per_sample, n_parameters): what is added to each sample's unshifted row."""
        n_parameters = n_inputs + n_weights
        if self.name == "spsa":
            signs = self.signs(batch, n_parameters, request)                     # (batch, samples, p)
            offsets = np.zeros((batch, 1 + 2 * self.spsa_samples, n_parameters))
            offsets[:, 1::2] = self.spsa_step * signs
            offsets[:, 2::2] = -self.spsa_step * signs
            return offsets
        shifts = shift_rule.shift_offsets(n_parameters)                           # every parameter
        if self.name == "parameter-shift-weights":
            shifts = np.concatenate([shifts[:1], shifts[1 + 2 * n_inputs:]])        # the weights' pairs only
        return np.broadcast_to(shifts, (batch,) + shifts.shape)

    def signs(self, batch: int, n_parameters: int, request: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, request])
        return rng.choice(np.array([-1.0, 1.0]), size=(batch, self.spsa_samples, n_parameters))

    def table(self, inputs: np.ndarray, weights: np.ndarray, request: int) -> np.ndarray:
        """(batch * rows_per_sample, n_parameters): every row the step evaluates, sample by sample."""
        base = shift_rule.evaluation_table(inputs, weights)
        offsets = self.offsets(len(base), inputs.shape[1], len(weights), request)
        return (base[:, None, :] + offsets).reshape(-1, base.shape[1])

    def values_and_jacobian(self, expectations: np.ndarray, n_inputs: int, n_weights: int, request: int,
                            batch: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
        """Forward values (batch, n_obs) and the Jacobian (batch, n_obs, n_inputs + n_weights)."""
        per_sample = self.rows_per_sample(n_inputs, n_weights)
        expectations = np.asarray(expectations, dtype=np.float64)
        batch = len(expectations) // per_sample if batch is None else batch
        if self.name == "parameter-shift":
            return shift_rule.values_and_jacobian(expectations, batch, n_inputs + n_weights)
        grouped = expectations.reshape(batch, per_sample, expectations.shape[1])
        values = np.ascontiguousarray(grouped[:, 0, :])
        jacobian = np.zeros((batch, expectations.shape[1], n_inputs + n_weights))
        plus, minus = grouped[:, 1::2, :], grouped[:, 2::2, :]
        if self.name == "parameter-shift-weights":
            jacobian[:, :, n_inputs:] = ((plus - minus) / (2.0 * np.sin(shift_rule.SHIFT))).transpose(0, 2, 1)
        else:
            signs = self.signs(batch, n_inputs + n_weights, request)              # (batch, samples, p)
            # (f+ - f-) / 2c along the sign vector; 1 / sign == sign for +/-1
            slopes = (plus - minus) / (2.0 * self.spsa_step)                      # (batch, samples, n_obs)
            jacobian = np.einsum("bso,bsp->bop", slopes, signs) / self.spsa_samples
        return values, np.ascontiguousarray(jacobian)
