"""On a real two-node Ray cluster (two `ray start` nodes on loopback): `ray job submit` of a run,
the head-node entry script, real kills of an embedding actor and of a whole node, and resources
the cluster does not have (the embedding plan alone: tests/unit/test_cluster_plan.py).

Everything that talks to the cluster runs in its own process (`ray job submit`, `orchestrate`,
`python -c`): a process joins one Ray cluster only, and this test process may hold the suite's
shared local Ray (tests/conftest.py).
"""
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.support.loopback_cluster import LoopbackCluster

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
ROWS, SHARD_ROWS = 200, 10
# the settings every embedding run here shares with the reference run: same shards, same vectors
EMBED_SETTINGS = ["--limit", str(ROWS), "--set", f"embedding.shard_rows={SHARD_ROWS}", "-q"]


# One CPU per node: two nodes still force the embedding actors apart, and a 2-core machine starts
# two actors (torch, the encoder) in half the time of four.
CPUS_PER_NODE = 1


@pytest.fixture(scope="module")
def cluster():
    """A head node and one worker node; torn down whatever happens to the tests."""
    started = LoopbackCluster()
    try:
        started.start_head(cpus=CPUS_PER_NODE)
        started.add_worker(cpus=CPUS_PER_NODE)
        started.wait_for_nodes(2)
        yield started
    finally:
        started.shutdown()


@pytest.fixture
def two_nodes(cluster):
    """The cluster with two live nodes: a worker node a test killed is replaced by a new one."""
    if len(cluster.alive_nodes()) < 2:
        cluster.add_worker(cpus=CPUS_PER_NODE)
        cluster.wait_for_nodes(2)
    return cluster


@pytest.fixture(scope="module")
def shared_dir(tmp_path_factory):
    """Stands for the shared filesystem every node mounts (on loopback they share one disk)."""
    return tmp_path_factory.mktemp("shared")


def orchestrate(cluster, *args, env=None):
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], env=env or cluster.client_env(),
                          capture_output=True, text=True, timeout=600, cwd=REPO)


def placement(output: str) -> dict:
    """{node ip: rows} from the embedding stage's `placement:` line."""
    line = next(line for line in output.splitlines() if line.startswith("placement:"))
    return {ip: int(rows) for ip, rows in re.findall(r"(\d+\.\d+\.\d+\.\d+) \(node [0-9a-f]+\) (\d+) rows", line)}


def cache_file(cache_dir: Path) -> Path:
    files = list((cache_dir / "embeddings").glob("*.h5"))
    assert len(files) == 1, files
    return files[0]


def cache_contents(path: Path) -> tuple:
    with h5py.File(path) as f:
        manifest = json.loads(f.attrs["manifest"])
        return f["vectors"][()], f["labels"][()], [s["sha256"] for s in manifest["shards"]]


@pytest.fixture(scope="module")
def submitted_run(cluster, shared_dir, sms_sample_path):
    """`ray job submit` of `orchestrate run`: embed on the cluster, then a short training run."""
    cache_dir, run_dir = shared_dir / "cache", shared_dir / "run"
    done = cluster.ray_cli(
        "job", "submit", "--address", cluster.dashboard_url, "--",
        "orchestrate", "run", "--data", str(sms_sample_path), *EMBED_SETTINGS, "--epochs", "1",
        "--set", "quantum.n_qubits=2", "--set", "quantum.depth=1",
        "--cache-dir", str(cache_dir), "--run-dir", str(run_dir), timeout=600)
    return done, cache_dir, run_dir


def test_ray_job_submit_embeds_on_both_nodes_and_trains(submitted_run, cluster):
    done, cache_dir, run_dir = submitted_run
    assert done.returncode == 0 and "succeeded" in done.stdout, done.stdout[-3000:] + done.stderr[-2000:]
    rows = placement(done.stdout)
    assert set(rows) == {node.ip for node in cluster.nodes}, "shards ran on both nodes"
    assert sum(rows.values()) == ROWS
    assert "on 2 workers" in done.stdout
    # the cache is in the configured shared folder, and it is what the driver trained on
    vectors, labels, _ = cache_contents(cache_file(cache_dir))
    assert vectors.shape == (ROWS, 384) and len(labels) == ROWS
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["cache"]["path"] == str(cache_file(cache_dir))
    assert summary["n_qubits"] == 2 and summary["timing"]["steps"] > 0
    assert 0 <= summary["test"]["accuracy"] <= 1


def test_entry_script_joins_the_cluster_and_fits_requests_to_what_it_has(two_nodes, tmp_path, sms_sample_path):
    """More workers than CPUs, and a GPU on a CPU-only cluster: both said, and the run goes on."""
    home = tmp_path / "home"   # as `ray submit` does: the script alone, copied to a folder of its own
    home.mkdir()
    shutil.copy(REPO / "scripts" / "orchestrate_on_cluster.py", home)
    done = subprocess.run(
        [sys.executable, "orchestrate_on_cluster.py", "embed", "--data", str(sms_sample_path), "--limit", "60",
         "--set", "embedding.shard_rows=10", "--workers", "6", "--set", "embedding.device=cuda",
         "--cache-dir", str(tmp_path / "cache"), "-q"],
        env=two_nodes.client_env(), capture_output=True, text=True, timeout=600, cwd=home)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "embedding.device is 'cuda' but the Ray cluster has no GPU: embedding on CPU actors" in done.stderr
    assert "asked for 6 workers x 1 threads but the cluster has 2 CPUs: running 2 workers" in done.stderr
    assert "on 2 workers" in done.stdout
    assert len(placement(done.stderr)) == 2, "it joined the two-node cluster, not a Ray of its own"


def embed_with_a_kill(cluster, cache_dir: Path, sms_sample_path, kill) -> subprocess.CompletedProcess:
    """`orchestrate embed` on the cluster; `kill()` runs once an embedding actor is busy with a shard."""
    run = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "embed", "--data", str(sms_sample_path),
                            *EMBED_SETTINGS, "--cache-dir", str(cache_dir)],
                           env=cluster.client_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           cwd=REPO)
    try:
        deadline = time.monotonic() + 300
        while not kill() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert run.poll() is None, "the run ended before anything was killed"
        stdout, stderr = run.communicate(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
    return subprocess.CompletedProcess(run.args, run.returncode, stdout, stderr)


def kill_busy_actor(node, class_name: str, method: str):
    """A kill() for embed_with_a_kill: SIGKILL one process of `node` busy in class_name.method."""
    def kill() -> bool:
        busy = node.actor_processes(class_name, method)
        if busy:
            busy[0].send_signal(signal.SIGKILL)
        return bool(busy)
    return kill


def test_killing_an_embedding_actor_mid_shard_changes_nothing(submitted_run, two_nodes, tmp_path, sms_sample_path):
    reference = cache_contents(cache_file(submitted_run[1]))
    worker_node = two_nodes.alive_nodes()[-1]
    done = embed_with_a_kill(two_nodes, tmp_path, sms_sample_path, kill_busy_actor(worker_node, "EmbeddingWorker",
                                                                            "embed_shard"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "an embedding worker died" in done.stderr and "goes to another worker" in done.stderr
    vectors, labels, shard_sums = cache_contents(cache_file(tmp_path))
    assert np.array_equal(vectors, reference[0]) and np.array_equal(labels, reference[1])
    assert shard_sums == reference[2]


def test_an_address_nothing_answers_at_is_refused_at_once(tmp_path, sms_sample_path):
    from tests.support.loopback_cluster import free_port

    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "orchestrator.cli", "embed", "--data", str(sms_sample_path), "--limit", "5",
                           "--cache-dir", str(tmp_path), "--ray-address", f"127.0.0.1:{free_port()}"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 2 and time.monotonic() - started < 60
    assert done.stderr.strip().splitlines()[-1].startswith("error: no Ray cluster answers at 127.0.0.1:")
    assert not list(tmp_path.rglob("*.h5"))


HOLD_CPUS = """
import sys, ray
ray.init()
@ray.remote(num_cpus=1)
class Holder:
    def ready(self): return True
holders = []
for line in sys.stdin:           # one line: hold one more CPU of the cluster
    holders.append(Holder.remote())
    ray.get(holders[-1].ready.remote())
    print(len(holders), flush=True)
"""


@pytest.fixture
def cpu_holder(two_nodes):
    """A driver on the cluster that takes CPUs on request (`hold(n)`), and gives them back at the end."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD_CPUS], env=two_nodes.client_env(), text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def hold(count: int) -> None:
        for _ in range(count):
            holder.stdin.write("+\n")
            holder.stdin.flush()
            assert holder.stdout.readline().strip(), "the holder could not take a CPU"
    try:
        yield hold
    finally:
        holder.kill()
        holder.wait()


def test_workers_without_a_place_are_left_out_with_a_message_not_waited_for(two_nodes, cpu_holder, tmp_path,
                                                                              sms_sample_path):
    cpu_holder(1)  # other work holds 1 of the 2 CPUs: of 2 planned workers, 1 finds a place
    env = two_nodes.client_env(ORCHESTRATOR_PLACEMENT_TIMEOUT_S="5")
    started = time.monotonic()
    done = orchestrate(two_nodes, "embed", "--data", str(sms_sample_path), "--limit", "30", "--set",
                       "embedding.shard_rows=10", "--cache-dir", str(tmp_path / "degraded"), "-q", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 embedding workers need 2 CPU but the cluster has 1 CPU free now; waiting up to 5 s" in done.stderr
    assert "only 1 of 2 embedding workers found a place on the Ray cluster within 5 s: running on 1" in done.stderr
    assert "on 1 worker" in done.stdout

    cpu_holder(1)  # now every CPU is taken: a clear error, exit code 2, in seconds
    done = orchestrate(two_nodes, "embed", "--data", str(sms_sample_path), "--limit", "30", "--set",
                       "embedding.shard_rows=10", "--cache-dir", str(tmp_path / "none"), "-q", env=env)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(
        "error: no embedding worker found a place on the Ray cluster within 5 s: each needs 1 CPU")
    assert time.monotonic() - started < 240
    assert not list((tmp_path / "none").rglob("*.h5")), "nothing written"


AER_ON_CLUSTER = """
import json, numpy as np, ray
from orchestrator.quantum.backends.aer import aer_on_workers
from orchestrator.quantum.backends.aer import AerBackend, AerOptions
from orchestrator.quantum.circuits import QuantumSpec, TranspileCache, build_dressed_circuit
from orchestrator.quantum.runner import CircuitRunner
from orchestrator.quantum.shift_rule import shifted_parameter_table

spec = QuantumSpec(n_qubits=4, depth=2)
rng = np.random.default_rng(1)
table = shifted_parameter_table(rng.uniform(-1.5, 1.5, (8, 4)), rng.normal(0, 0.5, spec.n_weights))
split = aer_on_workers(AerOptions(), workers=2, min_rows=1)
values = CircuitRunner(build_dressed_circuit(spec), split, transpile_cache=TranspileCache()).evaluate(table)
local = CircuitRunner(build_dressed_circuit(spec), AerBackend(), transpile_cache=TranspileCache()).evaluate(table)
print(json.dumps({"gcs": ray.get_runtime_context().gcs_address, "nodes": len([n for n in ray.nodes() if n["Alive"]]),
                  "workers": split.usage()["circuit_workers"], "identical": bool(np.array_equal(values, local))}))
"""


def test_aer_circuit_workers_join_the_cluster_named_by_ray_address(two_nodes):
    done = subprocess.run([sys.executable, "-c", AER_ON_CLUSTER], env=two_nodes.client_env(), capture_output=True,
                          text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"gcs": two_nodes.address, "nodes": 2, "workers": 2, "identical": True}


def test_a_sweep_runs_its_trials_on_every_node(two_nodes, shared_dir, sms_sample_path):
    """4 trials of one CPU each on two one-CPU nodes: Ray Tune places them on both, two at a time."""
    sweep_dir = shared_dir / "sweep"
    done = orchestrate(two_nodes, "sweep", "--data", str(sms_sample_path), *EMBED_SETTINGS, "--epochs", "1",
                       "--set", "quantum.n_qubits=2", "--set", "quantum.depth=1", "--seeds", "4",
                       "--cache-dir", str(shared_dir / "cache"), "--sweep-dir", str(sweep_dir), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    assert [t["status"] for t in results["trials"]] == ["finished"] * 4
    # Tune's own record of each trial names the node it ran on
    nodes = {json.loads(path.read_text().splitlines()[-1])["node_ip"]
             for path in (sweep_dir / "tune").glob("tune-*/s00-seed*/result.json")}
    assert nodes == {node.ip for node in two_nodes.alive_nodes()}


# last: it takes a node away (a test after it would wait for a new one, see two_nodes)
def test_losing_a_node_mid_run_changes_nothing(submitted_run, two_nodes, tmp_path, sms_sample_path):
    reference = cache_contents(cache_file(submitted_run[1]))
    worker_node = two_nodes.alive_nodes()[-1]

    def kill_node() -> bool:
        if not worker_node.actor_processes("EmbeddingWorker", "embed_shard"):
            return False
        worker_node.kill()
        return True

    done = embed_with_a_kill(two_nodes, tmp_path, sms_sample_path, kill_node)
    assert done.returncode == 0, done.stderr[-3000:]
    assert worker_node not in two_nodes.alive_nodes()
    assert "an embedding worker died" in done.stderr
    vectors, labels, shard_sums = cache_contents(cache_file(tmp_path))
    assert np.array_equal(vectors, reference[0]) and np.array_equal(labels, reference[1])
    assert shard_sums == reference[2]
