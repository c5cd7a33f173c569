"""What maps a split's rows to logits: one seam for a frozen and a co-trained encoder, and one
`build_model` for training, eval and predict.

    frozen (train_layers 0)      cached vectors, standardised ........................ -> HybridHead
    co-trained (k | all)         layer states or token ids -> trainable layers -> pooling
                                 -> standardisation .................................. -> HybridHead

`run_encoder(config)` is the one place that tells the two apart. Everything else asks what it
returns, the split inputs it makes and the model `build_model` puts together:

    RunEncoder   fit(content, labels, split), inputs(content, rows, ...), text_inputs(texts, ...),
                 in_front_of(head, ...), parameter_groups, threads, trainable_parameters
    SplitInputs  len, y, batch(rows): Features (training/features.py) or EncoderInputs (encoder.py)
    a model      logits(batch), split_logits(split): HybridHead itself, or EncoderHead around it
"""
from __future__ import annotations

import contextlib
from typing import Protocol

import numpy as np
import torch
from torch import nn

from orchestrator.config import Config, TrainConfig
from orchestrator.quantum.model import HybridHead, one_torch_thread
from orchestrator.training.encoder import CoTrainedEncoder
from orchestrator.training.features import Features, FittedInputs, Standardiser


class SplitInputs(Protocol):
    """One split's inputs, whatever the encoder: labels, a length, and the batch of any rows."""

    y: torch.Tensor          # (rows,) int64

    def __len__(self) -> int: ...

    def batch(self, rows: np.ndarray):
        """What the model's `logits` takes for `rows` (positions in this split)."""


class RunEncoder(Protocol):
    """The encoder as a run sees it (see the module doc)."""

    def threads(self) -> contextlib.AbstractContextManager:
        """The torch threads a run with this encoder wants, for the block."""

    def fit(self, content, labels: np.ndarray, split) -> FittedInputs:
        """The standardiser and the train, val and test inputs of a run on `content`."""

    def inputs(self, content, rows: np.ndarray, labels: np.ndarray, standardiser: Standardiser) -> SplitInputs:
        """Rows of a prepared dataset, as the model reads them (eval)."""

    def text_inputs(self, texts: list[str], standardiser: Standardiser) -> SplitInputs:
        """New texts, encoded in this process (predict)."""

    def in_front_of(self, head: HybridHead, standardiser: Standardiser, trains_inputs: bool) -> nn.Module:
        """The model: `head` alone, or behind the trainable encoder."""

    def parameter_groups(self, model: nn.Module, t: TrainConfig) -> list[dict]:
        """The optimizer's parameter groups, with their learning rates and weight decay."""

    def trainable_parameters(self, model: nn.Module) -> int:
        """Parameters of the encoder that train (0 when frozen)."""


class FrozenEncoder:
    """The RunEncoder of embedding.train_layers 0: the encoder's vectors were computed once and
    cached; the head trains on them, standardised with the train split's mean and std."""

    def __init__(self, config: Config) -> None:
        self.embedding = config.embedding

    def threads(self) -> contextlib.AbstractContextManager:
        return one_torch_thread()     # the simulator wants the cores (quantum/model.py)

    def inputs(self, content, rows: np.ndarray, labels: np.ndarray, standardiser: Standardiser) -> Features:
        return standardiser.apply(content.array[rows], labels[rows])

    def fit(self, content, labels: np.ndarray, split) -> FittedInputs:
        standardiser = Standardiser.fit(content.array[split.train])
        splits = tuple(self.inputs(content, rows, labels, standardiser) for rows in (split.train, split.val, split.test))
        return FittedInputs(standardiser=standardiser, splits=splits, baseline_features=splits)

    def text_inputs(self, texts: list[str], standardiser: Standardiser) -> Features:
        """The texts' vectors from the run's encoder settings (no Ray, no cache): a text gets the
        vector it would have had in the training set."""
        from embeddings.encode import Encoder
        from embeddings.models import resolve_model
        from embeddings.stage import encode_settings, with_model_pooling

        model = resolve_model(self.embedding.model, self.embedding.revision)
        cfg = with_model_pooling(self.embedding, model)   # a run's config.yaml records it concrete already
        device = "cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()) else "cpu"
        return standardiser.apply(Encoder(model.path, encode_settings(cfg, device)).encode(texts))

    def in_front_of(self, head: HybridHead, standardiser: Standardiser, trains_inputs: bool) -> HybridHead:
        return head

    def parameter_groups(self, model: nn.Module, t: TrainConfig) -> list[dict]:
        return [{"params": list(model.parameters()), "lr": t.lr, "weight_decay": t.weight_decay}]

    def trainable_parameters(self, model: nn.Module) -> int:
        return 0


def run_encoder(config: Config) -> RunEncoder:
    """The encoder of a run: frozen (cached vectors) or co-trained (embedding.train_layers k | all;
    loads the encoder)."""
    return FrozenEncoder(config) if config.embedding.train_layers == 0 else CoTrainedEncoder(config)


def build_model(runner, standardiser: Standardiser, n_classes: int, encoder: RunEncoder) -> nn.Module:
    """The hybrid head on `runner` (which evaluates its circuits), behind the encoder when it trains.
    A gradient method that measures no input gradient (parameter-shift-weights) leaves the pre-net
    and everything below it as they are."""
    head = HybridHead(len(standardiser.mean), n_classes, runner)
    trains_inputs = runner.gradient.trains_inputs
    if not trains_inputs:
        head.pre.requires_grad_(False)
    return encoder.in_front_of(head, standardiser, trains_inputs)
