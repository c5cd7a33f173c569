"""How a training step's parameter table is built and read back: the gradient methods, one class each.

Pure numpy, no I/O, no qiskit. Every method lays out, per sample, rows of parameters to evaluate
(row 0 is always the unshifted sample) and turns their expectation values back into the forward
values and a Jacobian of shape (batch, n_observables, n_parameters), parameters in template
order (inputs, then weights). One request, one table, one job, whichever the method:

    parameter-shift          exact: 1 + 2 x (inputs + weights) rows per sample (57 on W1)
    parameter-shift-weights  exact for the circuit weights, 1 + 2 x weights rows; the input
                             columns of the Jacobian are zero (the pre-net learns nothing: it is frozen)
    spsa                     simultaneous perturbation (Spall 1992): 1 + 2 x `samples` rows per sample
                             whatever the parameter count; every parameter moves at once by
                             +/- c along a random sign vector, and the Jacobian is estimated from
                             the two values. Unbiased to O(c^2); the signs are drawn from
                             (seed, request number), so a resumed run draws the same ones.

A method answers `rows_per_sample`, `table` and `values_and_jacobian`, and says whether it
`trains_inputs`. GRADIENT_METHODS holds them by name; the config offers exactly those names
(quantum.gradient, hardware.gradient). Adding a method is one class here and its entry there.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

import numpy as np

import orchestrator.quantum.shift_rule as shift_rule


class GradientMethod:
    """What a gradient method answers (the classes below)."""

    name: ClassVar[str]
    trains_inputs: ClassVar[bool] = True    # False: the Jacobian has no input columns (the pre-net cannot learn)

    @classmethod
    def configured(cls, quantum, seed: int) -> "GradientMethod":
        """The method with the options of the config's quantum section; `seed`: the training seed."""
        return cls()

    def rows_per_sample(self, n_inputs: int, n_weights: int) -> int:
        raise NotImplementedError

    def table(self, inputs: np.ndarray, weights: np.ndarray, request: int) -> np.ndarray:
        """(batch * rows_per_sample, n_parameters): every row the step evaluates, sample by sample."""
        raise NotImplementedError

    def values_and_jacobian(self, expectations: np.ndarray, n_inputs: int, n_weights: int, request: int,
                            batch: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
        """Forward values (batch, n_obs) and the Jacobian (batch, n_obs, n_inputs + n_weights)."""
        raise NotImplementedError


@dataclass(frozen=True)
class ParameterShift(GradientMethod):
    """Exact, for every input angle and weight."""

    name: ClassVar[str] = "parameter-shift"

    def rows_per_sample(self, n_inputs: int, n_weights: int) -> int:
        return shift_rule.rows_per_sample(n_inputs + n_weights)

    def table(self, inputs: np.ndarray, weights: np.ndarray, request: int) -> np.ndarray:
        return shift_rule.shifted_parameter_table(inputs, weights)

    def values_and_jacobian(self, expectations, n_inputs, n_weights, request, batch=None):
        batch = len(expectations) // self.rows_per_sample(n_inputs, n_weights) if batch is None else batch
        return shift_rule.values_and_jacobian(expectations, batch, n_inputs + n_weights)


@dataclass(frozen=True)
class WeightsOnlyShift(GradientMethod):
    """Exact for the circuit weights only: the weights' shift pairs, the input columns zero."""

    name: ClassVar[str] = "parameter-shift-weights"
    trains_inputs: ClassVar[bool] = False

    def rows_per_sample(self, n_inputs: int, n_weights: int) -> int:
        return shift_rule.rows_per_sample(n_weights)

    def table(self, inputs: np.ndarray, weights: np.ndarray, request: int) -> np.ndarray:
        base = shift_rule.evaluation_table(inputs, weights)
        n_inputs = np.shape(inputs)[1]
        offsets = np.zeros((self.rows_per_sample(n_inputs, len(weights)), base.shape[1]))
        offsets[:, n_inputs:] = shift_rule.shift_offsets(len(weights))      # the inputs stay where they are
        return (base[:, None, :] + offsets[None, :, :]).reshape(-1, base.shape[1])

    def values_and_jacobian(self, expectations, n_inputs, n_weights, request, batch=None):
        batch = len(expectations) // self.rows_per_sample(n_inputs, n_weights) if batch is None else batch
        values, of_weights = shift_rule.values_and_jacobian(expectations, batch, n_weights)
        jacobian = np.zeros((batch, values.shape[1], n_inputs + n_weights))
        jacobian[:, :, n_inputs:] = of_weights
        return values, jacobian


@dataclass(frozen=True)
class Spsa(GradientMethod):
    """Simultaneous perturbation: every parameter moves at once along random signs."""

    step: float = 0.1        # c: how far every parameter moves (radians)
    samples: int = 1         # perturbations per sample, their estimates averaged
    seed: int = 0            # the sign vectors are a function of (seed, request)

    name: ClassVar[str] = "spsa"

    @classmethod
    def configured(cls, quantum, seed: int) -> "Spsa":
        return cls(step=quantum.spsa_step, samples=quantum.spsa_samples, seed=seed)

    def rows_per_sample(self, n_inputs: int, n_weights: int) -> int:
        return 1 + 2 * self.samples

    def signs(self, batch: int, n_parameters: int, request: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, request])
        return rng.choice(np.array([-1.0, 1.0]), size=(batch, self.samples, n_parameters))

    def table(self, inputs: np.ndarray, weights: np.ndarray, request: int) -> np.ndarray:
        base = shift_rule.evaluation_table(inputs, weights)
        batch, n_parameters = base.shape
        signs = self.signs(batch, n_parameters, request)                         # (batch, samples, p)
        offsets = np.zeros((batch, 1 + 2 * self.samples, n_parameters))
        offsets[:, 1::2] = self.step * signs
        offsets[:, 2::2] = -self.step * signs
        return (base[:, None, :] + offsets).reshape(-1, n_parameters)

    def values_and_jacobian(self, expectations, n_inputs, n_weights, request, batch=None):
        per_sample = self.rows_per_sample(n_inputs, n_weights)
        expectations = np.asarray(expectations, dtype=np.float64)
        batch = len(expectations) // per_sample if batch is None else batch
        grouped = expectations.reshape(batch, per_sample, expectations.shape[1])
        plus, minus = grouped[:, 1::2, :], grouped[:, 2::2, :]
        signs = self.signs(batch, n_inputs + n_weights, request)                   # (batch, samples, p)
        # (f+ - f-) / 2c along the sign vector; 1 / sign == sign for +/-1
        slopes = (plus - minus) / (2.0 * self.step)                               # (batch, samples, n_obs)
        jacobian = np.einsum("bso,bsp->bop", slopes, signs) / self.samples
        return np.ascontiguousarray(grouped[:, 0, :]), np.ascontiguousarray(jacobian)


GRADIENT_METHODS: dict[str, type[GradientMethod]] = {
    method.name: method for method in (ParameterShift, WeightsOnlyShift, Spsa)}


def gradient_method(quantum, seed: int) -> GradientMethod:
    """The gradient a config's quantum section names (quantum.gradient), with its options; SPSA's
    signs follow the training `seed`, so reruns draw the same."""
    return GRADIENT_METHODS[quantum.gradient].configured(quantum, seed)
