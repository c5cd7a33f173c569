"""HybridHead and QuantumLayer: one request per step, gradients equal to exact autograd."""
import pytest
import torch

from orchestrator.quantum.backends.aer import AerBackend
from orchestrator.quantum.circuits import QuantumSpec, TranspileCache, build_dressed_circuit
from tests.support.reference_sim import simulate_expectations
from orchestrator.quantum.model import HybridHead, QuantumLayer, quantum_layer
from orchestrator.quantum.runner import CircuitRunner

W1 = QuantumSpec(n_qubits=4, depth=6)


def head(spec=W1, features=384, classes=2, seed=0):
    torch.manual_seed(seed)
    runner = CircuitRunner(build_dressed_circuit(spec), AerBackend(), transpile_cache=TranspileCache())
    return HybridHead(features, classes, runner, weight_init_std=0.5)


def reference_logits(model, features):
    """The same head with the quantum layer replaced by the exact differentiable statevector."""
    expectations = simulate_expectations(model.spec, model.angles(features).double(), model.quantum_weights)
    return model.post(expectations.to(features.dtype))


def gradients(model):
    return {name: p.grad.detach().clone() for name, p in model.named_parameters()}


def test_head_gradients_equal_exact_autograd_of_the_same_circuit():
    model = head().double()
    features = torch.randn(8, 384, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])

    torch.nn.functional.cross_entropy(model(features), labels).backward()
    ours = gradients(model)
    model.zero_grad()
    torch.nn.functional.cross_entropy(reference_logits(model, features), labels).backward()
    exact = gradients(model)
    assert set(ours) == {"quantum_weights", "pre.weight", "pre.bias", "post.weight", "post.bias"}
    for name in ours:
        assert ours[name].abs().max() > 0, name
        torch.testing.assert_close(ours[name], exact[name], atol=1e-10, rtol=0, msg=name)


def test_one_training_step_is_one_job_and_backward_submits_nothing():
    model = head()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    features = torch.randn(16, 384, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 2, (16,), generator=torch.Generator().manual_seed(0))
    counters = model.runner.counters
    optimizer.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(features), labels)
    assert (counters.step.jobs, counters.step.circuits) == (1, 912)
    before = model.quantum_weights.detach().clone()
    loss.backward()
    optimizer.step()
    assert (counters.total.jobs, counters.requests) == (1, 1)
    assert not torch.equal(model.quantum_weights.detach(), before)


def test_no_grad_and_frozen_evaluation_submit_unshifted_rows_only():
    model = head()
    features = torch.randn(16, 384)
    with torch.no_grad():
        logits = model(features)
    assert logits.shape == (16, 2)
    assert (model.runner.counters.step.jobs, model.runner.counters.step.circuits) == (1, 16)
    model.requires_grad_(False)
    model(features)
    assert model.runner.counters.step.circuits == 16
    torch.testing.assert_close(model(features), logits)


def test_quantum_layer_dtype_and_values():
    spec = QuantumSpec(3, 2)
    runner = CircuitRunner(build_dressed_circuit(spec), AerBackend(), transpile_cache=TranspileCache())
    angles = torch.rand(5, 3, dtype=torch.float32, requires_grad=True)
    weights = torch.rand(spec.n_weights, dtype=torch.float64, requires_grad=True)
    out = quantum_layer(angles, weights, runner)
    assert out.dtype == torch.float32 and out.shape == (5, 3)
    exact = simulate_expectations(spec, angles.detach().double(), weights.detach())
    torch.testing.assert_close(out.double(), exact, atol=1e-6, rtol=0)
    out.sum().backward()
    assert angles.grad.dtype == torch.float32 and weights.grad.dtype == torch.float64
    with pytest.raises(RuntimeError, match="without a Jacobian"):
        QuantumLayer.apply(angles, weights, runner, False).sum().backward()


def test_head_learns_a_separable_toy_problem():
    torch.manual_seed(0)
    model = HybridHead(6, 2, CircuitRunner(build_dressed_circuit(QuantumSpec(2, 1)), AerBackend()))
    features = torch.randn(32, 6)
    labels = (features[:, 0] > 0).long()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(features), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert model.runner.counters.total.jobs == 15
    with torch.no_grad():
        accuracy = (model(features).argmax(dim=1) == labels).float().mean().item()
    assert accuracy >= 0.9
