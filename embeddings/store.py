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

What a file holds is one of the classes of embeddings/content.py (Vectors, LayerStates): the
store reads, checks and joins them through their own methods, whichever it is.

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
from typing import Optional

import h5py
import numpy as np

from embeddings.content import Content, Vectors, read_content
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
    content: Content         # Vectors or LayerStates (embeddings/content.py), in dataset order
    labels: np.ndarray       # (rows,) int64
    manifest: dict

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
        content = type(shards[0][0]).concatenate([s for s, _ in shards]) if shards else Vectors(np.zeros((0, 0)))
        manifest = dict(manifest, key=key, complete=True, format_version=FORMAT_VERSION,
                        rows=len(content), dims=content.dims, shard_rows=plan.shard_rows,
                        shards=[{"index": i, "start": plan.bounds(i)[0], "stop": plan.bounds(i)[1], "sha256": c}
                                for i, (_, c) in enumerate(shards)],
                        vectors_sha256=content.sha256(), labels_sha256=labels_sha256(labels))
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


def write_shard(path: str | os.PathLike, key: str, index: int, start: int, content: Content) -> str:
    """Write one shard (its vectors or layer states) atomically; returns its checksum. Called inside
    the embedding workers."""
    checksum = content.sha256()

    def fill(f: h5py.File) -> None:
        content.write(f)
        f.attrs.update({"key": key, "index": index, "start": start, "sha256": checksum})

    write_atomically(Path(path), fill)
    return checksum


def read_shard(path: Path, key: str, index: int, plan: ShardPlan) -> tuple[Content, str]:
    start, stop = plan.bounds(index)
    try:
        with h5py.File(path, "r") as f:
            content = read_content(f)
            attrs = dict(f.attrs)
    except (OSError, KeyError, ValueError) as e:
        raise CorruptCache(f"{path}: unreadable ({e})")
    if attrs.get("key") != key or int(attrs.get("index", -1)) != index or len(content) != stop - start:
        raise CorruptCache(f"{path}: belongs to another shard or cache")
    checksum = content.sha256()
    if checksum != attrs.get("sha256"):
        raise CorruptCache(f"{path}: checksum mismatch")
    return content, checksum


def read_verified(path: Path, key: str) -> CachedEmbeddings:
    try:
        with h5py.File(path, "r") as f:
            manifest = json.loads(f.attrs["manifest"])
            content = read_content(f)
            labels = f["labels"][()]
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise CorruptCache(f"{path} is unreadable or truncated ({type(e).__name__}: {e})")
    if manifest.get("complete") is not True or manifest.get("key") != key:
        raise CorruptCache(f"{path} is not a complete cache for key {key[:12]}")
    shape = (len(content), content.dims)
    if shape != (manifest.get("rows"), manifest.get("dims")) or labels.shape != (manifest.get("rows"),):
        raise CorruptCache(f"{path} holds {shape[0]} x {shape[1]}, its manifest says {manifest.get('rows')} x {manifest.get('dims')}")
    for shard in manifest.get("shards", []):
        if content.rows(shard["start"], shard["stop"]).sha256() != shard["sha256"]:
            raise CorruptCache(f"{path}: rows {shard['start']}..{shard['stop']} fail their checksum")
    if content.sha256() != manifest.get("vectors_sha256") or labels_sha256(labels) != manifest.get("labels_sha256"):
        raise CorruptCache(f"{path}: checksum mismatch")
    return CachedEmbeddings(path=path, content=content, labels=labels, manifest=manifest)


def labels_sha256(labels: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(labels, dtype="<i8").tobytes()).hexdigest()


def write_final(f: h5py.File, content: Content, labels: np.ndarray, manifest: dict) -> None:
    content.write(f)
    f.create_dataset("labels", data=np.asarray(labels, dtype=np.int64))
    f.attrs["manifest"] = json.dumps(manifest, sort_keys=True)


def write_atomically(path: Path, fill) -> None:
    """Write an HDF5 file under a temporary name, flush it to disk, then rename it into place."""
    with atomic_path(path) as temporary:
        with h5py.File(temporary, "w") as f:
            fill(f)
