"""An encoder split at a layer boundary, so that its top layers can be trained with the head.

With `train_layers = k`, the bottom L - k layers of an L-layer encoder stay frozen: their output
(token-level hidden states, one array per text, no padding) is computed once and cached like the
vectors are, and training runs only the top k layers, the pooling and the head on those states.

    layer_states(model, input_ids, attention_mask, k)   hidden states after layer L - k, per text
    TopLayers(model, k)(states, attention_mask)         the last hidden states, through the top k
                                                        layers (the model's own modules, shared)
    pad_states(states)                                  a batch of ragged states, padded, with its mask

The top reuses the model's own forward with the embeddings passed through, so attention masks
are built exactly as the model builds them: the top k layers over cached states give what the
whole model gives (tests/test_layers.py).
"""
from __future__ import annotations

import copy
from typing import Sequence

import numpy as np
import torch
from torch import nn


class PassThroughEmbeddings(nn.Module):
    """Stands in for the embedding layer: hands the cached hidden states on unchanged."""

    def forward(self, input_ids=None, token_type_ids=None, position_ids=None, inputs_embeds=None, **kwargs):
        return inputs_embeds


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(f"{type(model).__name__} has no encoder.layer list: not a BERT-family encoder")
    return layers


class TopLayers(nn.Module):
    """The top `k` encoder layers of `model`, run on the hidden states after its layer L - k."""

    def __init__(self, model: nn.Module, k: int) -> None:
        super().__init__()
        layers = encoder_layers(model)
        if not 1 <= k <= len(layers):
            raise ValueError(f"train_layers must be 1 to {len(layers)} for this model, not {k}")
        top = copy.copy(model)                       # a new module tree over the same layer objects
        top._modules = dict(model._modules)
        top._modules["embeddings"] = PassThroughEmbeddings()
        encoder = copy.copy(model.encoder)
        encoder._modules = dict(model.encoder._modules)
        encoder._modules["layer"] = nn.ModuleList(list(layers)[len(layers) - k:])
        top._modules["encoder"] = encoder
        if "pooler" in top._modules:
            top._modules["pooler"] = None            # pooling is the project's own (embeddings/encode.py)
        self.top = top

    def forward(self, states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(batch, tokens, hidden) states and their (batch, tokens) mask -> the last hidden states."""
        return self.top(inputs_embeds=states, attention_mask=attention_mask).last_hidden_state


def freeze_below(model: nn.Module, k: int) -> None:
    """Only the top `k` encoder layers train: the embeddings and the layers below them are frozen."""
    layers = encoder_layers(model)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for layer in list(layers)[len(layers) - k:]:
        for parameter in layer.parameters():
            parameter.requires_grad_(True)


@torch.inference_mode()
def layer_states(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, k: int,
                 dtype: np.dtype = np.float32) -> list[np.ndarray]:
    """The hidden states after layer L - k of every text of a padded batch, each (its tokens, hidden),
    without its padding: what the cache stores for `train_layers = k`."""
    layers = encoder_layers(model)
    output = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
    states = output.hidden_states[len(layers) - k]
    lengths = attention_mask.sum(dim=1).tolist()
    return [states[i, :n].float().cpu().numpy().astype(dtype, copy=False) for i, n in enumerate(lengths)]


def pad_states(states: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Ragged (tokens_i, hidden) arrays -> a (batch, longest, hidden) float tensor and its mask."""
    longest, hidden = max(len(s) for s in states), states[0].shape[1]
    batch = torch.zeros((len(states), longest, hidden), dtype=torch.float32)
    mask = torch.zeros((len(states), longest), dtype=torch.long)
    for i, text in enumerate(states):
        batch[i, :len(text)] = torch.from_numpy(np.asarray(text, dtype=np.float32))
        mask[i, :len(text)] = 1
    return batch, mask
