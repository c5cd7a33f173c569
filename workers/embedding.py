"""The Ray actor that embeds shards: its constructor loads the encoder, one method embeds a shard."""
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


class EmbeddingWorker:
    def __init__(self, model_name: str, revision: str | None, weights_sha256: str, settings: EncodeSettings,
                 threads: int | None):
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        # Resolve on this node: the driver's folder may not exist here; the hash proves it is the same model.
        model = resolve_model(model_name, revision)
        if model.weights_sha256 != weights_sha256:
            raise RuntimeError(f"model {model_name} on {socket.gethostname()} has other weights than the driver's")
        self.encoder = Encoder(model.path, settings, threads=threads)

    def ready(self) -> bool:
        """Returns once the constructor has loaded the encoder (used to time start-up apart from work)."""
        return True

    def embed_shard(self, task: ShardTask) -> ShardResult:
        started = time.perf_counter()
        vectors = self.encoder.encode(task.texts)
        checksum = write_shard(task.path, task.key, task.index, task.start, vectors)
        return ShardResult(index=task.index, rows=len(task.texts), sha256=checksum,
                           seconds=time.perf_counter() - started, host=socket.gethostname(), pid=os.getpid())
