"""Ray circuit workers: a large table split over actors gives the unsplit evaluation's result."""
import copy

import numpy as np
import pytest

from orchestrator.backends.aer import AerBackend, AerOptions
from orchestrator.circuits import QuantumSpec, TranspileCache, build_dressed_circuit, simulate_table
from orchestrator.errors import UserError
from orchestrator.scheduler import ParameterShiftScheduler
from orchestrator.shift_rule import shifted_parameter_table

W1 = QuantumSpec(n_qubits=4, depth=6)


@pytest.fixture(scope="module")
def split_backend(ray_session):
    backend = AerBackend(AerOptions(workers=2, min_rows_for_workers=500, seed=9))
    yield backend
    backend.close()


def w1_table(batch=16):
    rng = np.random.default_rng(0)
    return shifted_parameter_table(rng.uniform(-1.5, 1.5, (batch, 4)), rng.normal(0, 0.5, W1.n_weights))


def test_split_over_workers_is_bit_identical_to_the_unsplit_evaluation(split_backend):
    template = build_dressed_circuit(W1)
    local = ParameterShiftScheduler(template, AerBackend(), transpile_cache=TranspileCache())
    split = ParameterShiftScheduler(template, split_backend, transpile_cache=TranspileCache())
    table = w1_table()
    unsplit_values = local.evaluate(table)
    split_values = split.evaluate(table)
    assert split_backend.workers_started == 2                     # the table really went to the actors
    np.testing.assert_array_equal(split_values, unsplit_values)
    np.testing.assert_allclose(split_values, simulate_table(W1, table), atol=1e-12)
    # still one job from the scheduler's point of view, and its id is recorded
    assert (split.counters.step.jobs, split.counters.step.circuits) == (1, 912)


def test_small_tables_stay_local(split_backend):
    compiled = ParameterShiftScheduler(build_dressed_circuit(W1), split_backend,
                                       transpile_cache=TranspileCache()).transpiled()
    table = w1_table(batch=2)[:, compiled.columns]
    job = split_backend.submit(compiled.circuit, compiled.observables, table, None)
    assert not job.job_id.startswith("ray-")
    np.testing.assert_allclose(job.result(), simulate_table(W1, w1_table(batch=2)), atol=1e-12)


def test_worker_shots_equal_local_runs_with_the_same_seeds(split_backend):
    """With shots, each slice gets the next seed of the backend's seeded stream; running the
    same slices locally with those seeds reproduces the workers' samples exactly."""
    compiled = ParameterShiftScheduler(build_dressed_circuit(W1), split_backend,
                                       transpile_cache=TranspileCache()).transpiled()
    table = w1_table(batch=10)[:, compiled.columns]                   # 570 rows: split in two
    seeds = copy.deepcopy(split_backend._seeds)     # the backend's seed stream, as it stands now
    job = split_backend.submit(compiled.circuit, compiled.observables, table, 500)
    assert job.job_id.startswith("ray-")
    sampled = job.result()
    local = AerBackend()
    halves = np.array_split(table, 2)
    expected = np.concatenate([local.run(compiled.circuit, compiled.observables, half, shots=500,
                                         seed=int(seeds.integers(0, 2**31 - 1))) for half in halves])
    np.testing.assert_array_equal(sampled, expected)
    assert np.abs(sampled - simulate_table(W1, w1_table(batch=10))).max() < 5 / np.sqrt(500)


def test_more_workers_than_cluster_cpus_is_refused_instead_of_hanging(ray_session):
    backend = AerBackend(AerOptions(workers=64, min_rows_for_workers=1))
    compiled = ParameterShiftScheduler(build_dressed_circuit(W1), backend,
                                       transpile_cache=TranspileCache()).transpiled()
    with pytest.raises(UserError, match="64"):
        backend.submit(compiled.circuit, compiled.observables, w1_table(batch=1)[:, compiled.columns], None)
    assert backend.workers_started == 0
