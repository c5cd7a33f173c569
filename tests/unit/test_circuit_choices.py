"""quantum.encoding, quantum.entangler and quantum.observables: from a config or --set, checked,
in the transpile cache and the estimate, and evaluated exactly (Aer against qiskit's statevector
and the torch reference, the parameter-shift Jacobian against autograd)."""
import itertools
import json

import numpy as np
import pytest
import torch
from qiskit.quantum_info import SparsePauliOp, Statevector

from orchestrator.cli import main
from orchestrator.config import load_config
from orchestrator.core.errors import UserError
from orchestrator.core.paulis import measurement_bases
from orchestrator.quantum.backends import make_runner
from orchestrator.quantum.circuits import ENCODINGS, ENTANGLERS, QuantumSpec, TranspileCache, build_dressed_circuit
from orchestrator.quantum.model import HybridHead
from tests.support.reference_sim import simulate_expectations

PAULI_LIST = ["XIYZ", "ZZII", "IXXI"]
OBSERVABLES = {"z": ["IIIZ", "IIZI", "IZII", "ZIII"], "zz": ["IIZZ", "IZZI", "ZZII"],
               "z+zz": ["IIIZ", "IIZI", "IZII", "ZIII", "IIZZ", "IZZI", "ZZII"], "list": PAULI_LIST}


def config_of(encoding, entangler, observables, *more):
    shown = f"[{', '.join(PAULI_LIST)}]" if observables == "list" else observables
    return load_config(None, ["quantum.n_qubits=4", "quantum.depth=2", f"quantum.encoding={encoding}",
                              f"quantum.entangler={entangler}", f"quantum.observables={shown}", *more])


def statevector_values(circuit, labels, inputs, weights):
    """qiskit's Statevector of each bound circuit, read with each Pauli string: the obvious reference."""
    values = []
    for row in inputs:
        by_name = {f"x[{i}]": v for i, v in enumerate(row)} | {f"theta[{i}]": v for i, v in enumerate(weights)}
        state = Statevector(circuit.assign_parameters({p: by_name[p.name] for p in circuit.parameters}))
        values.append([state.expectation_value(SparsePauliOp(label)).real for label in labels])
    return np.array(values)


@pytest.mark.parametrize("encoding, entangler, observables",
                         list(itertools.product(ENCODINGS, ENTANGLERS, OBSERVABLES)))
def test_every_choice_from_the_config_gives_the_exact_statevector_values(encoding, entangler, observables):
    config = config_of(encoding, entangler, observables)
    runner = make_runner(config)
    spec = runner.template.spec
    assert (spec.encoding, spec.entangler, list(spec.observables)) == (encoding, entangler, OBSERVABLES[observables])
    rng = np.random.default_rng(5)
    inputs, weights = rng.uniform(-np.pi, np.pi, (3, 4)), rng.uniform(-np.pi, np.pi, spec.n_weights)
    values = runner.values(inputs, weights)
    expected = statevector_values(runner.template.circuit, OBSERVABLES[observables], inputs, weights)
    assert values.shape == (3, len(OBSERVABLES[observables]))
    np.testing.assert_allclose(values, expected, atol=1e-10)
    with torch.no_grad():
        np.testing.assert_allclose(simulate_expectations(spec, inputs, weights).numpy(), expected, atol=1e-12)


def test_the_jacobian_of_pauli_observables_equals_autograd_of_the_exact_circuit():
    config = config_of("rx", "cnot-ring", "list", "quantum.gradient=parameter-shift")
    runner = make_runner(config)
    spec = runner.template.spec
    rng = np.random.default_rng(2)
    inputs, weights = rng.uniform(-1.5, 1.5, (2, 4)), rng.uniform(-np.pi, np.pi, spec.n_weights)
    shifted = runner.values_and_jacobian(inputs, weights)
    for row in range(2):
        def circuit(parameters):
            return simulate_expectations(spec, parameters[None, :4], parameters[4:])[0]
        exact = torch.autograd.functional.jacobian(circuit, torch.tensor(np.concatenate([inputs[row], weights])))
        np.testing.assert_allclose(shifted.jacobian[row], exact.numpy(), atol=1e-10)
        assert np.abs(shifted.jacobian[row]).max() > 0.01


def test_the_head_reads_one_input_per_observable():
    head = HybridHead(8, 2, make_runner(config_of("ry", "cz-ladder", "z+zz")))
    assert (head.pre.out_features, head.post.in_features) == (4, 7)


def test_choices_are_part_of_the_transpile_cache_key():
    cache = TranspileCache()
    specs = [QuantumSpec.of(config_of(*choice).quantum) for choice in
             [("hadamard-ry", "cnot-ladder", "z"), ("rx", "cnot-ladder", "z"), ("hadamard-ry", "cnot-ring", "z"),
              ("hadamard-ry", "cnot-ladder", "zz"), ("hadamard-ry", "cnot-ladder", "z")]]
    compiled = [cache.get(build_dressed_circuit(spec), "aer_simulator", None) for spec in specs]
    assert cache.transpilations == 4                       # the last is the first again
    assert compiled[4] is compiled[0] and len({id(c) for c in compiled[:4]}) == 4
    assert [len(c.observables) for c in compiled[:4]] == [4, 4, 4, 3]


@pytest.mark.parametrize("override, match", [
    ("quantum.observables=zx", "must be one of z, zz, z+zz or a list of Pauli strings"),
    ("quantum.observables=[ZII]", "'ZII' is not a Pauli string of 4 letters"),
    ("quantum.observables=[ZIIA]", "'ZIIA' is not a Pauli string of 4 letters"),
    ("quantum.observables=[IIII]", "'IIII' is the identity"),
    ("quantum.observables=[ZIII, ZIII]", "'ZIII' is given twice"),
    ("quantum.observables=[]", "the list is empty"),
    ("quantum.observables=[1, 2]", "must be one of z, zz, z+zz or a list"),
    ("quantum.encoding=amplitude", "quantum.encoding must be one of hadamard-ry, ry, rx"),
    ("quantum.entangler=swap", "quantum.entangler must be one of cnot-ladder, cnot-ring, cz-ladder"),
])
def test_bad_choices_are_refused_with_one_line(override, match):
    with pytest.raises(UserError, match=match.replace("[", r"\[").replace("+", r"\+")) as refused:
        load_config(None, ["quantum.n_qubits=4", override])
    assert len(str(refused.value).splitlines()) == 1


def test_zz_needs_two_qubits():
    with pytest.raises(UserError, match="need at least 2 qubits"):
        load_config(None, ["quantum.n_qubits=1", "quantum.observables=zz"])


def test_measurement_bases_group_qubitwise_commuting_strings():
    assert measurement_bases(("IIIZ", "IIZI", "IIZZ")) == ["IIZZ"]
    assert measurement_bases(("ZIII", "XXII", "IXIX", "YIII")) == ["ZXIX", "XXII", "YIII"]


def test_estimate_shows_the_choices_and_charges_each_measurement_basis(capsys):
    def estimate(observables):
        assert main(["estimate", "--json", "--backend", "fake_fez", "--set",
                     "quantum.n_qubits=4", "--set", f"quantum.observables={observables}"]) == 0
        return json.loads(capsys.readouterr().out)

    one, two = estimate("z"), estimate("[ZIII, XIII]")
    assert (one["measurement_bases"], two["measurement_bases"]) == (1, 2)
    assert two["observables"] == ["ZIII", "XIII"] and two["encoding"] == "hadamard-ry"
    assert one["run"]["circuits"] == two["run"]["circuits"]
    ratio = (two["qpu_seconds"]["run"] - two["run"]["jobs"] * 2) / (one["qpu_seconds"]["run"] - one["run"]["jobs"] * 2)
    assert ratio == pytest.approx(2.0, rel=1e-9)


def test_aer_shots_read_x_and_y_in_their_measurement_bases():
    """As a device does: one rotated circuit per basis, in one job; the counts agree with the exact
    values to within their sampling error, and the same seed gives the same counts."""
    from orchestrator.quantum.backends.aer import AerBackend, plan_readout

    config = config_of("rx", "cnot-ladder", "list")
    runner = make_runner(config)
    compiled = runner.transpiled()
    assert len(plan_readout(compiled.circuit, compiled.observables, shots=100).circuits) == 3
    rng = np.random.default_rng(4)
    table = rng.uniform(-2, 2, (6, runner.n_parameters))[:, compiled.columns]
    exact = AerBackend().run(compiled.circuit, compiled.observables, table)
    shots = 40_000
    sampled = AerBackend().run(compiled.circuit, compiled.observables, table, shots=shots, seed=9)
    assert np.abs(exact).max(axis=0).min() > 0.05                    # no observable is trivially zero
    assert np.all(np.abs(sampled - exact) < 5 * np.sqrt((1 - exact ** 2) / shots) + 1e-12)
    np.testing.assert_array_equal(sampled, AerBackend().run(compiled.circuit, compiled.observables, table,
                                                            shots=shots, seed=9))
