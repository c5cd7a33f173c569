"""Co-training the encoder with the quantum head (embedding.train_layers k | all) on a tiny random
BERT: the layer-state cache, gradients into the trainable layers only, checkpoints of those layers,
kill -9 and resume, eval and predict with the trained layers, and the job count unchanged."""
import json
import math
import random

import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from embeddings.encode import Encoder, EncodeSettings, pool
from embeddings.layers import TopLayers, layer_states, pad_states
from embeddings.content import LayerStates
from orchestrator.cli import main
from tests.support.cotraining import args
from tests.support.runs import assert_same_run, kill_after_checkpoint


@pytest.fixture(scope="module")
def runs(ray_session, tiny_bert, tmp_path_factory):
    """A frozen run and a train_layers=1 run on one cache, and a train_layers=all run."""
    root = tmp_path_factory.mktemp("cotrain")
    cache = root / "cache"
    for name, layers in (("k0", "0"), ("k1", "1"), ("all", "all")):
        extra = ["--set", "train.precision=bfloat16"] if name == "all" else []   # the autocast path, on a CPU
        assert main(["run", *args(tiny_bert, cache, "--set", f"embedding.train_layers={layers}", *extra),
                     "--run-dir", str(root / name)]) == 0
    return root


def summary(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


def test_the_cache_holds_ragged_layer_states_under_a_key_of_their_own(runs, tiny_bert):
    from transformers import AutoModel, AutoTokenizer

    frozen, k1 = summary(runs / "k0"), summary(runs / "k1")
    assert frozen["cache"]["key"] != k1["cache"]["key"]
    assert summary(runs / "all")["cache"]["path"] is None          # full fine-tuning caches nothing
    assert k1["cache"]["bytes"] > frozen["cache"]["bytes"] > 0
    with h5py.File(k1["cache"]["path"]) as f:
        assert "vectors" not in f and f["states"].shape[1] == 32
        lengths = f["lengths"][()]
        manifest = json.loads(f.attrs["manifest"])
        states = LayerStates(states=f["states"][()], lengths=lengths)
    assert manifest["train_layers"] == 1 and f"{manifest['rows']}" == f"{len(lengths)}"
    assert states.states.shape[0] == lengths.sum()                  # no padding stored

    texts = ["free prize now", "ok see you later", "win"]
    model = AutoModel.from_pretrained(tiny_bert).eval()
    tokens = AutoTokenizer.from_pretrained(tiny_bert)(texts, padding=True, return_tensors="pt")
    expected = layer_states(model, tokens["input_ids"], tokens["attention_mask"], 1)
    computed = Encoder(str(tiny_bert), EncodeSettings(pooling="cls", train_layers=1)).encode_states(texts)
    for mine, theirs in zip(computed.text_states(range(3)), expected):
        np.testing.assert_allclose(mine, theirs, atol=1e-5)
    # the top layer over those states gives the whole model's vectors
    batch, mask = pad_states(computed.text_states(range(3)))
    with torch.no_grad():
        top = pool(TopLayers(model, 1)(batch, mask), mask, None, "cls")
    whole = Encoder(str(tiny_bert), EncodeSettings(pooling="cls")).encode(texts)
    np.testing.assert_allclose(top.numpy(), whole, atol=1e-5)


def test_checkpoints_hold_the_trained_layers_only(runs, tiny_bert):
    from transformers import AutoModel

    pretrained = AutoModel.from_pretrained(tiny_bert).state_dict()
    k1 = torch.load(runs / "k1" / "best.pt", weights_only=True)
    encoder_keys = [k for k in k1["model"] if k.startswith("encoder.")]
    assert encoder_keys and all(k.startswith("encoder.layers.top.encoder.layer.0.") for k in encoder_keys)
    safetensors = load_file(runs / "k1" / "model.safetensors")
    assert safetensors.keys() == k1["model"].keys() and all(torch.equal(safetensors[k], k1["model"][k]) for k in safetensors)
    encoder = json.loads((runs / "k1" / "head.json").read_text())["encoder"]
    assert (encoder["train_layers"], encoder["pooling"], encoder["model"]) == (1, "cls", str(tiny_bert))
    # that layer is the model's top one (layer 1 of 0..1) and training moved it
    trained = k1["model"]["encoder.layers.top.encoder.layer.0.output.dense.weight"]
    assert not torch.equal(trained, pretrained["encoder.layer.1.output.dense.weight"])
    full = torch.load(runs / "all" / "checkpoint.pt", weights_only=False)["model"]
    assert any(k.startswith("encoder.model.embeddings.") for k in full)
    frozen = load_file(runs / "k0" / "model.safetensors")
    assert not any(k.startswith("encoder.") for k in frozen)
    assert summary(runs / "k1")["encoder"]["trainable_parameters"] == sum(v.numel() for k, v in k1["model"].items()
                                                                         if k.startswith("encoder."))


def test_gradients_reach_the_trainable_layers_and_not_the_frozen_ones(ray_session, runs, tiny_bert):
    from orchestrator.config import load_config
    from orchestrator.pipeline import prepare
    from orchestrator.training import loop

    config = load_config(None, [f"embedding.model={tiny_bert}", "embedding.train_layers=1", "data.limit=160",
                                f"embedding.cache_dir={runs / 'cache'}", "quantum.n_qubits=2", "quantum.depth=1",
                                "embedding.max_length=24"])
    prepared = prepare(config, progress=False)
    training = loop.setup(config, prepared, runs / "scratch", loop.run_encoder(config))
    logits, y = loop.forward(training, training.train, np.arange(8))
    training.loss_fn(logits, y).backward()
    encoder = training.model.encoder
    trainable = [p for p in encoder.parameters()]
    assert trainable and all(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)
    whole = encoder.whole
    frozen = list(whole.embeddings.parameters()) + list(whole.encoder.layer[0].parameters())
    assert all(p.grad is None and not p.requires_grad for p in frozen)
    training.runner.backend.close()


def test_eval_and_predict_use_the_trained_layers(runs, capsys):
    for name in ("k1", "all"):
        recorded = summary(runs / name)["test"]
        assert main(["eval", "-q", str(runs / name), "--cache-dir", str(runs / "cache")]) == 0
        evaluated = json.loads((runs / name / "evals" / "test.json").read_text())
        assert (evaluated["accuracy"], evaluated["confusion"]) == (recorded["accuracy"], recorded["confusion"])
    capsys.readouterr()
    assert main(["predict", str(runs / "k1"), "--json", "free prize now call", "ok see you later"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["text"] for line in lines] == ["free prize now call", "ok see you later"]
    assert all(line["label"] in ("ham", "spam") and 0.5 <= line["probability"] <= 1 for line in lines)


def test_co_training_costs_the_jobs_a_frozen_run_costs(runs, tiny_bert, capsys):
    frozen, k1, full = (summary(runs / n) for n in ("k0", "k1", "all"))
    assert k1["quantum"]["jobs"] == frozen["quantum"]["jobs"] == full["quantum"]["jobs"]
    assert k1["requests"] == frozen["requests"]
    estimates = []
    for layers in ("0", "1"):
        assert main(["estimate", *args(tiny_bert, runs / "cache", "--set", f"embedding.train_layers={layers}")]) == 0
        estimates.append(capsys.readouterr().out)
    assert estimates[0] == estimates[1]
    whole_run = next(line for line in estimates[0].splitlines() if line.startswith("whole run"))
    assert whole_run.split()[-3] == str(frozen["quantum"]["jobs"])


def test_gradient_accumulation_takes_fewer_steps_for_the_same_jobs(runs, tiny_bert, tmp_path):
    run_dir = tmp_path / "accumulated"
    assert main(["run", *args(tiny_bert, runs / "cache", "--set", "embedding.train_layers=1",
                              "--set", "train.grad_accumulation=3", "--set", "train.warmup_ratio=0.2"),
                 "--run-dir", str(run_dir)]) == 0
    plain, accumulated = summary(runs / "k1"), summary(run_dir)
    batches = math.ceil(plain["split"]["train"] / 16)
    assert accumulated["timing"]["steps"] == 2 * math.ceil(batches / 3)
    assert accumulated["requests"]["train_batches"] == plain["requests"]["train_batches"] == 2 * batches
    assert accumulated["quantum"]["jobs"] == plain["quantum"]["jobs"]


def test_a_killed_co_trained_run_resumes_to_the_same_numbers(runs, tiny_bert, tmp_path):
    """Dropout draws from the RNG in every step: the checkpoint's RNG states make the resume exact."""
    co_trained = args(tiny_bert, runs / "cache", "--set", "embedding.train_layers=1")
    reference = tmp_path / "reference"      # uninterrupted, on the cache as the killed run finds it
    assert main(["run", *co_trained, "--run-dir", str(reference)]) == 0
    steps = summary(reference)["timing"]["steps"]
    killed = tmp_path / "killed"
    kill_after_checkpoint(co_trained, killed, random.Random().randrange(2, steps - 2), steps)
    assert main(["resume", "-q", str(killed)]) == 0
    assert_same_run(killed, reference)
    run = summary(killed)["run"]
    assert run["command"].startswith("orchestrate run") and run["finished_by"].startswith("orchestrate resume")
    best = [torch.load(d / "best.pt", weights_only=False)["model"] for d in (killed, reference)]
    assert all(torch.equal(best[0][k], best[1][k]) for k in best[1])


def test_layer_states_resume_from_the_shards_of_an_interrupted_embedding(ray_session, tiny_bert, tmp_path):
    """The shard that an interrupted run left is kept; the rest is embedded on Ray actors; the
    result equals an uninterrupted embedding of the same states."""
    from embeddings.stage import dataset_cache_key, embed_dataset
    from embeddings.store import EmbeddingStore, ShardPlan, write_shard
    from embeddings.models import resolve_model
    from orchestrator.config import load_config
    from orchestrator.data.datasets import load_dataset
    from workers.embedding import ray_pool_starter

    config = load_config(None, [f"embedding.model={tiny_bert}", "embedding.train_layers=1", "data.limit=120",
                                "embedding.shard_rows=40", "embedding.pooling=cls", "embedding.max_length=24",
                                f"embedding.cache_dir={tmp_path / 'resumed'}"])
    dataset = load_dataset(config.data)
    start_pool = ray_pool_starter(ray_session.get_runtime_context().gcs_address)
    uninterrupted = embed_dataset(dataset, config.embedding.model_copy(update={"cache_dir": str(tmp_path / "whole")}),
                                  start_pool=start_pool, progress=False)

    store = EmbeddingStore(config.embedding.cache_dir)
    key = dataset_cache_key(resolve_model(str(tiny_bert)), config.embedding, dataset.content_hash())
    assert key == uninterrupted.key
    store.prepare_parts(key, ShardPlan(rows=120, shard_rows=40))
    write_shard(store.shard_path(key, 1), key, 1, 40, uninterrupted.cache.content.rows(40, 80))
    resumed = embed_dataset(dataset, config.embedding, start_pool=start_pool, progress=False)
    assert (resumed.resumed_rows, resumed.encoded_rows) == (40, 80)
    assert resumed.cache.content.sha256() == uninterrupted.cache.content.sha256()
    assert not store.parts_dir(key).exists()
