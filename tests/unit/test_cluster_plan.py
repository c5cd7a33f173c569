"""What a cluster's run asks of it, without a cluster: the entry script's default address, and the
embedding plan fitted to the CPUs and GPUs a cluster has (the real two-node cluster:
tests/integration/test_cluster.py)."""
import sys
from pathlib import Path

import pytest

from orchestrator.config import EmbeddingConfig
from workers.embedding import plan_workers

# slow as they were in tests/test_cluster.py, whose module-wide mark they had
pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def test_entry_script_defaults_to_the_cluster_on_its_node():
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from orchestrate_on_cluster import cluster_environment
    finally:
        sys.path.remove(str(REPO / "scripts"))
    assert cluster_environment({})["RAY_ADDRESS"] == "auto"
    assert cluster_environment({"RAY_ADDRESS": "10.0.0.5:6379"})["RAY_ADDRESS"] == "10.0.0.5:6379"


@pytest.mark.parametrize("device, gpus, expected", [
    ("auto", 2, ("cuda", 2, {"num_cpus": 1, "num_gpus": 1})),     # a GPU cluster: one GPU per actor
    ("auto", 0, ("cpu", 4, {"num_cpus": 1, "num_gpus": 0})),      # CPU only: one CPU per actor
    ("cpu", 2, ("cpu", 4, {"num_cpus": 1, "num_gpus": 0})),       # asked for CPUs on a GPU cluster
])
def test_embedding_actors_ask_for_a_gpu_where_there_are_gpus_and_for_cpus_otherwise(device, gpus, expected):
    plan = plan_workers(EmbeddingConfig(device=device), cluster_cpus=4, cluster_gpus=gpus, shards=10)
    assert (plan.device, plan.workers, plan.actor_resources()) == expected and plan.warning is None


@pytest.mark.parametrize("changes, gpus, workers, warning", [
    ({"device": "cuda"}, 0, 4, "embedding.device is 'cuda' but the Ray cluster has no GPU: embedding on CPU actors"),
    ({"workers": 3}, 2, 2, "asked for 3 GPU workers but the cluster has 2 GPUs: using 2"),
    ({"workers": 6}, 0, 4, "asked for 6 workers x 1 threads but the cluster has 4 CPUs: running 4 workers"),
    ({"workers": 2, "threads_per_worker": 8}, 0, 1,
     "asked for 2 workers x 8 threads but the cluster has 4 CPUs: running 1 worker x 4 threads"),
])
def test_asking_for_more_than_the_cluster_has_shrinks_the_plan_and_says_so(changes, gpus, workers, warning):
    plan = plan_workers(EmbeddingConfig(**changes), cluster_cpus=4, cluster_gpus=gpus, shards=10)
    assert plan.workers == workers and warning in plan.warning


def test_never_more_actors_than_shards():
    assert plan_workers(EmbeddingConfig(), cluster_cpus=16, cluster_gpus=0, shards=3).workers == 3
