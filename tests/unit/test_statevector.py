"""The exact path (quantum.gradient backprop, and auto on exact Aer): the batched torch statevector's
values and backprop gradients against parameter shift on exact Aer, for every encoding x entangler x
observables choice and for Pauli strings; the head's gradients; how `auto` chooses; the counters."""
import itertools
import logging

import numpy as np
import pytest
import torch

from orchestrator.config import load_config
from orchestrator.core.errors import UserError
from orchestrator.quantum import statevector
from orchestrator.quantum.backends import make_runner
from orchestrator.quantum.circuits import ENCODINGS, ENTANGLERS, QuantumSpec
from orchestrator.quantum.gradients import Backprop, ParameterShift, chosen_gradient
from orchestrator.quantum.model import HybridHead
from tests.support.reference_sim import simulate_expectations

PAULI_STRINGS = ["XIYZ", "YYII", "IXXI", "ZYXY"]
CHOICES = list(itertools.product(ENCODINGS, ENTANGLERS, ["z", "zz", "z+zz", "list"]))


def config_of(encoding="hadamard-ry", entangler="cnot-ladder", observables="z", *more, qubits=4, depth=2):
    shown = f"[{', '.join(PAULI_STRINGS if qubits == 4 else [])}]" if observables == "list" else observables
    return load_config(None, [f"quantum.n_qubits={qubits}", f"quantum.depth={depth}", f"quantum.encoding={encoding}",
                              f"quantum.entangler={entangler}", f"quantum.observables={shown}", *more])


def backprop_values_and_jacobian(runner, inputs, weights):
    """Values (batch, obs) and the per-sample Jacobian (batch, obs, inputs + weights) by torch's backprop
    through the runner's statevector, one sample and one observable at a time."""
    values, jacobian = [], []
    for row in inputs:
        angles = torch.tensor(row[None, :], requires_grad=True)
        theta = torch.tensor(weights, requires_grad=True)
        out = runner.differentiable_values(angles, theta)[0]
        rows = [torch.cat([g.reshape(-1) for g in torch.autograd.grad(out[o], (angles, theta), retain_graph=True)])
                for o in range(len(out))]
        values.append(out.detach().numpy())
        jacobian.append(torch.stack(rows).numpy())
    return np.array(values), np.array(jacobian)


def test_there_are_36_choices():
    assert len(CHOICES) == 36


@pytest.mark.parametrize("encoding, entangler, observables", CHOICES)
def test_values_and_gradients_equal_parameter_shift_on_exact_aer(encoding, entangler, observables):
    exact = make_runner(config_of(encoding, entangler, observables))
    shifted = make_runner(config_of(encoding, entangler, observables, "quantum.gradient=parameter-shift"))
    assert (exact.gradient, shifted.gradient) == (Backprop(), ParameterShift())
    rng = np.random.default_rng(len(encoding) * 7 + len(entangler))
    inputs, weights = rng.uniform(-1.5, 1.5, (3, 4)), rng.uniform(-np.pi, np.pi, exact.template.spec.n_weights)
    values, jacobian = backprop_values_and_jacobian(exact, inputs, weights)
    reference = shifted.values_and_jacobian(inputs, weights)          # Aer, 1 + 2 x 12 rows a sample
    np.testing.assert_allclose(values, reference.values, atol=1e-10, rtol=0)
    np.testing.assert_allclose(jacobian, reference.jacobian, atol=1e-10, rtol=0)
    assert np.abs(jacobian).max() > 0.05                              # something to compare


@pytest.mark.parametrize("qubits, entangler", [(7, "cnot-ring"), (9, "cz-ladder"), (9, "cnot-ladder")])
def test_wide_circuits_rotate_in_groups_and_still_equal_the_reference(qubits, entangler):
    """Past FUSED_MAX_QUBITS the layers permute the state and rotate groups of qubits: another code path."""
    assert qubits > statevector.FUSED_MAX_QUBITS
    labels = ["X" * qubits, "Y" * 2 + "Z" * (qubits - 2), "I" * (qubits - 1) + "Z"]
    spec = QuantumSpec(qubits, 2, "rx", entangler, tuple(labels))
    rng = np.random.default_rng(qubits)
    angles = torch.tensor(rng.uniform(-1.5, 1.5, (3, qubits)), requires_grad=True)
    weights = torch.tensor(rng.normal(0, 0.8, spec.n_weights), requires_grad=True)
    ours = statevector.statevector_circuit(spec).expectations(angles, weights)
    reference = simulate_expectations(spec, angles, weights)
    torch.testing.assert_close(ours, reference, atol=1e-12, rtol=0)
    for a, b in zip(torch.autograd.grad((ours ** 2).sum(), (angles, weights)),
                    torch.autograd.grad((reference ** 2).sum(), (angles, weights))):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_the_heads_gradients_equal_parameter_shift_and_one_call_counts_one_job():
    heads = []
    for gradient in ("auto", "parameter-shift"):
        torch.manual_seed(3)
        heads.append(HybridHead(6, 3, make_runner(config_of("ry", "cnot-ring", "z+zz",
                                                            f"quantum.gradient={gradient}"))))
    features, labels = torch.randn(5, 6), torch.tensor([0, 1, 2, 1, 0])
    grads = []
    for head in heads:
        torch.nn.functional.cross_entropy(head(features), labels).backward()
        grads.append({name: p.grad.clone() for name, p in head.named_parameters()})
    for name in grads[1]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-10, rtol=0)
    exact, shifted = (head.runner.counters for head in heads)
    assert (exact.requests, exact.step.jobs, exact.step.circuits) == (1, 1, 5)
    assert (shifted.step.jobs, shifted.step.circuits) == (1, 5 * (1 + 2 * (4 + 8)))


def test_twenty_steps_follow_the_parameter_shift_runs_losses():
    losses = {}
    for gradient in ("auto", "parameter-shift"):
        torch.manual_seed(0)
        head = HybridHead(8, 2, make_runner(config_of("hadamard-ry", "cnot-ladder", "z", f"quantum.gradient={gradient}", depth=3)))
        optimizer = torch.optim.Adam(head.parameters(), lr=0.05)
        g = torch.Generator().manual_seed(1)
        features, labels = torch.randn(20 * 8, 8, generator=g), torch.randint(0, 2, (20 * 8,), generator=g)
        losses[gradient] = []
        for step in range(20):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(head(features[step * 8:(step + 1) * 8]),
                                                     labels[step * 8:(step + 1) * 8])
            loss.backward()
            optimizer.step()
            losses[gradient].append(loss.item())
    np.testing.assert_allclose(losses["auto"], losses["parameter-shift"], atol=1e-6, rtol=0)
    assert losses["auto"][-1] < losses["auto"][0]


@pytest.mark.parametrize("overrides, chosen, why", [
    ([], "backprop", "exact"),
    (["quantum.shots=100"], "parameter-shift", "quantum.shots is set"),
    (["quantum.noise_model=fake_manila"], "parameter-shift", "quantum.noise_model is set"),
    (["quantum.backend=fake_fez"], "parameter-shift", "fake_fez is not an exact simulator"),
    (["quantum.circuit_workers=2"], "parameter-shift", "circuit_workers"),
    (["quantum.shots=100", "quantum.gradient=spsa"], "spsa", "named"),
    (["quantum.gradient=parameter-shift"], "parameter-shift", "named"),
])
def test_auto_is_backprop_on_an_exact_simulator_and_parameter_shift_elsewhere(overrides, chosen, why):
    config = load_config(None, overrides)
    assert config.quantum.gradient == ("auto" if not any("gradient" in o for o in overrides) else chosen)
    name, reason = chosen_gradient(config.quantum)
    assert name == chosen and why in reason


@pytest.mark.parametrize("overrides, problem", [
    (["quantum.shots=100"], "quantum.shots is set"),
    (["quantum.noise_model=fake_manila"], "quantum.noise_model is set"),
    (["quantum.backend=ibm_fez"], "ibm_fez is not an exact simulator"),
])
def test_backprop_asked_for_where_it_cannot_run_is_one_line(overrides, problem):
    with pytest.raises(UserError) as raised:
        load_config(None, ["quantum.gradient=backprop", *overrides])
    message = str(raised.value)
    assert "\n" not in message and "quantum.gradient backprop needs an exact simulator" in message and problem in message


def test_a_device_plans_later_phases_cannot_name_backprop():
    with pytest.raises(UserError, match="hardware.gradient"):
        load_config(None, ["hardware.gradient=backprop"])


def test_the_training_log_says_once_what_auto_chose(caplog):
    """What a run logs (training/loop.setup does this with the runner it trains on)."""
    from orchestrator.training import loop

    caplog.set_level(logging.INFO, logger=loop.__name__)
    config = load_config(None, ["quantum.shots=64"])
    loop.log_gradient_choice(config)
    lines = [r.getMessage() for r in caplog.records if "quantum.gradient" in r.getMessage()]
    assert lines == ["quantum.gradient auto -> parameter-shift (quantum.shots is set)"]
