"""Fake devices rehearse on the qubits the circuit uses (orchestrator/quantum/backends/rehearsal.py):
the noise on those qubits is exactly the fake device's, and it is built once per run."""
import numpy as np
import pytest
from qiskit import ClassicalRegister
from qiskit_aer import AerSimulator
from qiskit.quantum_info import SparsePauliOp

from orchestrator.quantum.backends.devices import resolve_fake_device
from orchestrator.config import load_config
from orchestrator.quantum.backends import make_backend
from orchestrator.quantum.backends.rehearsal import (RehearsalDevice, active_qubits, compact_circuit,
                                                     compact_observable, reduced_noise_model)
from orchestrator.quantum.circuits import QuantumSpec, TranspileCache, build_dressed_circuit
from orchestrator.quantum.runner import CircuitRunner
from orchestrator.quantum.shift_rule import shifted_parameter_table

SPEC = QuantumSpec(n_qubits=3, depth=2)


@pytest.fixture(scope="module")
def manila():
    device = resolve_fake_device("fake_manila")
    compiled = TranspileCache().get(build_dressed_circuit(SPEC), "fake_manila", device, 1)
    return device, compiled


def exact_noisy_probabilities(circuit, noise, qubits):
    """Exact outcome probabilities of `qubits` under `noise` (density matrix, no shots)."""
    prepared = circuit.copy()
    prepared.save_probabilities(list(qubits))
    result = AerSimulator(method="density_matrix", noise_model=noise).run(prepared).result()
    return np.asarray(result.data(0)["probabilities"])


def sampled_on_whole_device(device, compiled, table, shots):
    """<Z> of each logical qubit per row, from counts of the transpiled circuit on Aer with the
    whole fake device's noise model: what local testing mode models, by another path."""
    simulator = AerSimulator.from_backend(device, seed_simulator=11)
    circuits = []
    for row in table[:, compiled.columns]:
        bound = compiled.circuit.assign_parameters(row)
        measured = bound.copy()
        measured.add_register(ClassicalRegister(len(compiled.physical_qubits), "readout"))
        for bit, qubit in enumerate(compiled.physical_qubits):
            measured.measure(qubit, measured.clbits[bit])
        circuits.append(measured)
    counts = simulator.run(circuits, shots=shots).result().get_counts()
    values = np.zeros((len(circuits), len(compiled.physical_qubits)))
    for row, row_counts in enumerate(counts):
        for key, count in row_counts.items():
            bits = key.replace(" ", "")[::-1]          # qiskit prints clbit 0 last
            values[row] += count * np.array([1 - 2 * int(b) for b in bits[:len(compiled.physical_qubits)]])
    return values / shots


def test_the_reduced_device_has_the_same_noise_on_the_circuits_qubits(manila):
    device, compiled = manila
    rng = np.random.default_rng(0)
    bound = compiled.circuit.assign_parameters(rng.uniform(-1.5, 1.5, len(compiled.circuit.parameters)))
    qubits = active_qubits(bound)
    assert len(qubits) < device.num_qubits
    full_noise = device._get_noise_model_from_backend_v2()
    reduced = reduced_noise_model(full_noise, qubits)
    on_device = exact_noisy_probabilities(bound, full_noise, qubits)
    rehearsed = exact_noisy_probabilities(compact_circuit(bound, qubits), reduced, range(len(qubits)))
    np.testing.assert_allclose(rehearsed, on_device, atol=1e-12)
    for i, q in enumerate(qubits):     # readout errors (they act on counts only) carried over as they are
        assert reduced._local_readout_errors[(i,)] == full_noise._local_readout_errors[(q,)]
    noiseless = exact_noisy_probabilities(bound, None, qubits)
    assert np.abs(on_device - noiseless).max() > 1e-4, "the device's noise shows (the check can fail)"


def test_the_reduced_target_keeps_the_circuits_instructions(manila):
    device, compiled = manila
    qubits = active_qubits(compiled.circuit)
    rehearsal = RehearsalDevice(device, qubits)
    assert rehearsal.target.num_qubits == len(qubits)
    for instruction in compact_circuit(compiled.circuit, qubits).data:
        positions = tuple(rehearsal_index for rehearsal_index in
                          (compact_circuit(compiled.circuit, qubits).find_bit(q).index for q in instruction.qubits))
        assert rehearsal.target.instruction_supported(instruction.operation.name, positions)


def test_an_observable_outside_the_circuits_qubits_is_refused():
    with pytest.raises(ValueError, match="does not use"):
        compact_observable(SparsePauliOp("ZIIII"), (0, 1, 2))
    assert compact_observable(SparsePauliOp("IIZIX"), (0, 1, 2)) == SparsePauliOp("ZIX")


def test_the_noise_model_is_built_once_per_run_not_once_per_job(manila, monkeypatch):
    device_class = type(resolve_fake_device("fake_manila"))
    builds = []
    original = device_class._get_noise_model_from_backend_v2
    monkeypatch.setattr(device_class, "_get_noise_model_from_backend_v2",
                        lambda self, *a, **k: (builds.append(1), original(self, *a, **k))[1])
    backend = make_backend(load_config(overrides=["quantum.backend=fake_manila", "runtime.execution_mode=batch",
                                                  "quantum.shots=20000", "quantum.seed=4"]))
    runner = CircuitRunner(build_dressed_circuit(SPEC), backend, transpile_cache=TranspileCache())
    rng = np.random.default_rng(1)
    table = shifted_parameter_table(rng.uniform(-1.5, 1.5, (2, 3)), rng.normal(0, 0.5, SPEC.n_weights))
    try:
        values = [runner.evaluate(table) for _ in range(3)]
    finally:
        backend.close()
    assert len(builds) == 1 and runner.counters.total.jobs == 3
    # the whole device simulated with its own noise model (readout errors included) and shots
    device, compiled = manila
    on_device = sampled_on_whole_device(device, compiled, table, shots=20000)
    assert np.abs(values[2] - on_device).max() < 0.05
