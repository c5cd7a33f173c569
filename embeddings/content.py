"""What a cache file or a shard holds: one class per kind of content, each with its own methods.

    Vectors       one float32 vector per text (embedding.train_layers 0: a frozen encoder)
    LayerStates   every text's hidden states below the top k layers, ragged (train_layers k)

Both answer the same calls, so the store never asks which one it holds: `len`, `dims`,
`sha256()` (the checksum a manifest records), `rows(start, stop)` (a shard's part),
`concatenate(parts)`, `write(h5file)`, `describe()`; `read_content(h5file)` finds the class a file
holds by its datasets. Layer states also feed a co-trained encoder: `lengths_of(rows)` and
`padded(rows)`, as token ids do (embeddings/encode.py: the `EncoderSource` protocol).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence, Union

import h5py
import numpy as np
import torch

from embeddings.layers import pad_states

# numpy has no bfloat16: its values are stored as their 16 raw bits (the top half of a float32)
STORED_DTYPES = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2"), "bfloat16": np.dtype("<u2")}


@dataclass(frozen=True, eq=False)
class Vectors:
    """(rows, dims) float32: one vector per text, in dataset order."""

    array: np.ndarray

    DATASET = "vectors"     # the HDF5 dataset that holds them

    def __post_init__(self) -> None:
        object.__setattr__(self, "array", np.ascontiguousarray(self.array, dtype=np.float32))

    def __len__(self) -> int:
        return int(self.array.shape[0])

    @property
    def dims(self) -> int:
        return int(self.array.shape[1]) if self.array.ndim == 2 else 0

    @property
    def nbytes(self) -> int:
        return int(self.array.nbytes)

    def sha256(self) -> str:
        return hashlib.sha256(np.ascontiguousarray(self.array, dtype="<f4").tobytes()).hexdigest()

    def rows(self, start: int, stop: int) -> "Vectors":
        return Vectors(self.array[start:stop])

    @classmethod
    def concatenate(cls, parts: Sequence["Vectors"]) -> "Vectors":
        return cls(np.concatenate([p.array for p in parts]))

    def write(self, f: h5py.File) -> None:
        f.create_dataset(self.DATASET, data=self.array, chunks=True if self.array.size else None)

    @classmethod
    def read(cls, f: h5py.File) -> "Vectors":
        return cls(f[cls.DATASET][()])

    def describe(self, file_bytes: int) -> str:
        return f"dims {self.dims}"


@dataclass(frozen=True, eq=False)
class LayerStates:
    """Hidden states of many texts, ragged: every text's tokens one after another, no padding."""

    states: np.ndarray       # (total tokens, hidden), STORED_DTYPES[dtype]
    lengths: np.ndarray      # (texts,) int64: tokens per text
    dtype: str = "float32"   # the compute dtype the states were made in

    DATASET = "states"
    holds_token_ids = False  # a co-trained encoder runs its top layers on these (EncoderSource)

    @classmethod
    def from_texts(cls, per_text: list, dtype: str, hidden: int) -> "LayerStates":
        """From one (tokens, hidden) float32 array per text."""
        lengths = np.array([len(t) for t in per_text], dtype=np.int64)
        flat = np.concatenate(per_text) if per_text else np.zeros((0, hidden), np.float32)
        return cls(states=to_stored(flat, dtype), lengths=lengths, dtype=dtype)

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def dims(self) -> int:
        return int(self.states.shape[1])

    @property
    def nbytes(self) -> int:
        return int(self.states.nbytes + self.lengths.nbytes)

    def sha256(self) -> str:
        digest = hashlib.sha256(np.ascontiguousarray(self.lengths, dtype="<i8").tobytes())
        digest.update(np.ascontiguousarray(self.states).tobytes())
        return digest.hexdigest()

    def rows(self, start: int, stop: int) -> "LayerStates":
        offsets = self.offsets()
        return LayerStates(states=self.states[offsets[start]:offsets[stop]], lengths=self.lengths[start:stop],
                           dtype=self.dtype)

    @classmethod
    def concatenate(cls, parts: Sequence["LayerStates"]) -> "LayerStates":
        return cls(states=np.concatenate([p.states for p in parts]),
                   lengths=np.concatenate([p.lengths for p in parts]), dtype=parts[0].dtype)

    def write(self, f: h5py.File) -> None:
        f.create_dataset(self.DATASET, data=self.states, chunks=True if self.states.size else None)
        f.create_dataset("lengths", data=self.lengths)
        f.attrs["states_dtype"] = self.dtype

    @classmethod
    def read(cls, f: h5py.File) -> "LayerStates":
        return cls(states=f[cls.DATASET][()], lengths=f["lengths"][()].astype(np.int64),
                   dtype=str(f.attrs["states_dtype"]))

    def describe(self, file_bytes: int) -> str:
        return f"dims {self.dims}  layer states: {int(self.lengths.sum())} tokens, {file_bytes / 2**20:.0f} MiB"

    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.lengths)])

    def text_states(self, rows) -> list[np.ndarray]:
        """The float32 (tokens, hidden) states of each of `rows`."""
        offsets = self.offsets()
        return [from_stored(self.states[offsets[r]:offsets[r + 1]], self.dtype) for r in rows]

    # --- what a co-trained encoder reads (EncoderSource) ------------------------------------------

    def lengths_of(self, rows) -> np.ndarray:
        return self.lengths[np.asarray(rows)]

    def padded(self, rows) -> tuple[torch.Tensor, torch.Tensor]:
        """The states of `rows`, padded to the longest, and their attention mask."""
        return pad_states(self.text_states(rows))


Content = Union[Vectors, LayerStates]
CONTENTS: tuple[type, ...] = (Vectors, LayerStates)


def read_content(f: h5py.File) -> Content:
    """The content of a cache or shard file, of the class whose dataset it holds."""
    for kind in CONTENTS:
        if kind.DATASET in f:
            return kind.read(f)
    raise KeyError(f"holds none of the datasets {', '.join(kind.DATASET for kind in CONTENTS)}")


def to_stored(states: np.ndarray, dtype: str) -> np.ndarray:
    states = np.ascontiguousarray(states, dtype=np.float32)
    if dtype == "bfloat16":
        return (states.view(np.uint32) >> 16).astype("<u2")   # exact: the values were computed in bfloat16
    return states.astype(STORED_DTYPES[dtype])


def from_stored(states: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bfloat16":
        return (states.astype(np.uint32) << 16).view(np.float32)
    return states.astype(np.float32, copy=False)
