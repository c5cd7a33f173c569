"""The HDF5 store: atomic shards, verified assembly, and refusal of truncated or altered files."""
import json

import h5py
import numpy as np
import pytest

from embeddings.content import LayerStates, Vectors
from embeddings.store import CorruptCache, EmbeddingStore, ShardPlan, write_shard

KEY = "k" * 64


def filled_store(tmp_path, rows=10, shard_rows=4, dims=3):
    store = EmbeddingStore(tmp_path)
    plan = store.prepare_parts(KEY, ShardPlan(rows=rows, shard_rows=shard_rows))
    vectors = np.arange(rows * dims, dtype=np.float32).reshape(rows, dims) / 7
    for index in range(plan.count):
        start, stop = plan.bounds(index)
        write_shard(store.shard_path(KEY, index), KEY, index, start, Vectors(vectors[start:stop]))
    return store, plan, vectors


def test_shards_assemble_into_a_verified_cache_and_parts_disappear(tmp_path):
    store, plan, vectors = filled_store(tmp_path)
    assert plan.count == 3 and plan.bounds(2) == (8, 10)
    labels = np.array([0, 1] * 5)
    store.assemble(KEY, plan, labels, {"model": "m"})
    assert not store.parts_dir(KEY).exists()
    cached = store.load(KEY)
    assert np.array_equal(cached.content.array, vectors) and np.array_equal(cached.labels, labels)
    assert cached.manifest["complete"] is True and cached.manifest["rows"] == 10 and cached.manifest["dims"] == 3
    assert [s["start"] for s in cached.manifest["shards"]] == [0, 4, 8]
    assert list(tmp_path.rglob("*.tmp*")) == []


def test_missing_cache_is_none(tmp_path):
    assert EmbeddingStore(tmp_path).load(KEY) is None


def test_truncated_cache_is_rejected(tmp_path):
    store, plan, _ = filled_store(tmp_path)
    store.assemble(KEY, plan, np.zeros(10, dtype=np.int64), {})
    path = store.final_path(KEY)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptCache):
        store.load(KEY)
    moved = store.quarantine(KEY)
    assert moved.exists() and not path.exists() and store.load(KEY) is None


def test_altered_vector_is_rejected(tmp_path):
    store, plan, _ = filled_store(tmp_path)
    store.assemble(KEY, plan, np.zeros(10, dtype=np.int64), {})
    with h5py.File(store.final_path(KEY), "r+") as f:
        f["vectors"][5, 1] += 1e-3
    with pytest.raises(CorruptCache, match="checksum"):
        store.load(KEY)


def test_incomplete_manifest_is_rejected(tmp_path):
    store, plan, _ = filled_store(tmp_path)
    store.assemble(KEY, plan, np.zeros(10, dtype=np.int64), {})
    with h5py.File(store.final_path(KEY), "r+") as f:
        manifest = json.loads(f.attrs["manifest"])
        f.attrs["manifest"] = json.dumps(dict(manifest, complete=False))
    with pytest.raises(CorruptCache, match="not a complete cache"):
        store.load(KEY)


def test_damaged_shards_are_dropped_and_intact_ones_kept(tmp_path):
    store, plan, _ = filled_store(tmp_path)
    with h5py.File(store.shard_path(KEY, 1), "r+") as f:
        f["vectors"][0, 0] = 99.0
    store.shard_path(KEY, 2).write_bytes(b"not hdf5")
    assert store.finished_shards(KEY, plan) == {0}
    assert not store.shard_path(KEY, 1).exists() and not store.shard_path(KEY, 2).exists()


def test_an_interrupted_runs_plan_is_reused_and_stale_temp_files_removed(tmp_path):
    store, plan, _ = filled_store(tmp_path, shard_rows=4)
    (store.parts_dir(KEY) / ".shard-00003.h5.k1ll3d.tmp").write_bytes(b"half")   # core.files.atomic_path's name
    resumed = store.prepare_parts(KEY, ShardPlan(rows=10, shard_rows=100))
    assert resumed.shard_rows == 4, "the shards on disk keep their boundaries"
    assert list(store.parts_dir(KEY).glob("*.tmp")) == []
    assert store.finished_shards(KEY, resumed) == {0, 1, 2}


def ragged_states(lengths, hidden=3, dtype="float32"):
    rng = np.random.default_rng(0)
    return LayerStates.from_texts([rng.normal(size=(n, hidden)).astype(np.float32) for n in lengths], dtype, hidden)


def test_layer_states_assemble_verify_and_reject_an_altered_value(tmp_path):
    store = EmbeddingStore(tmp_path)
    plan = store.prepare_parts(KEY, ShardPlan(rows=5, shard_rows=2))
    states = ragged_states([4, 1, 7, 2, 3])
    for index in range(plan.count):
        start, stop = plan.bounds(index)
        write_shard(store.shard_path(KEY, index), KEY, index, start, states.rows(start, stop))
    store.assemble(KEY, plan, np.zeros(5, dtype=np.int64), {})
    cached = store.load(KEY)
    assert cached.manifest["rows"] == 5 and cached.manifest["dims"] == 3
    assert isinstance(cached.content, LayerStates)     # never read as vectors
    assert np.array_equal(cached.content.states, states.states) and list(cached.content.lengths) == [4, 1, 7, 2, 3]
    assert [len(s) for s in cached.content.text_states([2, 0])] == [7, 4]
    with h5py.File(store.final_path(KEY), "r+") as f:
        f["states"][9, 2] += 1e-3
    with pytest.raises(CorruptCache, match="fail their checksum|checksum"):
        store.load(KEY)


def test_a_damaged_layer_state_shard_is_dropped(tmp_path):
    store = EmbeddingStore(tmp_path)
    plan = store.prepare_parts(KEY, ShardPlan(rows=4, shard_rows=2))
    states = ragged_states([2, 3, 1, 5])
    for index in range(plan.count):
        start, stop = plan.bounds(index)
        write_shard(store.shard_path(KEY, index), KEY, index, start, states.rows(start, stop))
    with h5py.File(store.shard_path(KEY, 1), "r+") as f:
        f["lengths"][0] = 2          # the same bytes of states, cut differently
    assert store.finished_shards(KEY, plan) == {0}


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_states_are_stored_in_half_the_bytes_and_read_back_exactly(dtype):
    import torch

    exact = torch.randn(6, 4).to(getattr(torch, dtype)).float().numpy()   # values a half-precision model computes
    states = LayerStates.from_texts([exact[:2], exact[2:]], dtype, 4)
    assert states.states.itemsize == 2
    assert np.array_equal(np.concatenate(states.text_states([0, 1])), exact)
