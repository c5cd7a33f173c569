"""The embedding stage end to end: real Ray actors, the real MiniLM, real HDF5 files, real kill -9."""
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from embeddings.encode import Encoder, EncodeSettings
from embeddings.models import resolve_model
from orchestrator.config import DataConfig, EmbeddingConfig
from orchestrator.data.datasets import load_dataset
from embeddings.stage import embed_dataset, with_model_pooling
from workers.embedding import EmbeddingPool, ray_pool_starter

pytestmark = pytest.mark.slow
ROWS, SHARD_ROWS = 384, 32


def stage_config(cache_dir, **changes) -> EmbeddingConfig:
    return EmbeddingConfig(cache_dir=str(cache_dir), shard_rows=SHARD_ROWS, workers=2, threads_per_worker=1, **changes)


@pytest.fixture(scope="module")
def sms_slice(sms_sample_path):
    return load_dataset(DataConfig(format="uci", path=str(sms_sample_path), limit=ROWS))


@pytest.fixture(scope="module")
def pool(ray_session, tmp_path_factory):
    """Loaded actors shared by the in-process runs of this module (each CLI run starts its own)."""
    model = resolve_model("all-MiniLM-L6-v2")
    started = EmbeddingPool(model, with_model_pooling(stage_config(tmp_path_factory.mktemp("unused")), model))
    yield started
    started.close()


@pytest.fixture(scope="module")
def reference(pool, sms_slice, tmp_path_factory):
    """One uninterrupted run: what every interrupted, resumed or repaired run must reproduce exactly."""
    return embed_dataset(sms_slice, stage_config(tmp_path_factory.mktemp("reference")), progress=False, pool=pool)


def test_first_run_embeds_every_row_on_ray_actors(reference, sms_slice):
    assert not reference.hit and reference.encoded_rows == ROWS and reference.workers == 2
    assert reference.cache.content.array.shape == (ROWS, 384) and reference.cache.content.array.dtype == np.float32
    assert np.array_equal(reference.cache.labels, sms_slice.labels)
    manifest = reference.cache.manifest
    assert manifest["rows"] == ROWS and manifest["dims"] == 384 and len(manifest["shards"]) == ROWS // SHARD_ROWS
    # pooling auto: the packaged MiniLM declares mean pooling (1_Pooling/config.json)
    assert manifest["dataset"]["sha256"] == sms_slice.content_hash() and manifest["pooling"] == "mean"
    assert manifest["package_versions"]["torch"] and manifest["created_at"]


def test_shards_hold_exactly_what_the_encoder_gives_for_their_rows(reference, sms_slice):
    """Assembly keeps the dataset order: shard i of the cache is the encoder's output for rows of shard i."""
    import torch

    threads = torch.get_num_threads()
    encoder = Encoder(resolve_model("all-MiniLM-L6-v2").path, EncodeSettings(max_length=128, pooling="mean"), threads=1)
    try:
        for start in (0, 5 * SHARD_ROWS, ROWS - SHARD_ROWS):
            expected = encoder.encode(sms_slice.texts[start:start + SHARD_ROWS])
            np.testing.assert_allclose(reference.cache.content.array[start:start + SHARD_ROWS], expected, atol=1e-5)
    finally:
        torch.set_num_threads(threads)


def test_second_run_is_a_cache_hit_that_encodes_nothing(reference, sms_slice):
    again = embed_dataset(sms_slice, stage_config(reference.cache.path.parents[1]), ray_pool_starter(), progress=False)
    # no pool given and nothing to encode: no actor was even started
    assert again.hit and again.encoded_rows == 0 and again.key == reference.key
    assert np.array_equal(again.cache.content.array, reference.cache.content.array)
    assert "cache hit" in again.final_line()


def test_a_changed_setting_gets_a_new_key_and_leaves_the_old_file_untouched(reference, sms_slice):
    cache_dir = reference.cache.path.parents[1]
    before = reference.cache.path.read_bytes()
    first_rows = dataclasses.replace(sms_slice, texts=sms_slice.texts[:64], labels=sms_slice.labels[:64],
                                     row_numbers=sms_slice.row_numbers[:64])
    changed = embed_dataset(first_rows, stage_config(cache_dir, max_length=32), ray_pool_starter(), progress=False)
    assert changed.key != reference.key and changed.cache.path != reference.cache.path
    assert reference.cache.path.read_bytes() == before


def cli_embed(cache_dir, address, sms_sample_path, *extra):
    cmd = [sys.executable, "-m", "orchestrator.cli", "embed", "--data", str(sms_sample_path), "--limit", str(ROWS),
           "--cache-dir", str(cache_dir), "--workers", "2", "--set", f"embedding.shard_rows={SHARD_ROWS}",
           "--set", "embedding.threads_per_worker=1", "--ray-address", address, *extra]
    return cmd


def test_kill_9_mid_run_then_rerun_embeds_only_missing_shards_and_equals_uninterrupted(
        ray_session, pool, reference, sms_sample_path, tmp_path):
    address = ray_session.get_runtime_context().gcs_address
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    parts = tmp_path / "embeddings" / f"{reference.key}.parts"
    victim = subprocess.Popen(cli_embed(tmp_path, address, sms_sample_path, "-q"), env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and victim.poll() is None:
        if len(list(parts.glob("shard-*.h5"))) >= 2:
            break
        time.sleep(0.02)
    assert victim.poll() is None, "the run ended before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    finished = len(list(parts.glob("shard-*.h5")))
    assert 2 <= finished < ROWS // SHARD_ROWS
    assert not (tmp_path / "embeddings" / f"{reference.key}.h5").exists(), "no final file from a killed run"

    resumed = subprocess.run(cli_embed(tmp_path, address, sms_sample_path), env=env, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming:" in resumed.stderr and "texts/s" in resumed.stdout
    encoded = int(resumed.stdout.split("encoded ")[1].split()[0])
    assert 0 < encoded <= ROWS - finished * SHARD_ROWS
    with h5py.File(tmp_path / "embeddings" / f"{reference.key}.h5") as f:
        assert np.array_equal(f["vectors"][()], reference.cache.content.array), "resumed result equals uninterrupted run"
    assert not parts.exists() and list(tmp_path.rglob("*.tmp-*")) == []

    hit = subprocess.run(cli_embed(tmp_path, address, sms_sample_path), env=env, capture_output=True, text=True, timeout=300)
    assert hit.returncode == 0 and hit.stdout.startswith("cache hit:")


def corrupt_by_truncation(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])


def corrupt_by_altering_a_vector(path: Path) -> None:
    with h5py.File(path, "r+") as f:
        f["vectors"][100, 7] = f["vectors"][100, 7] + 0.5


@pytest.mark.parametrize("corrupt", [corrupt_by_truncation, corrupt_by_altering_a_vector])
def test_a_corrupted_cache_is_never_used_but_moved_aside_and_recomputed(pool, reference, sms_slice, tmp_path, corrupt,
                                                                        caplog):
    target = tmp_path / "embeddings" / reference.cache.path.name
    target.parent.mkdir(parents=True)
    target.write_bytes(reference.cache.path.read_bytes())
    corrupt(target)
    repaired = embed_dataset(sms_slice, stage_config(tmp_path), progress=False, pool=pool)
    messages = [record.getMessage() for record in caplog.records]
    assert not repaired.hit and repaired.encoded_rows == ROWS
    assert any("moved aside" in m for m in messages)
    assert np.array_equal(repaired.cache.content.array, reference.cache.content.array)
    assert len(list(target.parent.glob("*.corrupt-*"))) == 1
