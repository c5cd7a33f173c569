"""A fake device cut down to the qubits a circuit uses: fast rehearsal in local testing mode.

Local testing mode runs every job on a fake device by deep-copying it (the copy builds the whole
device's noise model again: ~10 s on fake_fez's 156 qubits) and simulating circuits as wide as
the device (converting the 156-qubit noise model and circuits for every job: ~12 s more for a
912-set step). The dressed circuit touches a handful of physical qubits, so a run rehearses on
`RehearsalDevice`: the same device restricted to those qubits, with their gates, durations,
T1/T2 and errors, and the fake device's own noise model restricted to them. Built once per run;
the per-job deep copy shares it instead of copying it. Jobs still go through the same path as on
hardware: Session/Batch, qiskit-ibm-runtime's Estimator, one PUB, the local service.

What it leaves out: noise on qubits the circuit never touches (it cannot change the values)
and crosstalk, which the fake devices do not model either.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from qiskit import QuantumCircuit
from qiskit.providers import BackendV2, Options
from qiskit.quantum_info import PauliList, SparsePauliOp
from qiskit.transpiler import Target


def active_qubits(circuit: QuantumCircuit) -> tuple[int, ...]:
    """The qubits any instruction but a barrier acts on, in index order."""
    used = {circuit.find_bit(q).index for instruction in circuit.data
            if instruction.operation.name != "barrier" for q in instruction.qubits}
    return tuple(sorted(used))


def compact_circuit(circuit: QuantumCircuit, qubits: Sequence[int]) -> QuantumCircuit:
    """`circuit` on qubits 0..len(qubits)-1, physical qubit qubits[i] becoming qubit i."""
    index = {q: i for i, q in enumerate(qubits)}
    compact = QuantumCircuit(len(qubits), circuit.num_clbits, name=circuit.name, global_phase=circuit.global_phase)
    for instruction in circuit.data:
        positions = [circuit.find_bit(q).index for q in instruction.qubits]
        if instruction.operation.name == "barrier":
            positions = [p for p in positions if p in index]
            if not positions:
                continue
        compact.append(instruction.operation, [compact.qubits[index[p]] for p in positions],
                       [compact.clbits[circuit.find_bit(c).index] for c in instruction.clbits])
    return compact


def compact_observable(observable: SparsePauliOp, qubits: Sequence[int]) -> SparsePauliOp:
    """`observable` on the compact qubits; it must act as the identity everywhere else."""
    paulis = observable.paulis
    outside = np.ones(observable.num_qubits, dtype=bool)
    outside[list(qubits)] = False
    if (paulis.z[:, outside] | paulis.x[:, outside]).any():
        raise ValueError("the observable acts on qubits the circuit does not use")
    kept = list(qubits)
    return SparsePauliOp(PauliList.from_symplectic(paulis.z[:, kept], paulis.x[:, kept]), observable.coeffs)


def reduced_target(target: Target, qubits: Sequence[int]) -> Target:
    """`target` restricted to `qubits` (renumbered 0..n-1): their instructions and properties."""
    index = {q: i for i, q in enumerate(qubits)}
    properties = target.qubit_properties
    reduced = Target(description=f"{target.description or 'device'} on qubits {list(qubits)}",
                     num_qubits=len(qubits), dt=target.dt,
                     qubit_properties=[properties[q] for q in qubits] if properties else None)
    for name in target.operation_names:
        operation = target.operation_from_name(name)
        qargs_properties = target[name]
        if qargs_properties is None or list(qargs_properties) == [None]:
            reduced.add_instruction(operation, name=name)
            continue
        kept = {tuple(index[q] for q in qargs): props for qargs, props in qargs_properties.items()
                if qargs is not None and all(q in index for q in qargs)}
        if kept:
            reduced.add_instruction(operation, kept, name=name)
    return reduced


def reduced_noise_model(noise, qubits: Sequence[int]):
    """Aer noise model `noise` restricted to `qubits` (renumbered 0..n-1)."""
    from qiskit_aer.noise import NoiseModel
    from qiskit_aer.noise.passes import RelaxationNoisePass

    index = {q: i for i, q in enumerate(qubits)}
    reduced = NoiseModel(basis_gates=noise.basis_gates)
    for name, error in noise._default_quantum_errors.items():
        reduced.add_all_qubit_quantum_error(error, name)
    for name, errors in noise._local_quantum_errors.items():
        for qargs, error in errors.items():
            if all(q in index for q in qargs):
                reduced.add_quantum_error(error, name, [index[q] for q in qargs])
    if noise._default_readout_error is not None:
        reduced.add_all_qubit_readout_error(noise._default_readout_error)
    for qargs, error in noise._local_readout_errors.items():
        if all(q in index for q in qargs):
            reduced.add_readout_error(error, [index[q] for q in qargs])
    for noise_pass in noise._custom_noise_passes:
        if isinstance(noise_pass, RelaxationNoisePass):   # thermal relaxation during delays
            kept = list(qubits)
            reduced._custom_noise_passes.append(RelaxationNoisePass(
                noise_pass._t1s[kept].tolist(), noise_pass._t2s[kept].tolist(), dt=noise_pass._dt,
                op_types=noise_pass._ops or None, excited_state_populations=noise_pass._p1s[kept].tolist()))
    return reduced


class RehearsalDevice(BackendV2):
    """`device` restricted to `qubits`; runs circuits on an Aer simulator with its noise."""

    def __init__(self, device, qubits: Sequence[int]) -> None:
        from qiskit_aer import AerSimulator

        super().__init__(name=f"{device.name}-rehearsal", backend_version=1)
        self.qubits = tuple(qubits)
        self._target = reduced_target(device.target, self.qubits)
        # the noise model local testing mode gives the whole device, restricted: the same errors
        full = device._get_noise_model_from_backend_v2()
        # a step's 912 small circuits: one per core at a time beats spreading each over the cores
        self.simulator = AerSimulator(noise_model=reduced_noise_model(full, self.qubits), max_parallel_experiments=0)

    @property
    def target(self) -> Target:
        return self._target

    @property
    def max_circuits(self):
        return None

    @classmethod
    def _default_options(cls) -> Options:
        return Options(shots=1024, seed_simulator=None)

    def run(self, run_input, **options):
        return self.simulator.run(run_input, **options)

    def __deepcopy__(self, memo: dict) -> "RehearsalDevice":
        # local testing mode deep-copies a job's options, this device among them: share it, so
        # its simulator and noise model are built once per run, not once per job
        return self
