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
from orchestrator.errors import UserError, first_line
from orchestrator.ray_runtime import placed_actors, placement_timeout_s, ray_call_succeeded

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
    results: list = []
    encode_started = time.perf_counter()
    try:
        if own_pool:
            pool = EmbeddingPool(model, cfg, ray_address=ray_address, max_workers=len(todo), log=log)
            encode_started = time.perf_counter()
        if todo and not own_pool and pool.model_key != (model.weights_sha256, encode_settings(cfg, pool.plan.device)):
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
    encode_seconds = time.perf_counter() - encode_started

    device = pool.plan.device if pool is not None else "cpu"
    cache = store.assemble(key, plan, dataset.labels, manifest(model, cfg, dataset, dataset_hash, device))
    report = EmbedReport(cache=cache, key=key, hit=False, encoded_rows=len(dataset) - resumed_rows,
                         resumed_rows=resumed_rows, seconds=time.perf_counter() - started,
                         encode_seconds=encode_seconds, workers=pool.plan.workers if pool is not None else 0,
                         startup_seconds=pool.startup_seconds if own_pool else 0.0,
                         rows_per_host=rows_by(results, "host"), rows_per_node=rows_by(results, "node_id"),
                         node_ips={r.node_id: r.node_ip for r in results},
                         warnings=report_warnings + (pool.warnings if pool is not None else []))
    if len(report.rows_per_node) > 1:
        log(report.placement_line(), file=sys.stderr)
    return report


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

    def actor_resources(self) -> dict:
        """What each actor asks Ray for: one GPU (and a CPU to feed it), or `threads` CPUs."""
        if self.device == "cuda":
            return {"num_cpus": 1, "num_gpus": self.gpus_per_worker}
        return {"num_cpus": self.threads, "num_gpus": 0}


def plan_workers(cfg: EmbeddingConfig, cluster_cpus: int, cluster_gpus: int, shards: int) -> WorkerPlan:
    """How many actors, with which resources: one per GPU when there are GPUs, else CPU actors.

    Asking for more than the cluster has never waits for resources that cannot appear: the plan
    shrinks to fit and says so in `warning`.
    """
    if cfg.device == "cuda" and cluster_gpus < 1:
        fallback = plan_cpu_workers(cfg, cluster_cpus, shards)
        note = "embedding.device is 'cuda' but the Ray cluster has no GPU: embedding on CPU actors instead"
        return dataclasses.replace(fallback, warning="; ".join(filter(None, [note, fallback.warning])))
    if cfg.device != "cpu" and cluster_gpus > 0:
        workers = min(cfg.workers or cluster_gpus, shards)
        warning = None
        if workers > cluster_gpus:
            warning = f"asked for {workers} GPU workers but the cluster has {cluster_gpus} GPUs: using {cluster_gpus}"
            workers = cluster_gpus
        return WorkerPlan(workers=max(1, workers), threads=1, gpus_per_worker=1, device="cuda", warning=warning)
    return plan_cpu_workers(cfg, cluster_cpus, shards)


def plan_cpu_workers(cfg: EmbeddingConfig, cluster_cpus: int, shards: int) -> WorkerPlan:
    cluster_cpus = max(1, cluster_cpus)
    workers = cfg.workers or cluster_cpus
    threads = cfg.threads_per_worker or max(1, cluster_cpus // workers)
    warning = None
    if workers * threads > cluster_cpus:
        fitted_threads = min(threads, cluster_cpus)
        fitted = cluster_cpus // fitted_threads
        warning = (f"asked for {workers} workers x {threads} threads but the cluster has {cluster_cpus} CPUs: "
                   f"running {fitted} worker{'s' if fitted != 1 else ''}"
                   + (f" x {fitted_threads} threads" if fitted_threads != threads else ""))
        workers, threads = fitted, fitted_threads
    return WorkerPlan(workers=max(1, min(workers, shards)), threads=threads, gpus_per_worker=0, device="cpu",
                      warning=warning)


class EmbeddingPool:
    """Ray actors that hold the encoder; `run` feeds them shards, `close` gives their resources back.

    Failures: an actor whose process or node dies has its shards handed to the other actors at
    once (the driver, not Ray, retries them, so a shard never waits on an actor that cannot come
    back); Ray restarts the actor (max_restarts) and it rejoins when it is up again. A shard is a
    pure function of its texts, so the result equals an undisturbed run's.
    """

    def __init__(self, model: ResolvedModel, cfg: EmbeddingConfig, ray_address: str | None = None,
                 max_workers: int | None = None, log=print):
        from orchestrator.ray_runtime import connect
        from workers.embedding import EmbeddingWorker

        started = time.perf_counter()
        cfg = with_model_pooling(cfg, model)
        self.ray = connect(ray_address)
        self.log = log
        self.timeout_s = placement_timeout_s()
        resources = self.ray.cluster_resources()
        self.plan = plan_workers(cfg, int(resources.get("CPU", 1)), int(resources.get("GPU", 0)),
                                 max_workers or 1 << 30)
        self.warnings = [self.plan.warning] if self.plan.warning else []
        if self.plan.warning:
            log(f"warning: {self.plan.warning}", file=sys.stderr)
        settings = encode_settings(cfg, self.plan.device)
        self.model_key = (model.weights_sha256, settings)
        # max_task_retries=0: a failed shard comes back to the driver, which gives it to a live actor
        actor_class = self.ray.remote(EmbeddingWorker).options(
            **self.plan.actor_resources(), max_restarts=3, max_task_retries=0)
        self.actors = [actor_class.remote(model.name, model.revision, model.weights_sha256, settings,
                                          self.plan.threads)
                       for _ in range(self.plan.workers)]
        self._keep_placed_actors()
        try:
            self.ray.get([actor.load.remote() for actor in self.actors])
        except self.ray.exceptions.RayError as e:
            self.close()
            raise describe_actor_failure(e) from None
        self.startup_seconds = time.perf_counter() - started  # Ray start (if any) and model loading

    def _keep_placed_actors(self) -> None:
        """Wait (bounded) until the actors have a place on the cluster; go on with those that do."""
        asked = len(self.actors)
        resources = self.plan.actor_resources()
        needs = {name: each for name, each in (("CPU", resources["num_cpus"]), ("GPU", resources["num_gpus"])) if each}
        free = self.ray.available_resources()
        if any(free.get(name, 0) < each * asked for name, each in needs.items()):
            self.log(f"warning: {asked} embedding workers need {describe_needs(needs, asked)} but the cluster has "
                     f"{describe_free(free, needs)} free now; waiting up to {self.timeout_s:.0f} s for a place",
                     file=sys.stderr)
        placed = placed_actors(self.ray, self.actors, self.timeout_s)
        for actor in self.actors:
            if actor not in placed:
                self.ray.kill(actor)
        self.actors = placed
        if not placed:
            raise UserError(f"no embedding worker found a place on the Ray cluster within {self.timeout_s:.0f} s: "
                            f"each needs {describe_needs(needs, 1)} and the cluster has "
                            f"{describe_free(self.ray.available_resources(), needs)} free (other jobs hold the "
                            f"rest); free some, or lower embedding.workers / threads_per_worker")
        if len(placed) < asked:
            warning = (f"only {len(placed)} of {asked} embedding workers found a place on the Ray cluster within "
                       f"{self.timeout_s:.0f} s: running on {len(placed)}")
            self.log(f"warning: {warning}", file=sys.stderr)
            self.warnings.append(warning)
            self.plan = dataclasses.replace(self.plan, workers=len(placed))

    def run(self, tasks: list, total_rows: int, resumed_rows: int = 0, progress: bool = True) -> list:
        """Embed every task's shard (each written to its own file); returns their ShardResults."""
        from tqdm import tqdm

        ray = self.ray
        queue = deque(tasks)
        running: dict = {}       # task ref -> (actor, task)
        recovering: dict = {}    # ready() ref -> an actor that failed; back in use once Ray restarted it
        live = list(self.actors)
        results = []

        def fill() -> None:
            for actor in live:
                while queue and sum(1 for a, _ in running.values() if a == actor) < IN_FLIGHT_PER_WORKER:
                    task = queue.popleft()
                    running[actor.embed_shard.remote(task)] = (actor, task)

        bar = tqdm(total=total_rows, initial=resumed_rows, unit="text", desc="embedding", file=sys.stderr,
                   disable=not progress, dynamic_ncols=True, smoothing=0.1)
        try:
            fill()
            while running or queue:
                ref = self._next_finished(running, recovering, shards_left=len(queue))
                if ref in recovering:
                    actor = recovering.pop(ref)
                    if ray_call_succeeded(ray, ref):
                        live.append(actor)
                    fill()
                    continue
                actor, task = running.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayActorError as e:
                    # its process or node died: the shard goes to a live actor, the actor waits for its restart
                    queue.appendleft(task)
                    if actor in live:
                        live.remove(actor)
                        recovering[actor.ready.remote()] = actor
                        self.log(f"warning: an embedding worker died ({first_line(e, 200)}); shard {task.index} "
                                 f"goes to another worker", file=sys.stderr)
                    fill()
                    continue
                except ray.exceptions.RayTaskError as e:
                    raise describe_actor_failure(e) from None
                results.append(result)
                bar.update(result.rows)
                fill()
        finally:
            bar.close()
        return results

    def _next_finished(self, running: dict, recovering: dict, shards_left: int):
        """The next call to finish. With nothing running, only a restarted actor can go on: wait
        for one, but not forever."""
        waiting_on = list(running) + list(recovering)
        timeout = None if running else self.timeout_s
        ready = self.ray.wait(waiting_on, num_returns=1, timeout=timeout)[0] if waiting_on else []
        if not ready:
            raise UserError(f"every embedding worker died and none came back within {self.timeout_s:.0f} s "
                            f"({shards_left} shards left); the shards already embedded are kept: run the same "
                            f"command again to resume")
        return ready[0]

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []


def describe_needs(needs: dict, count: int) -> str:
    return " and ".join(f"{each * count:g} {name}" for name, each in needs.items())


def describe_free(free: dict, needs: dict) -> str:
    return " and ".join(f"{free.get(name, 0):g} {name}" for name in needs)


def describe_actor_failure(error: BaseException) -> BaseException:
    cause = getattr(error, "cause", None) or error
    if isinstance(cause, UserError):
        return UserError(str(cause))
    text = str(cause)
    if "UserError" in text:
        return UserError(text.strip().splitlines()[-1].split("UserError: ", 1)[-1])
    return RuntimeError(f"embedding worker failed: {text.strip().splitlines()[-1] if text.strip() else cause!r}")


def rows_by(results: list, attribute: str) -> dict:
    """Rows embedded per value of a ShardResult attribute (host, node_id), largest first."""
    counts: Counter = Counter()
    for result in results:
        counts[getattr(result, attribute)] += result.rows
    return dict(counts.most_common())


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
