"""The Ray actor that embeds shards: `load` loads the encoder, `embed_shard` embeds one shard.

The constructor only records what to load, so that the driver can tell "placed on a node" (the
constructor returned) from "loading a model" (which may take minutes on a cold node): an actor
the cluster has no room for is noticed within seconds instead of waiting forever. After a crash
Ray restarts the actor with the same arguments and the next shard loads the encoder again.
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

from embeddings.encode import Encoder, EncodeSettings
from embeddings.models import resolve_model
from embeddings.store import write_shard


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
        vectors = self.encoder.encode(task.texts)
        checksum = write_shard(task.path, task.key, task.index, task.start, vectors)
        node = ray.get_runtime_context()
        return ShardResult(index=task.index, rows=len(task.texts), sha256=checksum,
                           seconds=time.perf_counter() - started, host=socket.gethostname(), pid=os.getpid(),
                           node_id=node.get_node_id(), node_ip=ray.util.get_node_ip_address())
