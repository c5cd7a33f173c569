"""A co-trained encoder in front of the hybrid head: `embedding.train_layers: k | all`.

    train_layers = k    the bottom L - k layers are frozen and their output is cached (ragged layer
                        states, embeddings/content.py); training runs the top k layers over it
    train_layers = all  full fine-tuning: the whole encoder trains on the token ids

Either way the model maps a batch of inputs to logits as

    trainable layers -> pooling -> standardisation -> HybridHead   (one job per mini-batch)

and the quantum layer's parameter-shift Jacobian with respect to its input angles flows back
through the pre-net into the trainable layers. The standardisation is fixed: the mean and std of
the train split's vectors under the encoder as loaded (before any step), so step 0 of a co-trained
run sees what a frozen run sees. Those vectors also feed the classical baselines: they are the
frozen encoder's, the reference a co-trained head has to beat.

Only the trainable layers are parameters of the model (the frozen ones are not in its state dict,
so checkpoints hold the trained layers and the head only). Evaluation runs the encoder over
length-sorted chunks without gradients and the head once: one values-only job per split.
"""
from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from typing import Union

import numpy as np
import torch
from torch import nn

from embeddings.encode import EncoderSource, plan_batches, pool, tokenize_texts
from embeddings.layers import TopLayers, freeze_below
from embeddings.models import resolve_model
from orchestrator.config import Config
from orchestrator.training.features import FittedInputs, Standardiser

log = logging.getLogger(__name__)

EVAL_BATCH_TOKENS = 8192     # padded tokens per chunk when the encoder runs without gradients

@dataclass(frozen=True)
class EncoderBatch:
    """A padded batch for the trainable encoder: layer states or token ids, and their mask."""

    inputs: torch.Tensor
    mask: torch.Tensor
    tokens: bool             # token ids (the whole encoder runs) or layer states (its top layers)


@dataclass(frozen=True)
class EncoderInputs:
    """One split's rows for the trainable encoder: its labels and where its inputs are (the
    SplitInputs of a co-trained encoder, training/model.py)."""

    source: EncoderSource    # the whole dataset's: LayerStates or TokenIds
    rows: np.ndarray         # this split's rows of the dataset
    y: torch.Tensor          # (rows,) int64

    def __len__(self) -> int:
        return len(self.rows)

    def lengths(self) -> np.ndarray:
        return self.source.lengths_of(self.rows)

    def batch(self, rows) -> EncoderBatch:
        """The padded inputs of `rows` (positions in this split) and their attention mask."""
        inputs, mask = self.source.padded(self.rows[np.asarray(rows)])
        return EncoderBatch(inputs, mask, tokens=self.source.holds_token_ids)


class TrainableEncoder(nn.Module):
    """Padded inputs -> pooled vectors through the trainable layers of a BERT-family encoder."""

    def __init__(self, model: nn.Module, train_layers: Union[int, str], pooling: str) -> None:
        super().__init__()
        self.pooling, self.train_layers = pooling, train_layers
        self.hidden_size = int(model.config.hidden_size)
        if train_layers == "all":
            self.layers = None
            self.model = model                           # every parameter trains
        else:
            freeze_below(model, train_layers)
            self.layers = TopLayers(model, train_layers)  # the top k only: the frozen layers are not ours
            self.__dict__["whole"] = model                # unregistered: for texts, not cached states
        self.pooler = model.pooler if pooling == "pooler" else None
        if self.pooler is not None:
            self.pooler.requires_grad_(True)

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor, tokens: bool) -> torch.Tensor:
        if tokens:
            whole = self.model if self.layers is None else self.whole
            hidden = whole(input_ids=inputs, attention_mask=mask).last_hidden_state
        else:
            hidden = self.layers(inputs, mask)
        return pool(hidden, mask, self.pooler(hidden) if self.pooler is not None else None, self.pooling)

    def train(self, mode: bool = True) -> "TrainableEncoder":
        super().train(mode)
        if self.layers is not None:
            self.whole.train(mode)       # its frozen bottom runs on texts (predict): no dropout there either
        return self


class EncoderHead(nn.Module):
    """Inputs -> logits: the trainable encoder, the fixed standardisation, the hybrid head."""

    def __init__(self, encoder: TrainableEncoder, head: nn.Module, standardiser: Standardiser,
                 device: torch.device, bfloat16: bool) -> None:
        super().__init__()
        self.encoder = encoder.to(device)
        if encoder.layers is not None:
            encoder.whole.to(device)
        self.head = head
        self.device, self.bfloat16 = device, bfloat16
        self.register_buffer("mean", torch.tensor(standardiser.mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(standardiser.std, dtype=torch.float32), persistent=False)

    def pooled(self, batch: EncoderBatch) -> torch.Tensor:
        """Float32 pooled vectors on the CPU (where the head and the runner are)."""
        inputs, mask = batch.inputs.to(self.device), batch.mask.to(self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bfloat16):
            pooled = self.encoder(inputs, mask, batch.tokens)
        return pooled.float().cpu()

    def forward(self, batch: EncoderBatch) -> torch.Tensor:
        return self.head((self.pooled(batch) - self.mean) / self.std)

    def logits(self, batch: EncoderBatch) -> torch.Tensor:
        return self(batch)

    def split_logits(self, inputs: EncoderInputs) -> torch.Tensor:
        """Logits of a whole split: the encoder over length-sorted chunks, then the head once
        (one values-only request). Call it without gradients."""
        vectors = pooled_vectors(self, inputs)
        return self.head((torch.from_numpy(vectors) - self.mean) / self.std)


def pooled_vectors(model: EncoderHead, inputs: EncoderInputs) -> np.ndarray:
    """(rows, hidden) float32 pooled vectors of a split, in its order, without gradients."""
    out = np.zeros((len(inputs), model.encoder.hidden_size), dtype=np.float32)
    with torch.no_grad():
        for chunk in plan_batches(inputs.lengths(), EVAL_BATCH_TOKENS):
            out[chunk] = model.pooled(inputs.batch(chunk)).numpy()
    return out


class CoTrainedEncoder:
    """The RunEncoder (training/model.py) of embedding.train_layers k | all: the configured encoder
    as loaded, cut at train_layers, trains in front of the head."""

    def __init__(self, config: Config) -> None:
        e, precision = config.embedding, config.train.precision
        resolved = resolve_model(e.model, e.revision)
        self.device = encoder_device(e.device)
        self.bfloat16 = precision == "bfloat16" or (precision == "auto" and self.device.type == "cuda")
        self.encoder = TrainableEncoder(load_encoder(resolved.path), e.train_layers, resolved.pooling(e.pooling))
        self.model_path, self.max_length, self.train_layers = resolved.path, e.max_length, e.train_layers

    def threads(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()     # an encoder on the CPU wants every core

    def inputs(self, content: EncoderSource, rows: np.ndarray, labels: np.ndarray,
               standardiser: Standardiser | None = None) -> EncoderInputs:
        """Rows of the dataset whose layer states or token ids are `content` (the standardisation is
        the model's own)."""
        return EncoderInputs(source=content, rows=np.asarray(rows), y=torch.from_numpy(labels[rows].astype(np.int64)))

    def fit(self, content: EncoderSource, labels: np.ndarray, split) -> FittedInputs:
        """The splits' inputs, standardised with the vectors the encoder gives as loaded (the
        baselines' features too)."""
        parts = (split.train, split.val, split.test)
        splits = tuple(self.inputs(content, rows, labels) for rows in parts)
        unscaled = Standardiser(mean=np.zeros(1), std=np.ones(1))
        probe = EncoderHead(self.encoder, nn.Identity(), unscaled, self.device, self.bfloat16).eval()
        vectors = [pooled_vectors(probe, inputs) for inputs in splits]
        probe.train()
        standardiser = Standardiser.fit(vectors[0])
        baseline = tuple(standardiser.apply(v, labels[rows]) for v, rows in zip(vectors, parts))
        log.info(f"encoder: {trainable_parameters(self.encoder):,} trainable parameters (train_layers "
                 f"{self.train_layers}) on {self.device.type}" + (" with bfloat16 autocast" if self.bfloat16 else ""))
        return FittedInputs(standardiser=standardiser, splits=splits, baseline_features=baseline)

    def text_inputs(self, texts: list[str], standardiser: Standardiser) -> EncoderInputs:
        """New texts (predict): their token ids, on which the whole encoder runs with its trained layers."""
        tokens = tokenize_texts(self.model_path, texts, self.max_length)
        return EncoderInputs(source=tokens, rows=np.arange(len(texts)), y=torch.zeros(len(texts), dtype=torch.long))

    def in_front_of(self, head: nn.Module, standardiser: Standardiser, trains_inputs: bool) -> EncoderHead:
        if not trains_inputs:
            self.encoder.requires_grad_(False)   # the head's input gradient is not measured: nothing below it learns
        return EncoderHead(self.encoder, head, standardiser, self.device, self.bfloat16)

    def parameter_groups(self, model: EncoderHead, t) -> list[dict]:
        return parameter_groups(model, t.lr, t.weight_decay, t.encoder_lr, t.encoder_weight_decay)

    def trainable_parameters(self, model: EncoderHead) -> int:
        return trainable_parameters(model.encoder)


def load_encoder(path: str) -> nn.Module:
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    model = AutoModel.from_pretrained(path, dtype=torch.float32)
    return model.train()     # dropout on, as Hugging Face fine-tuning has it


def encoder_device(configured: str) -> torch.device:
    if configured != "cpu" and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def trainable_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def parameter_groups(model: EncoderHead, lr: float, weight_decay: float, encoder_lr: float,
                     encoder_weight_decay: float) -> list[dict]:
    """The head and the encoder learn at their own rates (the encoder's Hugging Face-like, small);
    as in Hugging Face's Trainer, the encoder's biases and LayerNorm weights are not decayed."""
    trainable = [(name, p) for name, p in model.encoder.named_parameters() if p.requires_grad]
    decayed = [p for name, p in trainable if not no_decay(name)]
    not_decayed = [p for name, p in trainable if no_decay(name)]
    head = [p for p in model.head.parameters() if p.requires_grad]
    return [{"params": head, "lr": lr, "weight_decay": weight_decay, "name": "head"},
            {"params": decayed, "lr": encoder_lr, "weight_decay": encoder_weight_decay, "name": "encoder"},
            {"params": not_decayed, "lr": encoder_lr, "weight_decay": 0.0, "name": "encoder (no decay)"}]


def no_decay(parameter_name: str) -> bool:
    return parameter_name.endswith("bias") or "LayerNorm" in parameter_name or "layer_norm" in parameter_name


def steps_per_epoch(rows: int, batch_size: int, grad_accumulation: int) -> int:
    return math.ceil(math.ceil(rows / batch_size) / grad_accumulation)
