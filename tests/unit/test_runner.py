"""The runner (requests -> jobs, counters, hooks) and the Aer backend it drives."""
import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp, Statevector

from orchestrator.quantum.backends.devices import resolve_fake_device
from orchestrator.quantum.backends.aer import AerBackend, AerOptions
from orchestrator.quantum.circuits import QuantumSpec, TranspileCache, build_dressed_circuit
from tests.support.reference_sim import simulate_table
from orchestrator.core.errors import UserError
from orchestrator.quantum.runner import JobHook, CircuitRunner, plan_jobs
from orchestrator.quantum.shift_rule import evaluation_table, shifted_parameter_table

W1 = QuantumSpec(n_qubits=4, depth=6)


def w1_batch(size=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-np.pi / 2, np.pi / 2, (size, 4)), rng.normal(0, 0.5, W1.n_weights)


def runner(options=AerOptions(), spec=W1, **kwargs):
    return CircuitRunner(build_dressed_circuit(spec), AerBackend(options),
                                   transpile_cache=TranspileCache(), **kwargs)


def exact_shift_result(spec, inputs, weights):
    table = shifted_parameter_table(inputs, weights)
    from orchestrator.quantum.shift_rule import values_and_jacobian
    return values_and_jacobian(simulate_table(spec, table), len(inputs), spec.n_parameters)


# --- job planning ------------------------------------------------------------------------------

def test_plan_is_one_job_unless_a_limit_demands_more():
    assert plan_jobs(912, None) == [(0, 912)]
    assert plan_jobs(912, 912) == [(0, 912)]
    plan = plan_jobs(912, 300)
    assert len(plan) == 4
    assert plan[0][0] == 0 and plan[-1][1] == 912
    assert all(a == b for (_, a), (b, _) in zip(plan, plan[1:]))          # contiguous
    assert all(0 < stop - start <= 300 for start, stop in plan)
    assert plan_jobs(0, 10) == []


# --- one request per training step -------------------------------------------------------------

def test_training_request_is_one_job_with_values_and_exact_jacobian():
    s = runner()
    inputs, weights = w1_batch()
    result = s.values_and_jacobian(inputs, weights)
    assert (s.counters.step.jobs, s.counters.step.circuits, s.counters.step.shots) == (1, 912, 0)
    values, jacobian = exact_shift_result(W1, inputs, weights)
    assert result.values.shape == (16, 4) and result.jacobian.shape == (16, 4, 28)
    np.testing.assert_allclose(result.values, values, atol=1e-10)
    np.testing.assert_allclose(result.jacobian, jacobian, atol=1e-10)


def test_evaluation_request_submits_unshifted_rows_only():
    s = runner()
    inputs, weights = w1_batch()
    values = s.values(inputs, weights)
    assert (s.counters.step.jobs, s.counters.step.circuits) == (1, 16)
    np.testing.assert_allclose(values, simulate_table(W1, evaluation_table(inputs, weights)), atol=1e-10)


def test_counters_per_step_and_cumulative_and_no_second_transpile():
    s = runner()
    inputs, weights = w1_batch()
    s.values_and_jacobian(inputs, weights)
    s.values_and_jacobian(inputs, weights + 0.1)
    s.values(inputs, weights)
    assert (s.counters.step.jobs, s.counters.step.circuits) == (1, 16)
    assert (s.counters.total.jobs, s.counters.total.circuits) == (3, 912 * 2 + 16)
    assert s.counters.requests == 3
    assert s.transpile_cache.transpilations == 1


def test_a_job_size_limit_splits_the_request_without_changing_results():
    inputs, weights = w1_batch()
    whole = runner().values_and_jacobian(inputs, weights)
    by_limit = runner(max_parameter_sets_per_job=300)
    split = by_limit.values_and_jacobian(inputs, weights)
    assert (by_limit.counters.step.jobs, by_limit.counters.step.circuits) == (4, 912)
    np.testing.assert_array_equal(split.values, whole.values)
    np.testing.assert_array_equal(split.jacobian, whole.jacobian)
    by_backend = runner(AerOptions(max_parameter_sets_per_job=500))
    by_backend.values_and_jacobian(inputs, weights)
    assert by_backend.counters.step.jobs == 2


class RecordingHook(JobHook):
    def __init__(self):
        self.events = []

    def before_submit(self, intent):
        self.events.append(("intent", intent.index, intent.row_start, intent.row_stop))

    def after_submit(self, intent, job_id, session_id=None):
        self.events.append(("submitted", intent.index, job_id))

    def after_result(self, intent, job_id, expectations, usage=None):
        self.events.append(("result", intent.index, job_id, expectations.shape))


def test_job_hook_sees_intent_then_job_id_then_result_for_every_job():
    hook = RecordingHook()
    s = runner(max_parameter_sets_per_job=500, job_hook=hook)
    s.values_and_jacobian(*w1_batch())
    kinds = [e[0] for e in hook.events]
    assert kinds == ["intent", "submitted", "intent", "submitted", "result", "result"]
    assert [e[2:] for e in hook.events if e[0] == "intent"] == [(0, 456), (456, 912)]
    submitted = {e[1]: e[2] for e in hook.events if e[0] == "submitted"}
    assert all(submitted.values()) and len(set(submitted.values())) == 2
    assert [(e[1], e[2], e[3]) for e in hook.events if e[0] == "result"] == [
        (0, submitted[0], (456, 4)), (1, submitted[1], (456, 4))]


def test_no_more_jobs_pending_at_once_than_the_backend_allows():
    """IBM's Open plan allows a few pending jobs per instance: the runner waits for the oldest job's
    result before it submits past the backend's max_pending_jobs, and keeps the rows in order."""
    hook = RecordingHook()
    s = runner(max_parameter_sets_per_job=400, job_hook=hook)   # 912 rows: 3 jobs
    expected = s.values_and_jacobian(*w1_batch())
    s.backend.max_pending_jobs = 2
    hook.events.clear()
    limited = s.values_and_jacobian(*w1_batch())
    kinds = [e[0] for e in hook.events]
    assert kinds == ["intent", "submitted", "intent", "submitted", "result", "intent", "submitted", "result",
                     "result"]
    np.testing.assert_array_equal(limited.values, expected.values)
    np.testing.assert_array_equal(limited.jacobian, expected.jacobian)


# --- the Aer backend ---------------------------------------------------------------------------

def test_aer_handles_non_diagonal_observables_exactly():
    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.ry(0.3, 1)
    observables = [SparsePauliOp(["XX", "ZI"], coeffs=[0.5, 2.0]), SparsePauliOp("IZ")]
    values = AerBackend().run(circuit, observables, np.zeros((2, 0)))
    expected = [Statevector(circuit).expectation_value(o).real for o in observables]
    np.testing.assert_allclose(values, [expected, expected], atol=1e-12)
    with pytest.raises(UserError, match="one term each"):
        AerBackend(AerOptions(shots=100)).run(circuit, observables, np.zeros((1, 0)), shots=100)
    sampled = AerBackend().run(circuit, observables[1:], np.zeros((3, 0)), shots=2000, seed=1)
    assert sampled.shape == (3, 1) and len(set(sampled[:, 0])) > 1          # every row sampled anew
    assert np.abs(sampled - expected[1]).max() < 5 / np.sqrt(2000)


def test_shots_are_reproducible_with_a_seed_and_close_to_exact():
    spec = QuantumSpec(3, 2)
    inputs, weights = np.random.default_rng(2).uniform(-1, 1, (4, 3)), np.full(spec.n_weights, 0.3)

    def run(seed):
        s = runner(AerOptions(shots=2000, seed=seed), spec)
        first, second = s.values_and_jacobian(inputs, weights), s.values_and_jacobian(inputs, weights)
        return s, first, second

    s, first, second = run(seed=11)
    _, again_first, again_second = run(seed=11)
    _, other, _ = run(seed=12)
    np.testing.assert_array_equal(first.jacobian, again_first.jacobian)
    np.testing.assert_array_equal(second.jacobian, again_second.jacobian)
    assert not np.array_equal(first.jacobian, second.jacobian)   # each job draws fresh randomness
    assert not np.array_equal(first.jacobian, other.jacobian)
    rows = 4 * (1 + 2 * spec.n_parameters)
    assert (s.counters.step.circuits, s.counters.step.shots) == (rows, rows * 2000)
    assert s.counters.total.shots == 2 * rows * 2000
    exact_values, _ = exact_shift_result(spec, inputs, weights)
    assert np.abs(first.values - exact_values).max() < 5 / np.sqrt(2000)   # 5 sigma of a +-1 mean


def test_fake_device_noise_model_changes_values_and_stays_reproducible():
    spec = QuantumSpec(3, 2)
    table = np.random.default_rng(3).uniform(-1, 1, (12, spec.n_parameters))
    exact = simulate_table(spec, table)
    noisy_runner = runner(AerOptions(noise_model="fake_manila"), spec)
    noisy = noisy_runner.evaluate(table)
    assert noisy_runner.backend.name == "aer/fake_manila"
    assert set(noisy_runner.transpiled().circuit.count_ops()) <= {"rz", "sx", "x", "cx", "barrier"}
    deviation = np.abs(noisy - exact).max()
    assert 1e-3 < deviation < 0.3
    np.testing.assert_array_equal(noisy_runner.evaluate(table), noisy)     # density matrix: deterministic
    # Aer's own EstimatorV2 with the same noise model agrees with our probability readout
    from qiskit_aer.primitives import EstimatorV2
    from orchestrator.quantum.backends.estimator import estimator_pub, expectations_from_pub_result
    compiled = noisy_runner.transpiled()
    pub = estimator_pub(compiled.circuit, compiled.observables, table[:, compiled.columns])
    by_estimator = expectations_from_pub_result(
        EstimatorV2.from_backend(noisy_runner.backend.simulator).run([pub]).result()[0])
    np.testing.assert_allclose(by_estimator, noisy, atol=1e-12)
    sampled = [runner(AerOptions(noise_model="fake_manila", shots=2000, seed=5), spec).evaluate(table)
               for _ in range(2)]
    np.testing.assert_array_equal(sampled[0], sampled[1])
    assert np.abs(sampled[0] - noisy).max() < 0.2    # shot noise plus readout error


def test_unknown_fake_device_is_a_user_error():
    assert resolve_fake_device("FakeManilaV2").name == resolve_fake_device("manila").name
    with pytest.raises(UserError, match="fake_manila"):
        AerBackend(AerOptions(noise_model="fake_nowhere"))


@pytest.mark.parametrize("override", ["quantum.shots=0", "quantum.max_parameter_sets_per_job=0"])
def test_the_config_refuses_what_aer_options_take_as_checked(override):
    from orchestrator.config import load_config
    with pytest.raises(UserError, match="at least 1"):
        load_config(overrides=[override])
