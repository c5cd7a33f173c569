"""Ray circuit workers: a large table split over actors gives the unsplit evaluation's result."""
import copy
import time

import numpy as np
import pytest

from orchestrator.quantum.backends.aer import AerBackend, AerOptions
from orchestrator.quantum.circuits import QuantumSpec, TranspileCache, build_dressed_circuit
from tests.support.reference_sim import simulate_table
from orchestrator.quantum.backends.aer import aer_on_workers
from orchestrator.core.errors import UserError
from orchestrator.quantum.runner import CircuitRunner
from orchestrator.quantum.shift_rule import shifted_parameter_table

W1 = QuantumSpec(n_qubits=4, depth=6)


@pytest.fixture(scope="module")
def split_backend(ray_session):
    backend = aer_on_workers(AerOptions(seed=9), workers=2, min_rows=500)
    yield backend
    backend.close()


def w1_table(batch=16):
    rng = np.random.default_rng(0)
    return shifted_parameter_table(rng.uniform(-1.5, 1.5, (batch, 4)), rng.normal(0, 0.5, W1.n_weights))


def test_split_over_workers_is_bit_identical_to_the_unsplit_evaluation(split_backend):
    template = build_dressed_circuit(W1)
    local = CircuitRunner(template, AerBackend(), transpile_cache=TranspileCache())
    split = CircuitRunner(template, split_backend, transpile_cache=TranspileCache())
    table = w1_table()
    unsplit_values = local.evaluate(table)
    split_values = split.evaluate(table)
    assert split_backend.usage()["circuit_workers"] == 2                     # the table really went to the actors
    np.testing.assert_array_equal(split_values, unsplit_values)
    np.testing.assert_allclose(split_values, simulate_table(W1, table), atol=1e-12)
    # still one job from the runner's point of view, and its id is recorded
    assert (split.counters.step.jobs, split.counters.step.circuits) == (1, 912)


def test_small_tables_stay_local(split_backend):
    compiled = CircuitRunner(build_dressed_circuit(W1), split_backend,
                                       transpile_cache=TranspileCache()).transpiled()
    table = w1_table(batch=2)[:, compiled.columns]
    job = split_backend.submit(compiled.circuit, compiled.observables, table, None)
    assert not job.job_id.startswith("ray-")
    np.testing.assert_allclose(job.result(), simulate_table(W1, w1_table(batch=2)), atol=1e-12)


def test_worker_shots_equal_local_runs_with_the_same_seeds(split_backend):
    """With shots, each slice gets the next seed of the backend's seeded stream; running the
    same slices locally with those seeds reproduces the workers' samples exactly."""
    compiled = CircuitRunner(build_dressed_circuit(W1), split_backend,
                                       transpile_cache=TranspileCache()).transpiled()
    table = w1_table(batch=10)[:, compiled.columns]                   # 570 rows: split in two
    seeds = copy.deepcopy(split_backend.local._seeds)     # the backend's seed stream, as it stands now
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
    backend = aer_on_workers(AerOptions(), workers=64, min_rows=1)
    compiled = CircuitRunner(build_dressed_circuit(W1), backend,
                                       transpile_cache=TranspileCache()).transpiled()
    with pytest.raises(UserError, match="64"):
        backend.submit(compiled.circuit, compiled.observables, w1_table(batch=1)[:, compiled.columns], None)
    assert backend.usage()["circuit_workers"] == 0


def busy_descendant(title: str):
    """A process started (via Ray) by this test process whose title is `title`, or None."""
    import psutil

    for process in psutil.Process().children(recursive=True):
        try:
            if process.cmdline()[:1] == [title]:
                return process
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return None


def test_a_circuit_worker_killed_mid_evaluation_is_restarted_and_its_slice_rerun(ray_session):
    """SIGKILL of a worker's process while it evaluates its slice: Ray restarts the actor, runs the
    slice again there, and the result equals an undisturbed evaluation's, bit for bit."""
    import signal
    import threading

    backend = aer_on_workers(AerOptions(), workers=2, min_rows=1)
    compiled = CircuitRunner(build_dressed_circuit(W1), backend,
                                       transpile_cache=TranspileCache()).transpiled()
    table = w1_table(batch=400)[:, compiled.columns]                  # 22,800 rows: a second or two per slice
    undisturbed = AerBackend().run(compiled.circuit, compiled.observables, table)
    killed = []

    def kill_a_busy_worker() -> None:
        deadline = time.monotonic() + 120
        while not killed and time.monotonic() < deadline:
            victim = busy_descendant("ray::CircuitWorker.evaluate")
            if victim is not None:
                victim.send_signal(signal.SIGKILL)
                killed.append(victim)
            time.sleep(0.005)

    killer = threading.Thread(target=kill_a_busy_worker)
    try:
        killer.start()
        values = backend.submit(compiled.circuit, compiled.observables, table, None).result()
        killer.join()
    finally:
        backend.close()
    assert killed and not killed[0].is_running(), "a worker was killed while it evaluated"
    np.testing.assert_array_equal(values, undisturbed)


def test_circuit_workers_without_a_place_are_left_out_with_a_message_not_waited_for(ray_session, caplog):
    from workers.cluster import placed_actors
    from workers.circuits import start_circuit_workers

    ray = ray_session

    @ray.remote(num_cpus=1)
    class Holder:
        def ready(self):
            return True

    holders, workers = [], []
    try:
        while True:   # take every free CPU (one that has no place within 2 s means none is left)
            holder = Holder.remote()
            if not placed_actors(ray, [holder], 2):
                ray.kill(holder)
                break
            holders.append(holder)
        ray.kill(holders.pop())                                                  # give one CPU back
        # A placed worker still has to start a process and import Aer before ready() returns: on a
        # loaded 2-core machine that took over 3 s (CI), so the one that can be placed gets 15 s.
        workers = start_circuit_workers(AerBackend, 2, timeout_s=15)
        assert len(workers) == 1
        assert "only 1 of 2 circuit workers found a place on the Ray cluster within 15 s" in caplog.text
        with pytest.raises(UserError, match="no circuit worker found a place on the Ray cluster within 3 s"):
            start_circuit_workers(AerBackend, 1, timeout_s=3)               # every CPU is taken again
    finally:
        for actor in holders + workers:
            ray.kill(actor)


def test_a_slice_that_never_returns_stops_the_run_resumably_in_bounded_time(ray_session, monkeypatch):
    """A restarted worker that can be placed nowhere leaves its slice waiting forever: the job
    gives up after the placement timeout plus a time per row, as a BackendFailure (exit 75)."""
    import ray

    from orchestrator.core.errors import BackendFailure
    from workers.circuits import WorkerJob

    monkeypatch.setenv("ORCHESTRATOR_PLACEMENT_TIMEOUT_S", "2")

    @ray.remote(num_cpus=0)
    def never_returns():
        time.sleep(3600)

    job = WorkerJob([never_returns.remote()], rows=100)
    started = time.monotonic()
    with pytest.raises(BackendFailure, match=r"did not return a table within 3 s \(a restarted worker may have"):
        job.result()
    assert time.monotonic() - started < 10
