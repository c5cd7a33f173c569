"""Gradient methods for a training step: exact parameter shift (all parameters or the weights only)
and SPSA, checked against the exact statevector; one job per request whichever the method."""
import numpy as np
import pytest

from orchestrator.quantum import shift_rule
from orchestrator.quantum.backends.aer import AerBackend
from orchestrator.quantum.circuits import QuantumSpec, TranspileCache, build_dressed_circuit
from orchestrator.config import QuantumConfig, load_config
from orchestrator.quantum.gradients import (GRADIENT_METHODS, GradientMethod, ParameterShift, Spsa, WeightsOnlyShift,
                                           gradient_method)
from orchestrator.quantum.runner import CircuitRunner
from tests.support.reference_sim import simulate_table

SPEC = QuantumSpec(n_qubits=3, depth=2)


def batch(size=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.4, 1.4, (size, SPEC.n_inputs)), rng.normal(0, 0.6, SPEC.n_weights)


def exact(method: GradientMethod, inputs, weights, request=1):
    table = method.table(inputs, weights, request)
    return method.values_and_jacobian(simulate_table(SPEC, table), SPEC.n_inputs, SPEC.n_weights, request,
                                      batch=len(inputs))


def test_parameter_shift_is_the_shift_rule_to_the_bit():
    inputs, weights = batch()
    method = ParameterShift()
    np.testing.assert_array_equal(method.table(inputs, weights, 7), shift_rule.shifted_parameter_table(inputs, weights))
    assert method.rows_per_sample(SPEC.n_inputs, SPEC.n_weights) == 1 + 2 * SPEC.n_parameters


def test_weights_only_shift_gives_the_weight_columns_exactly_and_zero_input_columns():
    inputs, weights = batch()
    values, full = exact(ParameterShift(), inputs, weights)
    method = WeightsOnlyShift()
    assert method.rows_per_sample(SPEC.n_inputs, SPEC.n_weights) == 1 + 2 * SPEC.n_weights
    weights_values, partial = exact(method, inputs, weights)
    np.testing.assert_allclose(weights_values, values, atol=1e-14)
    np.testing.assert_allclose(partial[:, :, SPEC.n_inputs:], full[:, :, SPEC.n_inputs:], atol=1e-12)
    assert not partial[:, :, :SPEC.n_inputs].any()


def test_spsa_has_a_fixed_row_count_and_measures_the_directional_derivative():
    method = Spsa(step=1e-3, samples=2, seed=3)
    assert method.rows_per_sample(4, 1000) == 5                    # whatever the parameter count
    inputs, weights = batch()
    _, full = exact(ParameterShift(), inputs, weights)
    table = method.table(inputs, weights, request=4)
    expectations = simulate_table(SPEC, table).reshape(len(inputs), 5, SPEC.n_observables)
    signs = method.signs(len(inputs), SPEC.n_parameters, 4)
    slopes = (expectations[:, 1::2] - expectations[:, 2::2]) / 2e-3          # (batch, samples, obs)
    np.testing.assert_allclose(slopes, np.einsum("bop,bsp->bso", full, signs), atol=1e-5)


def test_spsa_is_unbiased_over_many_perturbations():
    inputs, weights = batch(size=2)
    _, full = exact(ParameterShift(), inputs, weights)
    _, estimate = exact(Spsa(step=1e-3, samples=4000, seed=1), inputs, weights)
    assert np.abs(estimate - full).max() < 0.1 * np.abs(full).max()
    assert np.abs(estimate - full).max() > 0                      # an estimate, not the exact Jacobian


def test_spsa_signs_are_a_function_of_seed_and_request_only():
    inputs, weights = batch()
    method = Spsa(seed=5)
    np.testing.assert_array_equal(method.table(inputs, weights, 3), method.table(inputs, weights, 3))
    assert not np.array_equal(method.table(inputs, weights, 3), method.table(inputs, weights, 4))
    assert not np.array_equal(method.table(inputs, weights, 3), Spsa(seed=6).table(inputs, weights, 3))


@pytest.mark.parametrize("name, rows", [("parameter-shift", 5 * 19), ("parameter-shift-weights", 5 * 13),
                                        ("spsa", 5 * 3)])
def test_one_job_per_request_whatever_the_method(name, rows):
    runner = CircuitRunner(build_dressed_circuit(SPEC), AerBackend(), transpile_cache=TranspileCache(),
                                        gradient=gradient_method(load_config(overrides=[f"quantum.gradient={name}"]).quantum, 2))
    inputs, weights = batch()
    result = runner.values_and_jacobian(inputs, weights)
    assert (runner.counters.step.jobs, runner.counters.step.circuits) == (1, rows)
    _, expected = exact(runner.gradient, inputs, weights, request=1)
    np.testing.assert_allclose(result.jacobian, expected, atol=1e-10)


def test_the_config_offers_exactly_the_methods_there_are_and_builds_them_with_their_options():
    import typing

    offered = typing.get_args(QuantumConfig.model_fields["gradient"].annotation)
    assert offered == ("auto", *GRADIENT_METHODS) == ("auto", "parameter-shift", "parameter-shift-weights", "spsa",
                                                      "backprop")
    spsa = gradient_method(load_config(overrides=["quantum.gradient=spsa", "quantum.spsa_step=0.2",
                                                  "quantum.spsa_samples=3"]).quantum, 7)
    assert spsa == Spsa(step=0.2, samples=3, seed=7)
    assert [GRADIENT_METHODS[name].trains_inputs for name in GRADIENT_METHODS] == [True, False, True, True]
