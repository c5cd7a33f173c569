"""Embedding on Ray: the actor that embeds shards, and the pool that feeds them.

`EmbeddingWorker` (the actor): `load` loads the encoder, `embed_shard` embeds one shard into its
own file. The constructor only records what to load, so that the driver can tell "placed on a node" (the
constructor returned) from "loading a model" (which may take minutes on a cold node): an actor
the cluster has no room for is noticed within seconds instead of waiting forever. After a crash
Ray restarts the actor with the same arguments and the next shard loads the encoder again.

`EmbeddingPool` (the driver's side): starts the actors where the cluster has room, hands them
shards, moves the shards of a dead actor to live ones; `embeddings.stage.embed_dataset` uses it
as its `ShardPool`.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
from collections import deque
from dataclasses import dataclass

from embeddings.config import EmbeddingConfig
from embeddings.encode import Encoder, EncodeSettings
from embeddings.models import ResolvedModel, resolve_model
from embeddings.stage import ShardResult, ShardTask, StartPool, encode_settings
from embeddings.store import write_shard
from orchestrator.core.errors import UserError, first_line
from orchestrator.core.log import progress as progress_display
from workers.cluster import connect, place_actors, placement_timeout_s, ray_call_succeeded

IN_FLIGHT_PER_WORKER = 2  # one shard running, one queued, so no actor waits on the driver

log = logging.getLogger(__name__)


class EmbeddingWorker:
    def __init__(self, model_name: str, revision: str | None, weights_sha256: str, settings: EncodeSettings,
                 threads: int | None):
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        self._model = (model_name, revision, weights_sha256)
        self._settings, self._threads = settings, threads
        self.encoder: Encoder | None = None

    def ready(self) -> bool:
        """Returns as soon as the actor runs somewhere: it was placed on a node."""
        return True

    def load(self) -> bool:
        """Load the encoder (the start-up cost); embed_shard also calls it after a restart."""
        if self.encoder is None:
            model_name, revision, weights_sha256 = self._model
            # Resolve on this node: the driver's folder may not exist here; the hash proves it is the same model.
            model = resolve_model(model_name, revision)
            if model.weights_sha256 != weights_sha256:
                raise RuntimeError(f"model {model_name} on {socket.gethostname()} has other weights than the driver's")
            self.encoder = Encoder(model.path, self._settings, threads=self._threads)
        return True

    def embed_shard(self, task: ShardTask) -> ShardResult:
        import ray

        self.load()
        started = time.perf_counter()
        checksum = write_shard(task.path, task.key, task.index, task.start, self.encoder.content(task.texts))
        node = ray.get_runtime_context()
        return ShardResult(index=task.index, rows=len(task.texts), sha256=checksum,
                           seconds=time.perf_counter() - started, host=socket.gethostname(), pid=os.getpid(),
                           node_id=node.get_node_id(), node_ip=ray.util.get_node_ip_address())


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
                 max_workers: int | None = None):
        """`cfg` with a concrete pooling (embeddings.stage.with_model_pooling): the settings key
        `embed_dataset` compares against."""
        if cfg.pooling == "auto":
            raise ValueError("EmbeddingPool needs a concrete pooling: pass embeddings.stage.with_model_pooling(cfg, model)")
        started = time.perf_counter()
        self.ray = connect(ray_address)
        self.timeout_s = placement_timeout_s()
        resources = self.ray.cluster_resources()
        self.plan = plan_workers(cfg, int(resources.get("CPU", 1)), int(resources.get("GPU", 0)),
                                 max_workers or 1 << 30)
        self.warnings = [self.plan.warning] if self.plan.warning else []
        if self.plan.warning:
            log.warning(self.plan.warning)
        self.settings = encode_settings(cfg, self.plan.device)
        self.weights_sha256 = model.weights_sha256
        # max_task_retries=0: a failed shard comes back to the driver, which gives it to a live actor
        actor_class = self.ray.remote(EmbeddingWorker).options(
            **self.plan.actor_resources(), max_restarts=3, max_task_retries=0)
        self.actors = self._placed_actors(lambda: actor_class.remote(
            model.name, model.revision, model.weights_sha256, self.settings, self.plan.threads))
        try:
            self.ray.get([actor.load.remote() for actor in self.actors])
        except self.ray.exceptions.RayError as e:
            self.close()
            raise describe_actor_failure(e) from None
        self.startup_seconds = time.perf_counter() - started  # Ray start (if any) and model loading

    @property
    def device(self) -> str:
        return self.plan.device

    @property
    def workers(self) -> int:
        return self.plan.workers

    def settings_key(self) -> tuple:
        """What the loaded actors compute: the model's weights and the encode settings."""
        return (self.weights_sha256, self.settings)

    def _placed_actors(self, start) -> list:
        """Start the planned actors and wait (bounded) until they have a place on the cluster;
        go on with those that do."""
        asked = self.plan.workers
        resources = self.plan.actor_resources()
        needs = {name: each for name, each in (("CPU", resources["num_cpus"]), ("GPU", resources["num_gpus"])) if each}
        free = self.ray.available_resources()
        if any(free.get(name, 0) < each * asked for name, each in needs.items()):
            log.warning(f"{asked} embedding workers need {describe_needs(needs, asked)} but the cluster has "
                        f"{describe_free(free, needs)} free now; waiting up to {self.timeout_s:.0f} s for a place")
        placed = place_actors(self.ray, start, asked, self.timeout_s)
        if not placed:
            raise UserError(f"no embedding worker found a place on the Ray cluster within {self.timeout_s:.0f} s: "
                            f"each needs {describe_needs(needs, 1)} and the cluster has "
                            f"{describe_free(self.ray.available_resources(), needs)} free (other jobs hold the "
                            f"rest); free some, or lower embedding.workers / threads_per_worker")
        if len(placed) < asked:
            warning = (f"only {len(placed)} of {asked} embedding workers found a place on the Ray cluster within "
                       f"{self.timeout_s:.0f} s: running on {len(placed)}")
            log.warning(warning)
            self.warnings.append(warning)
            self.plan = dataclasses.replace(self.plan, workers=len(placed))
        return placed

    def run(self, tasks: list, total_rows: int, resumed_rows: int = 0, progress: bool = True) -> list:
        """Embed every task's shard (each written to its own file); returns their ShardResults."""

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

        bar = progress_display(total=total_rows, initial=resumed_rows, unit="text", desc="embedding", enabled=progress)
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
                        log.warning(f"an embedding worker died ({first_line(e, 200)}); shard {task.index} "
                                    f"goes to another worker")
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


def ray_pool_starter(ray_address: str | None = None) -> StartPool:
    """What `embed_dataset` calls to start a pool: Ray actors on the cluster at `ray_address`
    (else RAY_ADDRESS, else a local Ray), no more of them than there are shards to embed."""
    def start(model: ResolvedModel, cfg: EmbeddingConfig, shards: int) -> EmbeddingPool:
        return EmbeddingPool(model, cfg, ray_address=ray_address, max_workers=shards)
    return start
