"""Texts -> one vector each, with as little compute spent on padding as possible.

Texts are tokenized once, sorted by length, and cut into batches whose padded size
(rows x longest row) stays under a token budget: short texts travel in large batches, long ones
in small batches, and nearly every multiply-add lands on a real token. The batching depends only
on the texts given, so the same shard always gives the same batches and the same numbers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np
import torch

from embeddings.content import Content, LayerStates, Vectors
from orchestrator.core.errors import UserError

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class EncodeSettings:
    max_length: int = 128
    pooling: str = "cls"          # cls | pooler | mean
    dtype: str = "float32"        # compute dtype; vectors come back as float32
    batch_tokens: int = 2048      # padded tokens per forward pass
    device: str = "cpu"           # cpu | cuda | cuda:N
    train_layers: int = 0         # k > 0: the states below the top k layers, per text, instead of vectors


class EncoderSource(Protocol):
    """What a co-trained encoder reads, for the whole dataset: cached layer states (train_layers k,
    embeddings/content.py) or token ids (all)."""

    holds_token_ids: bool    # True: the whole encoder runs on them; False: only its top layers

    def __len__(self) -> int: ...

    def lengths_of(self, rows) -> np.ndarray:
        """Tokens of each of `rows`."""

    def padded(self, rows) -> tuple[torch.Tensor, torch.Tensor]:
        """The inputs of `rows`, padded to the longest, and their attention mask."""


@dataclass(frozen=True)
class TokenIds:
    """Every text's token ids (no padding) and the id that pads them: what full fine-tuning reads."""

    ids: list
    pad_id: int

    holds_token_ids = True

    def __len__(self) -> int:
        return len(self.ids)

    def lengths_of(self, rows) -> np.ndarray:
        return np.array([len(self.ids[r]) for r in rows])

    def padded(self, rows) -> tuple[torch.Tensor, torch.Tensor]:
        return pad_batch([self.ids[r] for r in rows], self.pad_id)


def tokenize_texts(model_path: str, texts: Sequence[str], max_length: int) -> TokenIds:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    return TokenIds(ids=token_ids(tokenizer, texts, max_length), pad_id=tokenizer.pad_token_id or 0)


def token_ids(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Each text's ids, truncated to max_length, unpadded (batches are padded when they are cut)."""
    return tokenizer(list(texts), truncation=True, max_length=max_length, padding=False,
                     return_attention_mask=False, return_token_type_ids=False)["input_ids"]


def plan_batches(lengths: Sequence[int], batch_tokens: int) -> list[np.ndarray]:
    """Split row indices into length-sorted batches with rows * longest <= batch_tokens.

    A single row longer than the budget still gets a batch of its own.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(lengths, kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    for end in range(1, len(order) + 1):
        # rows are ascending in length, so the row just added is the longest of the batch
        if end - start > 1 and (end - start) * lengths[order[end - 1]] > batch_tokens:
            batches.append(order[start:end - 1])
            start = end - 1
    if start < len(order):
        batches.append(order[start:])
    return batches


def pad_batch(token_ids: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(len(t) for t in token_ids)
    ids = np.full((len(token_ids), longest), pad_id, dtype=np.int64)
    mask = np.zeros((len(token_ids), longest), dtype=np.int64)
    for row, tokens in enumerate(token_ids):
        ids[row, :len(tokens)] = tokens
        mask[row, :len(tokens)] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


def pool(last_hidden: torch.Tensor, mask: torch.Tensor, pooler_output: torch.Tensor | None, pooling: str) -> torch.Tensor:
    if pooling == "cls":
        return last_hidden[:, 0]
    if pooling == "pooler":
        return pooler_output
    if pooling == "mean":
        weights = mask.unsqueeze(-1).to(last_hidden.dtype)
        return (last_hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
    raise ValueError(f"unknown pooling {pooling!r}")


class Encoder:
    """A frozen encoder on one device: load once, then `encode(texts)` as often as needed."""

    def __init__(self, model_path: str, settings: EncodeSettings, threads: int | None = None):
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        if threads:
            torch.set_num_threads(threads)
        self.settings = settings
        self.device = torch.device(settings.device)
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.model, info = AutoModel.from_pretrained(model_path, output_loading_info=True,
                                                     dtype=TORCH_DTYPES[settings.dtype])
        if settings.pooling == "pooler" and not settings.train_layers:
            if getattr(self.model, "pooler", None) is None or any("pooler" in k for k in info.get("missing_keys", [])):
                raise UserError(f"model {model_path} has no trained pooler layer; use pooling 'cls' or 'mean'")
        self.model.eval().to(self.device)
        if settings.train_layers:
            self.layer_boundary = keep_bottom_layers(self.model, settings.train_layers, model_path)
        elif settings.pooling == "cls" and FirstTokenOutputLayer.fits(self.model):
            layers = self.model.encoder.layer
            layers[-1] = FirstTokenOutputLayer(layers[-1])
        self.hidden_size = int(self.model.config.hidden_size)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return token_ids(self.tokenizer, texts, self.settings.max_length)

    def content(self, texts: Sequence[str]) -> Content:
        """What the cache keeps of `texts` with these settings: their vectors, or with
        train_layers = k their layer states."""
        if self.settings.train_layers:
            return self.encode_states(texts)
        return Vectors(self.encode(texts))

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One float32 vector per text, in the order given."""
        if not texts:
            return np.zeros((0, self.hidden_size), dtype=np.float32)
        token_ids = self.tokenize(texts)
        on_gpu = self.device.type == "cuda"
        out = torch.empty((len(texts), self.hidden_size), dtype=torch.float32, device=self.device)
        for rows in plan_batches([len(t) for t in token_ids], self.settings.batch_tokens):
            ids, mask = pad_batch([token_ids[r] for r in rows], self.pad_id)
            if on_gpu:
                ids, mask = ids.pin_memory().to(self.device, non_blocking=True), mask.pin_memory().to(self.device, non_blocking=True)
            output = self.model(input_ids=ids, attention_mask=mask)
            pooled = pool(output.last_hidden_state, mask, getattr(output, "pooler_output", None), self.settings.pooling)
            out[torch.from_numpy(rows).to(self.device)] = pooled.float()
        return out.cpu().numpy()

    @torch.inference_mode()
    def encode_states(self, texts: Sequence[str]) -> LayerStates:
        """The hidden states after layer L - k of every text (train_layers = k), without padding,
        in the compute dtype: what the top k layers train on."""
        if not self.settings.train_layers:
            raise ValueError("encode_states needs EncodeSettings.train_layers > 0")
        token_ids = self.tokenize(texts)
        per_text: list = [None] * len(texts)
        for rows in plan_batches([len(t) for t in token_ids], self.settings.batch_tokens):
            ids, mask = pad_batch([token_ids[r] for r in rows], self.pad_id)
            states = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).last_hidden_state
            for row, text_states in zip(rows, states.float().cpu().numpy()):
                per_text[row] = text_states[:len(token_ids[row])]
        return LayerStates.from_texts(per_text, self.settings.dtype, self.hidden_size)


def keep_bottom_layers(model: torch.nn.Module, train_layers: int, model_path: str) -> int:
    """Drop the top `train_layers` layers (and the pooler): the model then computes the states
    after layer L - k. Returns L - k."""
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise UserError(f"model {model_path} has no encoder.layer list: embedding.train_layers needs a "
                        f"BERT-family encoder")
    if train_layers > len(layers):
        raise UserError(f"embedding.train_layers is {train_layers} but model {model_path} has {len(layers)} layers")
    model.encoder.layer = torch.nn.ModuleList(list(layers)[:len(layers) - train_layers])
    if getattr(model, "pooler", None) is not None:
        model.pooler = None
    return len(layers) - train_layers


class FirstTokenOutputLayer(torch.nn.Module):
    """The last BERT layer, computed for the [CLS] position only.

    Pooling 'cls' reads one position of the last layer, yet a full layer spends ~5/6 of its work
    (query, output projection, feed-forward) on positions nobody reads. This computes keys and
    values for every token and everything else for the first token: the same numbers, about 14 %
    less work for a 6-layer encoder. It returns hidden states of length 1.
    """

    def __init__(self, layer: torch.nn.Module):
        super().__init__()
        self.layer = layer

    @staticmethod
    def fits(model: torch.nn.Module) -> bool:
        layers = getattr(getattr(model, "encoder", None), "layer", None)
        if not layers:
            return False
        last = layers[-1]
        attention = getattr(getattr(last, "attention", None), "self", None)
        return (all(hasattr(attention, a) for a in ("query", "key", "value", "num_attention_heads", "attention_head_size"))
                and hasattr(last.attention, "output") and hasattr(last, "feed_forward_chunk")
                and not getattr(model.config, "is_decoder", False))

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, *args, **kwargs):
        attention = self.layer.attention.self
        batch, length, _ = hidden_states.shape
        heads, head_size = attention.num_attention_heads, attention.attention_head_size
        first = hidden_states[:, :1]
        query = attention.query(first).view(batch, 1, heads, head_size).transpose(1, 2)
        key = attention.key(hidden_states).view(batch, length, heads, head_size).transpose(1, 2)
        value = attention.value(hidden_states).view(batch, length, heads, head_size).transpose(1, 2)
        if attention_mask is not None and attention_mask.dim() == 4:
            attention_mask = attention_mask[:, :, :1, :]
        context = torch.nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, scale=getattr(attention, "scaling", None))
        context = context.transpose(1, 2).reshape(batch, 1, heads * head_size)
        attended = self.layer.attention.output(context, first)
        return self.layer.feed_forward_chunk(attended)
