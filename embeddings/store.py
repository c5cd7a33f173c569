"""The content-addressed HDF5 cache of embeddings.

Layout under `<cache_dir>/embeddings/`:

    <key>.h5                 the finished cache: `vectors` (rows x dims, float32), `labels`, and a
                             JSON manifest attribute; it appears only complete (temp file + rename).
                             A cache of layer states (embedding.train_layers = k) holds `states`
                             (every text's tokens one after another, tokens x hidden, in the compute
                             dtype) and `lengths` (tokens per text) instead of `vectors`
    <key>.lock               held by the process that embeds <key>; another one waits for it
    <key>.parts/plan.json    while embedding: how the rows are cut into shards
    <key>.parts/shard-NNNNN.h5   one finished shard each, also written temp-then-rename

A file is used only when its manifest says complete and every shard checksum matches the
vectors actually stored; anything else is moved aside and recomputed, never read as valid.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import h5py
import numpy as np

from orchestrator.core.files import atomic_path, write_json_atomically

FORMAT_VERSION = 1


def cache_key(model_identity: dict, tokenizer_identity: dict, max_length: int, pooling: str, dtype: str,
              dataset_hash: str, layer_boundary: Optional[int] = None) -> str:
    """sha256 over everything that changes the vectors: same inputs, same key; any change, new key.
    `layer_boundary` L - k: the cache holds the hidden states after that layer, not vectors (and
    pooling, applied above the boundary, does not change them)."""
    fields = {"format": FORMAT_VERSION, "model": model_identity, "tokenizer": tokenizer_identity,
              "max_length": max_length, "pooling": pooling, "dtype": dtype, "dataset": dataset_hash}
    if layer_boundary is not None:
        fields.update(content="layer-states", layer_boundary=layer_boundary, pooling=None)
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def vectors_sha256(vectors: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(vectors, dtype="<f4").tobytes()).hexdigest()


# numpy has no bfloat16: its values are stored as their 16 raw bits (the top half of a float32)
STORED_DTYPES = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2"), "bfloat16": np.dtype("<u2")}


@dataclass(frozen=True)
class LayerStates:
    """Hidden states of many texts, ragged: every text's tokens one after another, no padding."""

    states: np.ndarray       # (total tokens, hidden), STORED_DTYPES[dtype]
    lengths: np.ndarray      # (texts,) int64: tokens per text
    dtype: str = "float32"   # the compute dtype the states were made in

    @classmethod
    def from_texts(cls, per_text: list, dtype: str, hidden: int) -> "LayerStates":
        """From one (tokens, hidden) float32 array per text."""
        lengths = np.array([len(t) for t in per_text], dtype=np.int64)
        flat = np.concatenate(per_text) if per_text else np.zeros((0, hidden), np.float32)
        return cls(states=to_stored(flat, dtype), lengths=lengths, dtype=dtype)

    @classmethod
    def concatenate(cls, parts: list["LayerStates"]) -> "LayerStates":
        return cls(states=np.concatenate([p.states for p in parts]),
                   lengths=np.concatenate([p.lengths for p in parts]), dtype=parts[0].dtype)

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def hidden(self) -> int:
        return int(self.states.shape[1])

    @property
    def nbytes(self) -> int:
        return int(self.states.nbytes + self.lengths.nbytes)

    def text_states(self, rows) -> list[np.ndarray]:
        """The float32 (tokens, hidden) states of each of `rows`."""
        offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        return [from_stored(self.states[offsets[r]:offsets[r + 1]], self.dtype) for r in rows]

    def sha256(self) -> str:
        digest = hashlib.sha256(np.ascontiguousarray(self.lengths, dtype="<i8").tobytes())
        digest.update(np.ascontiguousarray(self.states).tobytes())
        return digest.hexdigest()


def to_stored(states: np.ndarray, dtype: str) -> np.ndarray:
    states = np.ascontiguousarray(states, dtype=np.float32)
    if dtype == "bfloat16":
        return (states.view(np.uint32) >> 16).astype("<u2")   # exact: the values were computed in bfloat16
    return states.astype(STORED_DTYPES[dtype])


def from_stored(states: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bfloat16":
        return (states.astype(np.uint32) << 16).view(np.float32)
    return states.astype(np.float32, copy=False)


Payload = Union[np.ndarray, LayerStates]   # what a shard or a cache holds: vectors, or layer states


def payload_sha256(payload: Payload) -> str:
    return payload.sha256() if isinstance(payload, LayerStates) else vectors_sha256(payload)


def write_payload(f: h5py.File, payload: Payload) -> None:
    if isinstance(payload, LayerStates):
        f.create_dataset("states", data=payload.states, chunks=True if payload.states.size else None)
        f.create_dataset("lengths", data=payload.lengths)
        f.attrs["states_dtype"] = payload.dtype
    else:
        f.create_dataset("vectors", data=payload, chunks=True if payload.size else None)


def read_payload(f: h5py.File) -> Payload:
    if "states" in f:
        return LayerStates(states=f["states"][()], lengths=f["lengths"][()].astype(np.int64),
                           dtype=str(f.attrs["states_dtype"]))
    return f["vectors"][()]


def payload_dims(payload: Payload) -> tuple[int, int]:
    """(rows, dims) of vectors; (texts, hidden) of layer states."""
    if isinstance(payload, LayerStates):
        return len(payload), payload.hidden
    return int(payload.shape[0]), int(payload.shape[1]) if payload.ndim == 2 else 0


def concatenate_payloads(parts: list[Payload]) -> Payload:
    if parts and isinstance(parts[0], LayerStates):
        return LayerStates.concatenate(parts)
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def payload_rows(payload: Payload, start: int, stop: int) -> Payload:
    if isinstance(payload, LayerStates):
        offsets = np.concatenate([[0], np.cumsum(payload.lengths)])
        return LayerStates(states=payload.states[offsets[start]:offsets[stop]], lengths=payload.lengths[start:stop],
                           dtype=payload.dtype)
    return payload[start:stop]


class CorruptCache(Exception):
    """A cache or shard file that exists but must not be trusted."""


@dataclass(frozen=True)
class ShardPlan:
    rows: int
    shard_rows: int

    @property
    def count(self) -> int:
        return (self.rows + self.shard_rows - 1) // self.shard_rows

    def bounds(self, index: int) -> tuple[int, int]:
        start = index * self.shard_rows
        return start, min(start + self.shard_rows, self.rows)


@dataclass(frozen=True)
class CachedEmbeddings:
    path: Path
    content: Payload         # (rows, dims) float32 vectors, or LayerStates; dataset order
    labels: np.ndarray       # (rows,) int64
    manifest: dict

    @property
    def vectors(self) -> np.ndarray:
        if isinstance(self.content, LayerStates):
            raise TypeError(f"{self.path} holds layer states, not vectors")
        return self.content

    @property
    def states(self) -> LayerStates:
        if not isinstance(self.content, LayerStates):
            raise TypeError(f"{self.path} holds vectors, not layer states")
        return self.content

    @property
    def size_bytes(self) -> int:
        """The cache file's size on disk."""
        return self.path.stat().st_size


class EmbeddingStore:
    def __init__(self, cache_dir: str | os.PathLike):
        self.root = Path(os.path.expanduser(str(cache_dir))) / "embeddings"

    def final_path(self, key: str) -> Path:
        return self.root / f"{key}.h5"

    def lock_path(self, key: str) -> Path:
        """Held by the process embedding `key` (orchestrator/core/locks.py)."""
        return self.root / f"{key}.lock"

    def parts_dir(self, key: str) -> Path:
        return self.root / f"{key}.parts"

    def shard_path(self, key: str, index: int) -> Path:
        return self.parts_dir(key) / f"shard-{index:05d}.h5"

    # -- the finished cache -------------------------------------------------------------------

    def load(self, key: str) -> Optional[CachedEmbeddings]:
        """The verified cache for `key`, or None when there is none. Raises CorruptCache."""
        path = self.final_path(key)
        if not path.exists():
            return None
        return read_verified(path, key)

    def quarantine(self, key: str) -> Path:
        """Move a corrupt file aside (kept for inspection, never read again) and return where it went."""
        path = self.final_path(key)
        target = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        os.replace(path, target)
        return target

    def assemble(self, key: str, plan: ShardPlan, labels: np.ndarray, manifest: dict) -> CachedEmbeddings:
        """Join verified shards into the final file, atomically, then drop the parts."""
        shards = []
        for index in range(plan.count):
            shards.append(read_shard(self.shard_path(key, index), key, index, plan))
        content = concatenate_payloads([s for s, _ in shards])
        rows, dims = payload_dims(content)
        manifest = dict(manifest, key=key, complete=True, format_version=FORMAT_VERSION,
                        rows=rows, dims=dims, shard_rows=plan.shard_rows,
                        shards=[{"index": i, "start": plan.bounds(i)[0], "stop": plan.bounds(i)[1], "sha256": c}
                                for i, (_, c) in enumerate(shards)],
                        vectors_sha256=payload_sha256(content), labels_sha256=labels_sha256(labels))
        path = self.final_path(key)
        write_atomically(path, lambda f: write_final(f, content, labels, manifest))
        shutil.rmtree(self.parts_dir(key), ignore_errors=True)
        return CachedEmbeddings(path=path, content=content, labels=labels, manifest=manifest)

    # -- shards in progress -------------------------------------------------------------------

    def prepare_parts(self, key: str, plan: ShardPlan) -> ShardPlan:
        """Create the parts folder, or reuse the plan of an interrupted run so its shards still fit."""
        parts = self.parts_dir(key)
        plan_file = parts / "plan.json"
        saved = read_plan(plan_file)
        if saved is not None and saved.rows == plan.rows:
            plan = saved
        else:
            shutil.rmtree(parts, ignore_errors=True)
        parts.mkdir(parents=True, exist_ok=True)
        for stale in parts.glob(".*.tmp"):  # left by a run killed mid-write; never read
            stale.unlink(missing_ok=True)
        if saved != plan:
            write_json_atomically(plan_file, {"key": key, "rows": plan.rows, "shard_rows": plan.shard_rows})
        return plan

    def finished_shards(self, key: str, plan: ShardPlan) -> set[int]:
        """Shards already on disk and intact; damaged ones are deleted so they get recomputed."""
        done = set()
        for index in range(plan.count):
            path = self.shard_path(key, index)
            if not path.exists():
                continue
            try:
                read_shard(path, key, index, plan)
                done.add(index)
            except CorruptCache:
                path.unlink(missing_ok=True)
        return done

    def discard_parts(self, key: str) -> None:
        shutil.rmtree(self.parts_dir(key), ignore_errors=True)


def read_plan(plan_file: Path) -> Optional[ShardPlan]:
    try:
        saved = json.loads(plan_file.read_text())
        return ShardPlan(rows=int(saved["rows"]), shard_rows=int(saved["shard_rows"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_shard(path: str | os.PathLike, key: str, index: int, start: int, payload: Payload) -> str:
    """Write one shard (vectors or layer states) atomically; returns its checksum. Called inside the
    embedding workers."""
    if not isinstance(payload, LayerStates):
        payload = np.ascontiguousarray(payload, dtype=np.float32)
    checksum = payload_sha256(payload)

    def fill(f: h5py.File) -> None:
        write_payload(f, payload)
        f.attrs.update({"key": key, "index": index, "start": start, "sha256": checksum})

    write_atomically(Path(path), fill)
    return checksum


def read_shard(path: Path, key: str, index: int, plan: ShardPlan) -> tuple[Payload, str]:
    start, stop = plan.bounds(index)
    try:
        with h5py.File(path, "r") as f:
            payload = read_payload(f)
            attrs = dict(f.attrs)
    except (OSError, KeyError, ValueError) as e:
        raise CorruptCache(f"{path}: unreadable ({e})")
    if attrs.get("key") != key or int(attrs.get("index", -1)) != index or len(payload) != stop - start:
        raise CorruptCache(f"{path}: belongs to another shard or cache")
    checksum = payload_sha256(payload)
    if checksum != attrs.get("sha256"):
        raise CorruptCache(f"{path}: checksum mismatch")
    return payload, checksum


def read_verified(path: Path, key: str) -> CachedEmbeddings:
    try:
        with h5py.File(path, "r") as f:
            manifest = json.loads(f.attrs["manifest"])
            content = read_payload(f)
            labels = f["labels"][()]
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise CorruptCache(f"{path} is unreadable or truncated ({type(e).__name__}: {e})")
    if manifest.get("complete") is not True or manifest.get("key") != key:
        raise CorruptCache(f"{path} is not a complete cache for key {key[:12]}")
    shape = payload_dims(content)
    if shape != (manifest.get("rows"), manifest.get("dims")) or labels.shape != (manifest.get("rows"),):
        raise CorruptCache(f"{path} holds {shape[0]} x {shape[1]}, its manifest says {manifest.get('rows')} x {manifest.get('dims')}")
    for shard in manifest.get("shards", []):
        if payload_sha256(payload_rows(content, shard["start"], shard["stop"])) != shard["sha256"]:
            raise CorruptCache(f"{path}: rows {shard['start']}..{shard['stop']} fail their checksum")
    if payload_sha256(content) != manifest.get("vectors_sha256") or labels_sha256(labels) != manifest.get("labels_sha256"):
        raise CorruptCache(f"{path}: checksum mismatch")
    return CachedEmbeddings(path=path, content=content, labels=labels, manifest=manifest)


def labels_sha256(labels: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(labels, dtype="<i8").tobytes()).hexdigest()


def write_final(f: h5py.File, content: Payload, labels: np.ndarray, manifest: dict) -> None:
    write_payload(f, content)
    f.create_dataset("labels", data=np.asarray(labels, dtype=np.int64))
    f.attrs["manifest"] = json.dumps(manifest, sort_keys=True)


def write_atomically(path: Path, fill) -> None:
    """Write an HDF5 file under a temporary name, flush it to disk, then rename it into place."""
    with atomic_path(path) as temporary:
        with h5py.File(temporary, "w") as f:
            fill(f)
