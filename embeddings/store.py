"""The content-addressed HDF5 cache of embeddings.

Layout under `<cache_dir>/embeddings/`:

    <key>.h5                 the finished cache: `vectors` (rows x dims, float32), `labels`, and a
                             JSON manifest attribute; it appears only complete (temp file + rename)
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
from typing import Optional

import h5py
import numpy as np

from orchestrator.core.files import atomic_path, write_json_atomically

FORMAT_VERSION = 1


def cache_key(model_identity: dict, tokenizer_identity: dict, max_length: int, pooling: str, dtype: str,
              dataset_hash: str) -> str:
    """sha256 over everything that changes the vectors: same inputs, same key; any change, new key."""
    fields = {"format": FORMAT_VERSION, "model": model_identity, "tokenizer": tokenizer_identity,
              "max_length": max_length, "pooling": pooling, "dtype": dtype, "dataset": dataset_hash}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def vectors_sha256(vectors: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(vectors, dtype="<f4").tobytes()).hexdigest()


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
    vectors: np.ndarray      # (rows, dims) float32, dataset order
    labels: np.ndarray       # (rows,) int64
    manifest: dict


class EmbeddingStore:
    def __init__(self, cache_dir: str | os.PathLike):
        self.root = Path(os.path.expanduser(str(cache_dir))) / "embeddings"

    def final_path(self, key: str) -> Path:
        return self.root / f"{key}.h5"

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
        vectors = np.concatenate([s for s, _ in shards]) if shards else np.zeros((0, 0), np.float32)
        manifest = dict(manifest, key=key, complete=True, format_version=FORMAT_VERSION,
                        rows=int(vectors.shape[0]), dims=int(vectors.shape[1]), shard_rows=plan.shard_rows,
                        shards=[{"index": i, "start": plan.bounds(i)[0], "stop": plan.bounds(i)[1], "sha256": c}
                                for i, (_, c) in enumerate(shards)],
                        vectors_sha256=vectors_sha256(vectors), labels_sha256=labels_sha256(labels))
        path = self.final_path(key)
        write_atomically(path, lambda f: write_final(f, vectors, labels, manifest))
        shutil.rmtree(self.parts_dir(key), ignore_errors=True)
        return CachedEmbeddings(path=path, vectors=vectors, labels=labels, manifest=manifest)

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


def write_shard(path: str | os.PathLike, key: str, index: int, start: int, vectors: np.ndarray) -> str:
    """Write one shard atomically; returns its checksum. Called inside the embedding workers."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    checksum = vectors_sha256(vectors)

    def fill(f: h5py.File) -> None:
        f.create_dataset("vectors", data=vectors)
        f.attrs.update({"key": key, "index": index, "start": start, "sha256": checksum})

    write_atomically(Path(path), fill)
    return checksum


def read_shard(path: Path, key: str, index: int, plan: ShardPlan) -> tuple[np.ndarray, str]:
    start, stop = plan.bounds(index)
    try:
        with h5py.File(path, "r") as f:
            vectors = f["vectors"][()]
            attrs = dict(f.attrs)
    except (OSError, KeyError, ValueError) as e:
        raise CorruptCache(f"{path}: unreadable ({e})")
    if attrs.get("key") != key or int(attrs.get("index", -1)) != index or vectors.shape[0] != stop - start:
        raise CorruptCache(f"{path}: belongs to another shard or cache")
    checksum = vectors_sha256(vectors)
    if checksum != attrs.get("sha256"):
        raise CorruptCache(f"{path}: checksum mismatch")
    return vectors, checksum


def read_verified(path: Path, key: str) -> CachedEmbeddings:
    try:
        with h5py.File(path, "r") as f:
            manifest = json.loads(f.attrs["manifest"])
            vectors = f["vectors"][()]
            labels = f["labels"][()]
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise CorruptCache(f"{path} is unreadable or truncated ({type(e).__name__}: {e})")
    if manifest.get("complete") is not True or manifest.get("key") != key:
        raise CorruptCache(f"{path} is not a complete cache for key {key[:12]}")
    if vectors.shape != (manifest.get("rows"), manifest.get("dims")) or labels.shape != (manifest.get("rows"),):
        raise CorruptCache(f"{path} holds {vectors.shape} vectors, its manifest says {manifest.get('rows')} x {manifest.get('dims')}")
    for shard in manifest.get("shards", []):
        if vectors_sha256(vectors[shard["start"]:shard["stop"]]) != shard["sha256"]:
            raise CorruptCache(f"{path}: rows {shard['start']}..{shard['stop']} fail their checksum")
    if vectors_sha256(vectors) != manifest.get("vectors_sha256") or labels_sha256(labels) != manifest.get("labels_sha256"):
        raise CorruptCache(f"{path}: checksum mismatch")
    return CachedEmbeddings(path=path, vectors=vectors, labels=labels, manifest=manifest)


def labels_sha256(labels: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(labels, dtype="<i8").tobytes()).hexdigest()


def write_final(f: h5py.File, vectors: np.ndarray, labels: np.ndarray, manifest: dict) -> None:
    f.create_dataset("vectors", data=vectors, chunks=True if vectors.size else None)
    f.create_dataset("labels", data=np.asarray(labels, dtype=np.int64))
    f.attrs["manifest"] = json.dumps(manifest, sort_keys=True)


def write_atomically(path: Path, fill) -> None:
    """Write an HDF5 file under a temporary name, flush it to disk, then rename it into place."""
    with atomic_path(path) as temporary:
        with h5py.File(temporary, "w") as f:
            fill(f)
