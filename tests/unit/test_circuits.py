"""The dressed-circuit template, its torch reference simulation and the transpile cache."""
import numpy as np
import pytest
from qiskit.quantum_info import SparsePauliOp, Statevector

from orchestrator.quantum.backends.aer import AerBackend
from orchestrator.quantum.circuits import QuantumSpec, TranspileCache, build_dressed_circuit
from tests.support.reference_sim import simulate_expectations_numpy, simulate_table

SPECS = [QuantumSpec(), QuantumSpec(3, 2, "rx", "cnot-ring"), QuantumSpec(5, 3, "ry", "cz-ladder"),
         QuantumSpec(1, 2)]


def statevector_expectations(template, inputs, weights):
    """qiskit's own Statevector, one bound circuit per sample: the slow, obvious reference."""
    out = []
    for row in inputs:
        bound = template.circuit.assign_parameters(dict(zip(template.parameters, [*row, *weights])))
        state = Statevector(bound)
        out.append([state.expectation_value(o).real for o in template.observables])
    return np.array(out)


def test_default_template_is_the_dressed_circuit():
    template = build_dressed_circuit(QuantumSpec(n_qubits=4, depth=6))
    ops = dict(template.circuit.count_ops())
    assert ops == {"h": 4, "ry": 4 + 24, "cx": 6 * 3}
    assert [p.name for p in template.parameters[:4]] == ["x[0]", "x[1]", "x[2]", "x[3]"]
    assert len(template.weight_parameters) == 24
    assert template.observables == tuple(SparsePauliOp(label) for label in ("IIIZ", "IIZI", "IZII", "ZIII"))
    # layer 0: CNOT(0,1), CNOT(2,3) on even pairs, then CNOT(1,2) on the odd pair, then RY(theta) x 4
    gates = [(inst.operation.name, tuple(template.circuit.find_bit(q).index for q in inst.qubits))
             for inst in template.circuit.data]
    assert gates[8:15] == [("cx", (0, 1)), ("cx", (2, 3)), ("cx", (1, 2)),
                           ("ry", (0,)), ("ry", (1,)), ("ry", (2,)), ("ry", (3,))]


def test_same_spec_gives_the_same_template_object():
    assert build_dressed_circuit(QuantumSpec(4, 6)) is build_dressed_circuit(QuantumSpec(4, 6))
    assert build_dressed_circuit(QuantumSpec(4, 6)) is not build_dressed_circuit(QuantumSpec(4, 5))


@pytest.mark.parametrize("bad", [dict(n_qubits=0), dict(depth=-1), dict(encoding="amplitude"),
                                 dict(entangler="swap")])
def test_spec_refuses_bad_values(bad):
    with pytest.raises(ValueError):
        QuantumSpec(**bad)


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_torch_reference_matches_qiskit_statevector(spec):
    template = build_dressed_circuit(spec)
    rng = np.random.default_rng(7)
    inputs = rng.uniform(-np.pi, np.pi, (3, spec.n_qubits))
    weights = rng.uniform(-np.pi, np.pi, spec.n_weights)
    np.testing.assert_allclose(simulate_expectations_numpy(spec, inputs, weights),
                               statevector_expectations(template, inputs, weights), atol=1e-12)


def test_reference_accepts_per_row_weights():
    spec = QuantumSpec(3, 2)
    rng = np.random.default_rng(1)
    inputs = rng.uniform(-1, 1, (4, 3))
    weights = rng.uniform(-1, 1, (4, spec.n_weights))
    per_row = simulate_table(spec, np.concatenate([inputs, weights], axis=1))
    one_by_one = np.concatenate([simulate_expectations_numpy(spec, inputs[i:i + 1], weights[i]) for i in range(4)])
    np.testing.assert_allclose(per_row, one_by_one, atol=1e-14)


def test_transpile_cache_transpiles_once_per_template_backend_and_level():
    cache = TranspileCache()
    template = build_dressed_circuit(QuantumSpec(4, 6))
    target = AerBackend().transpile_target
    first = cache.get(template, "aer", target, optimization_level=1)
    assert cache.get(template, "aer", target, optimization_level=1) is first
    assert cache.transpilations == 1
    cache.get(template, "aer", target, optimization_level=0)
    cache.get(template, "another-backend", target, optimization_level=1)
    cache.get(build_dressed_circuit(QuantumSpec(4, 5)), "aer", target, optimization_level=1)
    assert cache.transpilations == 4


def test_device_transpilation_maps_parameters_and_observables_to_the_layout():
    """Transpiled to a 5-qubit device's basis and coupling map, run noiselessly, the circuit
    must still give the template's values: columns and observables follow the layout."""
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    spec = QuantumSpec(3, 2)
    template = build_dressed_circuit(spec)
    compiled = TranspileCache().get(template, "fake_manila", FakeManilaV2(), optimization_level=1)
    assert compiled.circuit.num_qubits == 5
    assert set(compiled.circuit.count_ops()) <= {"rz", "sx", "x", "cx", "barrier"}
    assert len(compiled.physical_qubits) == 3
    for logical, observable in enumerate(compiled.observables):
        assert observable.num_qubits == 5
        assert list(np.flatnonzero(observable.paulis.z[0])) == [compiled.physical_qubits[logical]]
    rng = np.random.default_rng(3)
    inputs, weights = rng.uniform(-1.5, 1.5, (5, 3)), rng.normal(0, 1, spec.n_weights)
    table = np.concatenate([inputs, np.tile(weights, (5, 1))], axis=1)[:, compiled.columns]
    values = AerBackend().run(compiled.circuit, compiled.observables, table)
    np.testing.assert_allclose(values, simulate_expectations_numpy(spec, inputs, weights), atol=1e-10)
