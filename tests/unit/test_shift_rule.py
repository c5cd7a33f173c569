"""The parameter-shift maths, checked against finite differences and an exact statevector."""
import numpy as np
import pytest
import torch

from orchestrator.quantum import shift_rule
from orchestrator.quantum.circuits import QuantumSpec
from tests.support.reference_sim import simulate_expectations, simulate_table

W1 = QuantumSpec(n_qubits=4, depth=6)


def batch(spec, size, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-np.pi / 2, np.pi / 2, (size, spec.n_qubits)), rng.normal(0, 0.7, spec.n_weights)


def shift_rule_on_exact_statevector(spec, inputs, weights):
    table = shift_rule.shifted_parameter_table(inputs, weights)
    return shift_rule.values_and_jacobian(simulate_table(spec, table), len(inputs), spec.n_parameters)


def autograd_jacobian(spec, inputs, weights):
    """d<Z_o>/d(inputs, weights) per sample by torch autograd through the exact statevector."""
    jac = []
    for row in inputs:
        def f(params):
            return simulate_expectations(spec, params[None, :spec.n_qubits], params[spec.n_qubits:])[0]
        jac.append(torch.autograd.functional.jacobian(f, torch.tensor(np.concatenate([row, weights]))).numpy())
    return np.stack(jac)


def test_table_layout_for_the_reference_workload():
    inputs, weights = batch(W1, 16)
    table = shift_rule.shifted_parameter_table(inputs, weights)
    per_sample = shift_rule.rows_per_sample(W1.n_parameters)
    assert per_sample == 57 and table.shape == (912, 28)
    base = np.concatenate([inputs, np.tile(weights, (16, 1))], axis=1)
    for b in (0, 5, 15):
        rows = table[b * per_sample:(b + 1) * per_sample]
        np.testing.assert_array_equal(rows[0], base[b])
        for k in (0, 3, 4, 27):      # an input angle, the last input, the first and last weight
            delta_plus, delta_minus = rows[1 + 2 * k] - base[b], rows[2 + 2 * k] - base[b]
            np.testing.assert_allclose(delta_plus, np.eye(28)[k] * np.pi / 2, atol=1e-15)
            np.testing.assert_allclose(delta_minus, -np.eye(28)[k] * np.pi / 2, atol=1e-15)


def test_evaluation_table_is_the_unshifted_rows():
    inputs, weights = batch(W1, 5)
    table = shift_rule.shifted_parameter_table(inputs, weights)
    np.testing.assert_array_equal(shift_rule.evaluation_table(inputs, weights), table[::57])


def test_rule_is_exact_on_sinusoids():
    """f(p) = sum_k a_k sin(p_k + c_k): the two-term rule gives a_k cos(p_k + c_k) exactly."""
    rng = np.random.default_rng(2)
    a, c = rng.normal(size=5), rng.normal(size=5)
    inputs, weights = rng.normal(size=(3, 2)), rng.normal(size=3)
    table = shift_rule.shifted_parameter_table(inputs, weights)
    f = (a * np.sin(table + c)).sum(axis=1, keepdims=True)
    values, jacobian = shift_rule.values_and_jacobian(f, 3, 5)
    base = shift_rule.evaluation_table(inputs, weights)
    np.testing.assert_allclose(values[:, 0], (a * np.sin(base + c)).sum(axis=1), atol=1e-14)
    np.testing.assert_allclose(jacobian[:, 0, :], a * np.cos(base + c), atol=1e-14)


@pytest.mark.parametrize("spec", [W1, QuantumSpec(3, 2, "rx", "cnot-ring"), QuantumSpec(5, 2, "ry", "cz-ladder")],
                         ids=str)
def test_jacobian_matches_exact_autograd_statevector(spec):
    inputs, weights = batch(spec, 3, seed=4)
    values, jacobian = shift_rule_on_exact_statevector(spec, inputs, weights)
    assert jacobian.shape == (3, spec.n_qubits, spec.n_parameters)
    np.testing.assert_allclose(values, simulate_table(spec, shift_rule.evaluation_table(inputs, weights)), atol=1e-14)
    np.testing.assert_allclose(jacobian, autograd_jacobian(spec, inputs, weights), atol=1e-12)


def test_jacobian_matches_central_finite_differences():
    spec = W1
    inputs, weights = batch(spec, 2, seed=5)
    _, jacobian = shift_rule_on_exact_statevector(spec, inputs, weights)
    h = 1e-5
    base = shift_rule.evaluation_table(inputs, weights)
    for b in range(2):
        for k in range(spec.n_parameters):
            step = np.eye(spec.n_parameters)[k] * h
            f_plus = simulate_table(spec, (base[b] + step)[None])[0]
            f_minus = simulate_table(spec, (base[b] - step)[None])[0]
            np.testing.assert_allclose(jacobian[b, :, k], (f_plus - f_minus) / (2 * h), atol=1e-8)


def test_vector_jacobian_product_sums_weights_over_the_batch():
    rng = np.random.default_rng(6)
    grad_values, jacobian = rng.normal(size=(4, 3)), rng.normal(size=(4, 3, 2 + 5))
    grad_inputs, grad_weights = shift_rule.vector_jacobian_product(grad_values, jacobian, n_inputs=2)
    for b in range(4):
        np.testing.assert_allclose(grad_inputs[b], grad_values[b] @ jacobian[b, :, :2], atol=1e-14)
    np.testing.assert_allclose(grad_weights, sum(grad_values[b] @ jacobian[b, :, 2:] for b in range(4)), atol=1e-13)


def test_values_and_jacobian_refuses_a_table_of_the_wrong_size():
    with pytest.raises(ValueError, match="912"):
        shift_rule.values_and_jacobian(np.zeros((911, 4)), 16, 28)
