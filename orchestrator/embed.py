"""The embedding stage: a dataset in, a verified HDF5 cache of its vectors out, computed at most once.

    key = cache_key(model, tokenizer, settings, dataset)
    cache hit  -> read and verify, encode nothing
    otherwise  -> cut the rows into shards, skip shards an interrupted run already wrote,
                  embed the rest on Ray actors (one shard file each), assemble the final file
"""
from __future__ import annotations

import dataclasses
import datetime
import platform
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from importlib import metadata

from embeddings.encode import EncodeSettings
from embeddings.models import ResolvedModel, resolve_model
from embeddings.store import CachedEmbeddings, CorruptCache, EmbeddingStore, ShardPlan, cache_key
from orchestrator.config import EmbeddingConfig
from orchestrator.data import Dataset
from orchestrator.errors import UserError

IN_FLIGHT_PER_WORKER = 2  # one shard running, one queued, so no actor waits on the driver


@dataclass
class EmbedReport:
    cache: CachedEmbeddings
    key: str
    hit: bool
    encoded_rows: int = 0            # rows computed by this call
    resumed_rows: int = 0            # rows found in shards of an interrupted run
    seconds: float = 0.0             # wall time of this call
    encode_seconds: float = 0.0      # wall time spent running shards, after the workers were ready
    startup_seconds: float = 0.0     # starting Ray and loading the encoder into the workers
    workers: int = 0
    rows_per_host: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)

    @property
    def texts_per_s(self) -> float:
        return self.encoded_rows / self.encode_seconds if self.encode_seconds > 0 else 0.0

    def final_line(self) -> str:
        c = self.cache
        rows, dims = c.vectors.shape
        if self.hit:
            return f"cache hit: {c.path}  rows {rows}  dims {dims}  (nothing encoded, {self.seconds:.1f} s)"
        resumed = f", {self.resumed_rows} resumed from shards" if self.resumed_rows else ""
        startup = f", after {self.startup_seconds:.1f} s starting workers" if self.startup_seconds else ""
        return (f"cache: {c.path}  rows {rows}  dims {dims}  encoded {self.encoded_rows} texts in "
                f"{self.encode_seconds:.1f} s ({self.texts_per_s:.0f} texts/s on {self.workers} worker{'s' if self.workers != 1 else ''}{startup}{resumed})")


DEFAULT_BATCH_TOKENS = {"cpu": 2048, "cuda": 32768}


def with_model_pooling(cfg: EmbeddingConfig, model: ResolvedModel) -> EmbeddingConfig:
    """`cfg` with pooling 'auto' made concrete for `model`: what the cache key and the workers see."""
    return dataclasses.replace(cfg, pooling=model.pooling(cfg.pooling))


def encode_settings(cfg: EmbeddingConfig, device: str) -> EncodeSettings:
    batch_tokens = cfg.batch_tokens or max(DEFAULT_BATCH_TOKENS[device], cfg.max_length)
    return EncodeSettings(max_length=cfg.max_length, pooling=cfg.pooling, dtype=cfg.dtype,
                          batch_tokens=batch_tokens, device=device)


def dataset_cache_key(model: ResolvedModel, cfg: EmbeddingConfig, dataset_hash: str) -> str:
    return cache_key(model.identity(), model.tokenizer_identity(), cfg.max_length, cfg.pooling, cfg.dtype,
                     dataset_hash)


def embed_dataset(dataset: Dataset, cfg: EmbeddingConfig, ray_address: str | None = None,
                  progress: bool = True, log=print, pool: "EmbeddingPool | None" = None) -> EmbedReport:
    """Return the verified cache of `dataset`, computing only what is missing.

    `pool` lets a caller reuse loaded actors across calls; without one, a pool is started for the
    shards still to do and stopped at the end, so its CPUs/GPUs go back to the cluster.
    """
    started = time.perf_counter()
    model = resolve_model(cfg.model, cfg.revision)
    cfg = with_model_pooling(cfg, model)
    if cfg.pooling == "pooler" and not model.has_pooler:
        raise UserError(f"model '{cfg.model}' has no trained pooler layer; use pooling 'cls' or 'mean'")
    dataset_hash = dataset.content_hash()  # hashes every text: once per call
    key = dataset_cache_key(model, cfg, dataset_hash)
    store = EmbeddingStore(cfg.cache_dir)
    report_warnings = []
    try:
        cached = store.load(key)
    except CorruptCache as problem:
        moved = store.quarantine(key)
        report_warnings.append(f"{problem}; moved aside to {moved.name} and recomputing")
        log(f"warning: {report_warnings[-1]}", file=sys.stderr)
        cached = None
    if cached is not None:
        return EmbedReport(cache=cached, key=key, hit=True, seconds=time.perf_counter() - started)

    plan = store.prepare_parts(key, ShardPlan(rows=len(dataset), shard_rows=cfg.shard_rows))
    done = store.finished_shards(key, plan)
    todo = [i for i in range(plan.count) if i not in done]
    resumed_rows = sum(plan.bounds(i)[1] - plan.bounds(i)[0] for i in done)
    if resumed_rows:
        log(f"resuming: {len(done)} of {plan.count} shards ({resumed_rows} rows) already embedded", file=sys.stderr)

    own_pool = pool is None and bool(todo)
    rows_per_host: dict = {}
    encode_started = time.perf_counter()
    try:
        if own_pool:
            pool = EmbeddingPool(model, cfg, ray_address=ray_address, max_workers=len(todo), log=log)
            encode_started = time.perf_counter()
        if todo and not own_pool and pool.model_key != (model.weights_sha256, encode_settings(cfg, pool.plan.device)):
            raise ValueError("the embedding pool was started for another model or other settings")
        if todo:
            tasks = [shard_task(dataset, store, key, plan, index) for index in todo]
            rows_per_host = pool.run(tasks, total_rows=len(dataset), resumed_rows=resumed_rows, progress=progress)
    except BaseException:
        if not store.finished_shards(key, plan):
            store.discard_parts(key)  # nothing worth resuming: leave the cache as it was
        raise
    finally:
        if own_pool and pool is not None:
            pool.close()
    encode_seconds = time.perf_counter() - encode_started

    device = pool.plan.device if pool is not None else "cpu"
    cache = store.assemble(key, plan, dataset.labels, manifest(model, cfg, dataset, dataset_hash, device))
    return EmbedReport(cache=cache, key=key, hit=False, encoded_rows=len(dataset) - resumed_rows,
                       resumed_rows=resumed_rows, seconds=time.perf_counter() - started,
                       encode_seconds=encode_seconds, workers=pool.plan.workers if pool is not None else 0,
                       startup_seconds=pool.startup_seconds if own_pool else 0.0,
                       rows_per_host=rows_per_host,
                       warnings=report_warnings + ([pool.plan.warning] if pool is not None and pool.plan.warning else []))


def shard_task(dataset: Dataset, store: EmbeddingStore, key: str, plan: ShardPlan, index: int):
    from workers.embedding import ShardTask

    start, stop = plan.bounds(index)
    return ShardTask(key=key, index=index, start=start, texts=dataset.texts[start:stop],
                     path=str(store.shard_path(key, index)))


@dataclass(frozen=True)
class WorkerPlan:
    workers: int
    threads: int
    gpus_per_worker: float
    device: str
    warning: str | None = None


def plan_workers(cfg: EmbeddingConfig, cluster_cpus: int, cluster_gpus: int, shards: int) -> WorkerPlan:
    """How many actors, with which resources: one per GPU when there are GPUs, else CPU actors."""
    use_gpu = cfg.device == "cuda" or (cfg.device == "auto" and cluster_gpus > 0)
    if use_gpu:
        if cluster_gpus < 1:
            raise UserError("embedding.device is 'cuda' but the Ray cluster has no GPU; use 'auto' or 'cpu'")
        workers = min(cfg.workers or cluster_gpus, shards)
        warning = None
        if workers > cluster_gpus:
            warning = f"asked for {workers} GPU workers but the cluster has {cluster_gpus} GPUs: using {cluster_gpus}"
            workers = cluster_gpus
        return WorkerPlan(workers=max(1, workers), threads=1, gpus_per_worker=1, device="cuda", warning=warning)
    cluster_cpus = max(1, cluster_cpus)
    workers = cfg.workers or cluster_cpus
    threads = cfg.threads_per_worker or max(1, cluster_cpus // workers)
    warning = None
    if workers * threads > cluster_cpus:
        fitted = max(1, cluster_cpus // threads)
        threads = min(threads, cluster_cpus)
        warning = (f"asked for {workers} workers x {threads} threads but the cluster has {cluster_cpus} CPUs: "
                   f"running {fitted} workers")
        workers = fitted
    return WorkerPlan(workers=max(1, min(workers, shards)), threads=threads, gpus_per_worker=0, device="cpu",
                      warning=warning)


class EmbeddingPool:
    """Ray actors that hold the encoder; `run` feeds them shards, `close` gives their resources back."""

    def __init__(self, model: ResolvedModel, cfg: EmbeddingConfig, ray_address: str | None = None,
                 max_workers: int | None = None, log=print):
        from orchestrator.ray_runtime import connect
        from workers.embedding import EmbeddingWorker

        started = time.perf_counter()
        cfg = with_model_pooling(cfg, model)
        self.ray = connect(ray_address)
        resources = self.ray.cluster_resources()
        self.plan = plan_workers(cfg, int(resources.get("CPU", 1)), int(resources.get("GPU", 0)),
                                 max_workers or 1 << 30)
        if self.plan.warning:
            log(f"warning: {self.plan.warning}", file=sys.stderr)
        settings = encode_settings(cfg, self.plan.device)
        self.model_key = (model.weights_sha256, settings)
        actor_class = self.ray.remote(EmbeddingWorker).options(
            num_cpus=self.plan.threads if self.plan.device == "cpu" else 1, num_gpus=self.plan.gpus_per_worker,
            max_restarts=3, max_task_retries=3)
        self.actors = [actor_class.remote(model.name, model.revision, model.weights_sha256, settings,
                                          self.plan.threads)
                       for _ in range(self.plan.workers)]
        try:
            self.ray.get([actor.ready.remote() for actor in self.actors])
        except self.ray.exceptions.RayActorError as e:
            self.close()
            raise describe_actor_failure(getattr(e, "cause", None) or e) from None
        self.startup_seconds = time.perf_counter() - started  # Ray start (if any) and model loading

    def run(self, tasks: list, total_rows: int, resumed_rows: int = 0, progress: bool = True) -> dict:
        """Embed every task's shard (each written to its own file); returns rows embedded per host."""
        from tqdm import tqdm

        ray = self.ray
        queue = deque(tasks)
        in_flight = {}
        rows_per_host: Counter = Counter()
        bar = tqdm(total=total_rows, initial=resumed_rows, unit="text", desc="embedding", file=sys.stderr,
                   disable=not progress, dynamic_ncols=True, smoothing=0.1)
        try:
            for actor in self.actors:
                for _ in range(IN_FLIGHT_PER_WORKER):
                    if queue:
                        in_flight[actor.embed_shard.remote(queue.popleft())] = actor
            while in_flight:
                ready, _ = ray.wait(list(in_flight), num_returns=1)
                actor = in_flight.pop(ready[0])
                try:
                    result = ray.get(ready[0])
                except ray.exceptions.RayActorError as e:
                    raise describe_actor_failure(getattr(e, "cause", None) or e) from None
                rows_per_host[result.host] += result.rows
                bar.update(result.rows)
                if queue:
                    in_flight[actor.embed_shard.remote(queue.popleft())] = actor
        finally:
            bar.close()
        return dict(rows_per_host)

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []


def describe_actor_failure(cause: BaseException) -> BaseException:
    text = str(cause)
    if "UserError" in text:
        return UserError(text.strip().splitlines()[-1].split("UserError: ", 1)[-1])
    return RuntimeError(f"embedding worker failed: {text.strip().splitlines()[-1] if text.strip() else cause!r}")


def manifest(model: ResolvedModel, cfg: EmbeddingConfig, dataset: Dataset, dataset_hash: str, device: str) -> dict:
    return {
        "model": {"name": model.name, "revision": model.revision, "weights_sha256": model.weights_sha256},
        "tokenizer": {"sha256": model.tokenizer_sha256},
        "max_length": cfg.max_length, "pooling": cfg.pooling, "dtype": cfg.dtype, "device": device,
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
