"""The HDF5 store: atomic shards, verified assembly, and refusal of truncated or altered files."""
import json

import h5py
import numpy as np
import pytest

from embeddings.store import CorruptCache, EmbeddingStore, ShardPlan, write_shard

KEY = "k" * 64


def filled_store(tmp_path, rows=10, shard_rows=4, dims=3):
    store = EmbeddingStore(tmp_path)
    plan = store.prepare_parts(KEY, ShardPlan(rows=rows, shard_rows=shard_rows))
    vectors = np.arange(rows * dims, dtype=np.float32).reshape(rows, dims) / 7
    for index in range(plan.count):
        start, stop = plan.bounds(index)
        write_shard(store.shard_path(KEY, index), KEY, index, start, vectors[start:stop])
    return store, plan, vectors


def test_shards_assemble_into_a_verified_cache_and_parts_disappear(tmp_path):
    store, plan, vectors = filled_store(tmp_path)
    assert plan.count == 3 and plan.bounds(2) == (8, 10)
    labels = np.array([0, 1] * 5)
    store.assemble(KEY, plan, labels, {"model": "m"})
    assert not store.parts_dir(KEY).exists()
    cached = store.load(KEY)
    assert np.array_equal(cached.vectors, vectors) and np.array_equal(cached.labels, labels)
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
