"""The embedding stage: a dataset in, a verified HDF5 cache of its vectors out, computed at most once.

    key = cache_key(model, tokenizer, settings, dataset)
    cache hit  -> read and verify, encode nothing
    otherwise  -> cut the rows into shards, skip shards an interrupted run already wrote,
                  embed the rest on a pool of workers (one shard file each), assemble the final file

The pool is given, not built here: `workers.embedding.EmbeddingPool` runs the shards on Ray
actors (`workers.embedding.ray_pool_starter(address)` starts one). This package stays below the
workers that use it.
"""
from __future__ import annotations

import datetime
import logging
import platform
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib import metadata
from typing import Callable, Optional, Protocol, Sequence

import numpy as np

from embeddings.config import EmbeddingConfig
from embeddings.encode import EncodeSettings
from embeddings.models import ResolvedModel, resolve_model
from embeddings.store import CachedEmbeddings, CorruptCache, EmbeddingStore, ShardPlan, cache_key
from orchestrator.core import locks
from orchestrator.core.errors import UserError
from orchestrator.core.files import usable_folder

log = logging.getLogger(__name__)


class Texts(Protocol):
    """What the stage needs of a dataset (orchestrator.data.Dataset is one)."""

    texts: Sequence[str]
    labels: np.ndarray
    source: str
    label_names: Sequence[str]
    positive_label: str

    def __len__(self) -> int: ...

    def content_hash(self) -> str: ...


@dataclass(frozen=True)
class ShardTask:
    key: str
    index: int
    start: int
    texts: list[str]
    path: str            # where the shard file goes (a path every node can reach)


@dataclass(frozen=True)
class ShardResult:
    index: int
    rows: int
    sha256: str
    seconds: float
    host: str
    pid: int
    node_id: str         # the Ray node: several nodes can share one host name (and one machine)
    node_ip: str


class ShardPool(Protocol):
    """Embeds shards, each into its own file (workers.embedding.EmbeddingPool)."""

    device: str              # cpu | cuda
    workers: int
    startup_seconds: float
    warnings: list[str]

    def settings_key(self) -> tuple: ...

    def run(self, tasks: list[ShardTask], total_rows: int, resumed_rows: int = 0,
            progress: bool = True) -> list[ShardResult]: ...

    def close(self) -> None: ...


# (model, concrete embedding settings, shards to embed) -> a started pool
StartPool = Callable[[ResolvedModel, EmbeddingConfig, int], ShardPool]


@dataclass
class EmbedReport:
    cache: CachedEmbeddings
    key: str
    hit: bool
    pooling: str                     # the concrete pooling ('auto' resolved for the model)
    encoded_rows: int = 0            # rows computed by this call
    resumed_rows: int = 0            # rows found in shards of an interrupted run
    seconds: float = 0.0             # wall time of this call
    encode_seconds: float = 0.0      # wall time spent running shards, after the workers were ready
    startup_seconds: float = 0.0     # starting Ray and loading the encoder into the workers
    workers: int = 0
    rows_per_host: dict = field(default_factory=dict)
    rows_per_node: dict = field(default_factory=dict)   # Ray node id -> rows this call embedded there
    node_ips: dict = field(default_factory=dict)        # Ray node id -> its IP address
    warnings: list = field(default_factory=list)

    @property
    def texts_per_s(self) -> float:
        return self.encoded_rows / self.encode_seconds if self.encode_seconds > 0 else 0.0

    def placement_line(self) -> str:
        """Where the shards ran, e.g. `placement: 2 nodes: 10.0.0.5 (node 3b07f0f20be9) 224 rows, ...`."""
        nodes = ", ".join(f"{self.node_ips.get(node, '?')} (node {node[:12]}) {rows} rows"
                          for node, rows in self.rows_per_node.items())
        return f"placement: {len(self.rows_per_node)} nodes: {nodes}"

    def final_line(self) -> str:
        c = self.cache
        rows, dims = len(c.content), c.content.describe(c.size_bytes)
        if self.hit:
            return f"cache hit: {c.path}  rows {rows}  {dims}  (nothing encoded, {self.seconds:.1f} s)"
        resumed = f", {self.resumed_rows} resumed from shards" if self.resumed_rows else ""
        startup = f", after {self.startup_seconds:.1f} s starting workers" if self.startup_seconds else ""
        return (f"cache: {c.path}  rows {rows}  {dims}  encoded {self.encoded_rows} texts in "
                f"{self.encode_seconds:.1f} s ({self.texts_per_s:.0f} texts/s on {self.workers} worker{'s' if self.workers != 1 else ''}{startup}{resumed})")


DEFAULT_BATCH_TOKENS = {"cpu": 2048, "cuda": 32768}


def with_model_pooling(cfg: EmbeddingConfig, model: ResolvedModel) -> EmbeddingConfig:
    """`cfg` with pooling 'auto' made concrete for `model`: what the cache key and the workers see.
    The one place 'auto' is resolved; a run records the result (EmbedReport.pooling) in its config."""
    return cfg.model_copy(update={"pooling": model.pooling(cfg.pooling)})


def encode_settings(cfg: EmbeddingConfig, device: str) -> EncodeSettings:
    batch_tokens = cfg.batch_tokens or max(DEFAULT_BATCH_TOKENS[device], cfg.max_length)
    return EncodeSettings(max_length=cfg.max_length, pooling=cfg.pooling, dtype=cfg.dtype,
                          batch_tokens=batch_tokens, device=device, train_layers=cached_layers(cfg))


def cached_layers(cfg: EmbeddingConfig) -> int:
    """k of train_layers = k: the cache holds the states below the top k layers (0: vectors)."""
    if cfg.train_layers == "all":
        raise ValueError("train_layers 'all' caches nothing: the whole encoder trains on the tokens")
    return cfg.train_layers


def dataset_cache_key(model: ResolvedModel, cfg: EmbeddingConfig, dataset_hash: str) -> str:
    boundary = None
    if cached_layers(cfg):
        boundary = model.layer_count() - cfg.train_layers   # the layer whose output is cached
    return cache_key(model.identity(), model.tokenizer_identity(), cfg.max_length, cfg.pooling, cfg.dtype,
                     dataset_hash, layer_boundary=boundary)


def embed_dataset(dataset: Texts, cfg: EmbeddingConfig, start_pool: Optional[StartPool] = None,
                  progress: bool = True, pool: Optional[ShardPool] = None) -> EmbedReport:
    """Return the verified cache of `dataset` (its vectors, or with embedding.train_layers = k its
    layer states), computing only what is missing.

    Shards still to embed go to `pool` when one is given (a caller reusing loaded workers),
    else to a pool from `start_pool`, stopped at the end so its CPUs/GPUs go back to the cluster.
    """
    started = time.perf_counter()
    model = resolve_model(cfg.model, cfg.revision)
    cfg = with_model_pooling(cfg, model)
    model.check_train_layers(cfg.train_layers)
    model.check_max_length(cfg.max_length)
    if cfg.train_layers == "all":
        raise UserError("embedding.train_layers is 'all': the whole encoder trains on the token ids, so there is "
                        "nothing to embed or cache")
    if cfg.pooling == "pooler" and not model.has_pooler:
        raise UserError(f"model '{cfg.model}' has no trained pooler layer; use pooling 'cls' or 'mean'")
    dataset_hash = dataset.content_hash()  # hashes every text: once per call
    key = dataset_cache_key(model, cfg, dataset_hash)
    store = EmbeddingStore(cfg.cache_dir)
    usable_folder(store.root.parent, "cache dir")
    usable_folder(store.root, "cache dir")
    try:
        cached = store.load(key)              # a finished file never changes: reading it needs no lock
    except CorruptCache:
        cached = None                         # moved aside below, under the lock
    if cached is not None:
        return EmbedReport(cache=cached, key=key, hit=True, pooling=cfg.pooling, seconds=time.perf_counter() - started)
    # one process per key: a second one waits, then finds the first one's file (a cache hit)
    with locks.waited_for(store.lock_path(key), lambda holder: log.warning(
            f"waiting: {holder} is embedding the same data (cache key {key[:12]}...); continuing when it is done")):
        return embed_locked(dataset, cfg, model, store, key, dataset_hash, start_pool, pool, progress, started)


def embed_locked(dataset: Texts, cfg: EmbeddingConfig, model: ResolvedModel, store: EmbeddingStore, key: str,
                 dataset_hash: str, start_pool: Optional[StartPool], pool: Optional[ShardPool], progress: bool,
                 started: float) -> EmbedReport:
    """`embed_dataset` with the key's lock held: the cache, or what is missing embedded and assembled."""
    cached, warnings = load_or_quarantine(store, key)
    if cached is not None:
        return EmbedReport(cache=cached, key=key, hit=True, pooling=cfg.pooling,
                           seconds=time.perf_counter() - started)

    plan = store.prepare_parts(key, ShardPlan(rows=len(dataset), shard_rows=cfg.shard_rows))
    done = store.finished_shards(key, plan)
    todo = [i for i in range(plan.count) if i not in done]
    resumed_rows = sum(plan.bounds(i)[1] - plan.bounds(i)[0] for i in done)
    if resumed_rows:
        log.info(f"resuming: {len(done)} of {plan.count} shards ({resumed_rows} rows) already embedded")
    run = run_shards(dataset, cfg, model, store, key, plan, todo, resumed_rows, start_pool, pool, progress)

    cache = store.assemble(key, plan, dataset.labels, manifest(model, cfg, dataset, dataset_hash, run.device))
    report = EmbedReport(cache=cache, key=key, hit=False, pooling=cfg.pooling,
                         encoded_rows=len(dataset) - resumed_rows, resumed_rows=resumed_rows,
                         seconds=time.perf_counter() - started, encode_seconds=run.seconds, workers=run.workers,
                         startup_seconds=run.startup_seconds,
                         rows_per_host=rows_by(run.results, "host"), rows_per_node=rows_by(run.results, "node_id"),
                         node_ips={r.node_id: r.node_ip for r in run.results}, warnings=warnings + run.warnings)
    if len(report.rows_per_node) > 1:
        log.info(report.placement_line())
    return report


def load_or_quarantine(store: EmbeddingStore, key: str) -> tuple[Optional[CachedEmbeddings], list[str]]:
    """The verified cache of `key`, or None; a corrupt file is moved aside (and said so)."""
    try:
        return store.load(key), []
    except CorruptCache as problem:
        moved = store.quarantine(key)
        warning = f"{problem}; moved aside to {moved.name} and recomputing"
        log.warning(warning)
        return None, [warning]


@dataclass
class ShardRun:
    results: list
    seconds: float = 0.0             # running shards, after the pool was ready
    device: str = "cpu"
    workers: int = 0
    startup_seconds: float = 0.0     # starting the pool (this call's own pool only)
    warnings: list = field(default_factory=list)


def run_shards(dataset: Texts, cfg: EmbeddingConfig, model: ResolvedModel, store: EmbeddingStore, key: str,
               plan: ShardPlan, todo: list[int], resumed_rows: int, start_pool: Optional[StartPool],
               pool: Optional[ShardPool], progress: bool) -> ShardRun:
    """Embed the shards in `todo` on `pool`, or on a pool started (and stopped) here."""
    own_pool = pool is None and bool(todo)
    results: list = []
    encode_started = time.perf_counter()
    try:
        if own_pool:
            if start_pool is None:
                raise ValueError("embed_dataset needs a pool or start_pool to embed missing shards")
            pool = start_pool(model, cfg, len(todo))
            encode_started = time.perf_counter()
        if todo and not own_pool and pool.settings_key() != (model.weights_sha256, encode_settings(cfg, pool.device)):
            raise ValueError("the embedding pool was started for another model or other settings")
        if todo:
            tasks = [shard_task(dataset, store, key, plan, index) for index in todo]
            results = pool.run(tasks, total_rows=len(dataset), resumed_rows=resumed_rows, progress=progress)
    except BaseException:
        if not store.finished_shards(key, plan):
            store.discard_parts(key)  # nothing worth resuming: leave the cache as it was
        raise
    finally:
        if own_pool and pool is not None:
            pool.close()
    if pool is None:
        return ShardRun(results=results, seconds=time.perf_counter() - encode_started)
    return ShardRun(results=results, seconds=time.perf_counter() - encode_started, device=pool.device,
                    workers=pool.workers, startup_seconds=pool.startup_seconds if own_pool else 0.0,
                    warnings=list(pool.warnings))


def shard_task(dataset: Texts, store: EmbeddingStore, key: str, plan: ShardPlan, index: int) -> ShardTask:
    start, stop = plan.bounds(index)
    return ShardTask(key=key, index=index, start=start, texts=dataset.texts[start:stop],
                     path=str(store.shard_path(key, index)))


def rows_by(results: list, attribute: str) -> dict:
    """Rows embedded per value of a ShardResult attribute (host, node_id), largest first."""
    counts: Counter = Counter()
    for result in results:
        counts[getattr(result, attribute)] += result.rows
    return dict(counts.most_common())


def manifest(model: ResolvedModel, cfg: EmbeddingConfig, dataset: Texts, dataset_hash: str, device: str) -> dict:
    return {
        "model": {"name": model.name, "revision": model.revision, "weights_sha256": model.weights_sha256},
        "tokenizer": {"sha256": model.tokenizer_sha256},
        "max_length": cfg.max_length, "pooling": cfg.pooling, "dtype": cfg.dtype, "device": device,
        "train_layers": cfg.train_layers,
        "dataset": {"sha256": dataset_hash, "source": dataset.source,
                    "label_names": list(dataset.label_names), "positive_label": dataset.positive_label},
        "package_versions": package_versions(),
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def package_versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in ("torch", "transformers", "tokenizers", "h5py", "numpy", "ray"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions
