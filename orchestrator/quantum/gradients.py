"""The gradient methods, one class each: how a training step's circuit evaluations give the
values and their gradients.

Pure numpy, no I/O, no qiskit. `backprop` needs no table: on an exact simulator the batch's values
come from one differentiable statevector evaluation (statevector.py) and torch's backprop gives the
exact gradients of inputs and weights. Every other method lays out, per sample, rows of parameters
to evaluate (row 0 is always the unshifted sample) and turns their expectation values back into the
forward values and a Jacobian of shape (batch, n_observables, n_parameters), parameters in template
order (inputs, then weights); these are what shots, noise and devices can run. One request, one
table, one job, whichever the method:

    parameter-shift          exact: 1 + 2 x (inputs + weights) rows per sample (57 on W1)
    parameter-shift-weights  exact for the circuit weights, 1 + 2 x weights rows; the input
                             columns of the Jacobian are zero (the pre-net learns nothing: it is frozen)
    spsa                     simultaneous perturbation (Spall 1992): 1 + 2 x `samples` rows per sample
                             whatever the parameter count; every parameter moves at once by
                             +/- c along a random sign vector, and the Jacobian is estimated from
                             the two values. Unbiased to O(c^2); the signs are drawn from
                             (seed, request number), so a resumed run draws the same ones.

    backprop                 exact, 1 row per sample, no table: one statevector evaluation of the
                             batch, differentiated by torch (exact simulators only)

A method answers `rows_per_sample`, `table` and `values_and_jacobian`, and says whether it
`trains_inputs` and whether it is `differentiable` (backprop: the values are a torch graph).
GRADIENT_METHODS holds them by name; the config offers those names, and `auto` (quantum.gradient's
default), which `chosen_gradient` turns into backprop on an exact simulator and parameter shift
anywhere else. Adding a method is one class here and its entry there.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

import numpy as np

import orchestrator.quantum.shift_rule as shift_rule
from orchestrator.core.backend_names import AER_SIMULATOR


class GradientMethod:
    """What a gradient method answers (the classes below)."""

    name: ClassVar[str]
    trains_inputs: ClassVar[bool] = True    # False: the Jacobian has no input columns (the pre-net cannot learn)
    differentiable: ClassVar[bool] = False  # True: no table; the values are a torch graph (backprop)
    needs_exact_simulator: ClassVar[bool] = False

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


@dataclass(frozen=True)
class Backprop(GradientMethod):
    """Exact, on an exact simulator only: the batch through one differentiable statevector
    evaluation, its gradients by torch's backprop (the runner's `differentiable_values`)."""

    name: ClassVar[str] = "backprop"
    differentiable: ClassVar[bool] = True
    needs_exact_simulator: ClassVar[bool] = True

    def rows_per_sample(self, n_inputs: int, n_weights: int) -> int:
        return 1

    def table(self, inputs: np.ndarray, weights: np.ndarray, request: int) -> np.ndarray:
        return shift_rule.evaluation_table(inputs, weights)

    def values_and_jacobian(self, expectations, n_inputs, n_weights, request, batch=None):
        raise TypeError("backprop has no Jacobian table: its values are differentiated by torch "
                        "(CircuitRunner.differentiable_values)")


GRADIENT_METHODS: dict[str, type[GradientMethod]] = {
    method.name: method for method in (ParameterShift, WeightsOnlyShift, Spsa, Backprop)}
AUTO = "auto"
# what shots and noise can run: the gradients of a device run's phases 2 and 3 (hardware.gradient)
TABLE_GRADIENTS = tuple(name for name, method in GRADIENT_METHODS.items() if not method.needs_exact_simulator)


def why_not_exact(quantum) -> Optional[str]:
    """Why the quantum section's backend is not an exact simulator (None: it is: aer_simulator
    without shots, noise or circuit workers, which only a parameter table would keep busy)."""
    if quantum.backend != AER_SIMULATOR:
        return f"{quantum.backend} is not an exact simulator"
    if quantum.shots is not None:
        return "quantum.shots is set"
    if quantum.noise_model is not None:
        return "quantum.noise_model is set"
    if quantum.circuit_workers:
        return "quantum.circuit_workers spread parameter-shift tables"
    return None


def chosen_gradient(quantum) -> tuple[str, str]:
    """The method quantum.gradient stands for, and why: `auto` is backprop on an exact simulator,
    parameter shift anywhere else; a named method is itself."""
    if quantum.gradient != AUTO:
        return quantum.gradient, "named in quantum.gradient"
    reason = why_not_exact(quantum)
    if reason is None:
        return Backprop.name, "aer_simulator without shots or noise is exact"
    return ParameterShift.name, reason


def gradient_method(quantum, seed: int) -> GradientMethod:
    """The gradient a config's quantum section names (quantum.gradient; `auto` chosen by
    `chosen_gradient`), with its options; SPSA's signs follow the training `seed`, so reruns draw
    the same."""
    return GRADIENT_METHODS[chosen_gradient(quantum)[0]].configured(quantum, seed)
