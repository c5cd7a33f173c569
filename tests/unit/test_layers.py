"""An encoder split at a layer boundary (embeddings/layers.py) on a tiny random BERT: cached
layer-(L-k) states through the top k layers give the whole model's output, and gradients reach
the trainable layers only."""
import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel

from embeddings.encode import pool
from embeddings.layers import TopLayers, freeze_below, layer_states, pad_states

LAYERS = 3


@pytest.fixture()
def model():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=LAYERS, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64)
    return BertModel(config, add_pooling_layer=False).eval()


def padded_batch():
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 60, (4, 11), generator=generator)
    mask = torch.ones(4, 11, dtype=torch.long)
    for row, length in enumerate((11, 7, 3, 9)):
        mask[row, length:] = 0
    return ids, mask


@pytest.mark.parametrize("k", [1, 2, LAYERS])
def test_cached_states_through_the_top_layers_equal_the_whole_model(model, k):
    ids, mask = padded_batch()
    with torch.no_grad():
        whole = model(input_ids=ids, attention_mask=mask).last_hidden_state
    states = layer_states(model, ids, mask, k)
    assert [len(s) for s in states] == [11, 7, 3, 9]                    # stored without padding
    batch, batch_mask = pad_states(states[1:3])                          # re-batched: other padding
    with torch.no_grad():
        top = TopLayers(model, k)(batch, batch_mask)
    for row, original in ((0, 1), (1, 2)):
        length = int(batch_mask[row].sum())
        np.testing.assert_allclose(top[row, :length].numpy(), whole[original, :length].numpy(), atol=1e-5)
    pooled = pool(top, batch_mask, None, "mean")
    expected = pool(whole[1:3], mask[1:3], None, "mean")
    np.testing.assert_allclose(pooled.numpy(), expected.numpy(), atol=1e-5)


def test_gradients_reach_the_top_layers_and_not_the_frozen_ones(model):
    freeze_below(model, 1)
    top = TopLayers(model, 1).train()
    ids, mask = padded_batch()
    batch, batch_mask = pad_states(layer_states(model, ids, mask, 1))
    pool(top(batch, batch_mask), batch_mask, None, "mean").sum().backward()
    trainable = list(model.encoder.layer[-1].parameters())
    assert trainable and all(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)
    frozen = list(model.embeddings.parameters()) + list(model.encoder.layer[0].parameters())
    assert all(p.grad is None and not p.requires_grad for p in frozen)


def test_the_top_shares_the_models_weights_and_refuses_impossible_splits(model):
    top = TopLayers(model, 2)
    assert top.top.encoder.layer[0] is model.encoder.layer[LAYERS - 2]
    assert len(model.encoder.layer) == LAYERS and not isinstance(model.embeddings, type(top.top.embeddings))
    with pytest.raises(ValueError, match="1 to 3"):
        TopLayers(model, 4)


def test_a_saved_model_with_a_pooler_splits_too(tiny_bert):
    """A hub-style folder (safetensors, a trained pooler), loaded as the encoder loads it."""
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(tiny_bert).eval()
    tokens = AutoTokenizer.from_pretrained(tiny_bert)(["free prize now", "ok see you later", "win"],
                                                       padding=True, return_tensors="pt")
    with torch.no_grad():
        whole = model(**tokens).last_hidden_state
    for k in (1, 2):
        batch, mask = pad_states(layer_states(model, tokens["input_ids"], tokens["attention_mask"], k))
        with torch.no_grad():
            top = TopLayers(model, k)(batch, mask)
        assert model.pooler is not None                                  # the model itself is untouched
        np.testing.assert_allclose((top * mask[..., None]).numpy(), (whole * mask[..., None]).numpy(), atol=1e-5)
