"""Benchmark: how the two Ray-parallel stages scale with workers, measured in one run.

    python bench/scale.py [--rows 4096] [--texts 1500] [--rounds 5] [--data PATH]

circuits   one parameter table of --rows rows (4 qubits, depth 6 template, exact Aer) evaluated by
           AerBackend split over 1 and 2 Ray circuit workers (one core each); the 1-worker figure
           is the anchor. For reference also the same table in this process, no Ray (Aer's own
           threads on every core).
embedding  `embed_dataset` of --texts SMS texts into a fresh cache (encode, write and verify the
           shards, assemble the HDF5 file) with 1 and 2 embedding workers of one torch thread
           each, actors loaded beforehand; the 1-worker figure is the anchor. The texts: --data
           (or B_DATA), else the project's named dataset sms_spam (downloaded once, checked, cached);
           offline, --data /path/to/SMSSpamCollection.
serial     the driver-side costs of the scaling model (docs/benchmarks.md): one Ray call to an actor, building
           a parameter-shift table, joining the workers' slices, assembling an HDF5 cache.

The measured configurations take turns (rounds, each in a fresh random order), so a busy machine
slows all of them alike; figures are medians. Tables go to stderr, one JSON line to stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_worker_niceness", "0")   # as workers.cluster does for its local Ray

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SEED = 0
sys.path.insert(0, str(REPO))

from orchestrator.quantum.backends.aer import aer_on_workers  # noqa: E402
from orchestrator.quantum.backends.aer import AerBackend, AerOptions  # noqa: E402
from orchestrator.quantum.circuits import QuantumSpec, TranspileCache, build_dressed_circuit  # noqa: E402
from orchestrator.quantum.runner import CircuitRunner  # noqa: E402
from turns import interleaved  # noqa: E402  (bench/turns.py)
from orchestrator.quantum.shift_rule import rows_per_sample, shifted_parameter_table  # noqa: E402
from sms_spam import sms_spam_file  # noqa: E402  (bench/sms_spam.py)

SPEC = QuantumSpec(n_qubits=4, depth=6)


def log(line: str = "") -> None:
    print(line, file=sys.stderr, flush=True)


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def circuit_table(rows: int):
    """A --rows-row table for the transpiled W1 template, and the compiled circuit to run it on."""
    compiled = CircuitRunner(build_dressed_circuit(SPEC), AerBackend(),
                                       transpile_cache=TranspileCache()).transpiled()
    rng = np.random.default_rng(SEED)
    samples = -(-rows // rows_per_sample(SPEC.n_qubits + SPEC.n_weights))
    table = shifted_parameter_table(rng.uniform(-1.5, 1.5, (samples, SPEC.n_qubits)),
                                    rng.normal(0, 0.5, SPEC.n_weights))[:rows]
    return compiled, table[:, compiled.columns]


def bench_circuits(rows: int, rounds: int) -> dict:
    compiled, table = circuit_table(rows)
    backends = {f"{n} worker{'s' if n > 1 else ''}": aer_on_workers(AerOptions(), workers=n, min_rows=1)
                for n in (1, 2)}
    local = AerBackend()

    def on(backend):
        return lambda: timed(lambda: backend.submit(compiled.circuit, compiled.observables, table, None).result())

    timers = {name: on(backend) for name, backend in backends.items()}
    timers["this process, no Ray"] = on(local)
    try:
        seconds = interleaved(timers, rounds)
        results = [b.submit(compiled.circuit, compiled.observables, table, None).result() for b in backends.values()]
        assert all(np.array_equal(r, results[0]) for r in results), "every split gives the same numbers"
    finally:
        for backend in backends.values():
            backend.close()
    return {name: {"seconds": s, "rows_per_s": rows / s} for name, s in seconds.items()}


def bench_embedding(data: Path, texts: int, rounds: int, tmp: str) -> dict:
    from embeddings.models import resolve_model
    from orchestrator.config import DataConfig, EmbeddingConfig
    from orchestrator.data.datasets import load_dataset
    from embeddings.stage import embed_dataset, with_model_pooling
    from workers.embedding import EmbeddingPool

    dataset = load_dataset(DataConfig(format="uci", path=str(data), limit=texts))
    runs = iter(range(1 << 30))

    def config(workers: int, cache_dir: str = f"{tmp}/unused") -> EmbeddingConfig:
        return EmbeddingConfig(cache_dir=cache_dir, workers=workers, threads_per_worker=1, shard_rows=128)

    model = resolve_model(config(1).model)
    pools = {n: EmbeddingPool(model, with_model_pooling(config(n), model)) for n in (1, 2)}

    def on(workers: int):
        def one_run() -> float:
            cache_dir = f"{tmp}/embed-{next(runs)}"
            report = embed_dataset(dataset, config(workers, cache_dir), progress=False, pool=pools[workers])
            assert not report.hit and report.encoded_rows == len(dataset)
            return report.seconds
        return one_run

    try:
        seconds = interleaved({f"{n} worker{'s' if n > 1 else ''}": on(n) for n in (1, 2)}, rounds)
    finally:
        for pool in pools.values():
            pool.close()
    return {name: {"seconds": s, "texts_per_s": len(dataset) / s} for name, s in seconds.items()}


class Echo:
    def ping(self) -> None:
        return None


def bench_serial(tmp: str, rows: int) -> dict:
    """Driver-side costs, each the median of repeated calls (ms)."""
    import ray

    from embeddings.store import EmbeddingStore, ShardPlan, write_shard

    echo = ray.remote(num_cpus=0)(Echo).remote()
    ray.get(echo.ping.remote())
    ray_call_ms = 1e3 * statistics.median(timed(lambda: ray.get(echo.ping.remote())) for _ in range(200))
    ray.kill(echo)

    rng = np.random.default_rng(SEED)
    weights, inputs = rng.normal(0, 0.5, SPEC.n_weights), rng.uniform(-1.5, 1.5, (16, SPEC.n_qubits))
    table_ms = 1e3 * statistics.median(timed(lambda: shifted_parameter_table(inputs, weights)) for _ in range(50))
    slices = np.array_split(rng.normal(size=(rows, SPEC.n_qubits)), 2)
    concat_ms = 1e3 * statistics.median(timed(lambda: np.concatenate(slices)) for _ in range(50))

    store, key, texts = EmbeddingStore(tmp), "0" * 64, 10_000
    plan = store.prepare_parts(key, ShardPlan(rows=texts, shard_rows=512))
    vectors = rng.normal(size=(texts, 384)).astype(np.float32)
    for index in range(plan.count):
        start, stop = plan.bounds(index)
        write_shard(store.shard_path(key, index), key, index, start, vectors[start:stop])
    assemble_s = timed(lambda: store.assemble(key, plan, np.zeros(texts, np.int64), {}))
    return {"ray_actor_call_ms": ray_call_ms, "shift_table_w1_batch16_ms": table_ms,
            f"concatenate_{rows}_rows_ms": concat_ms, "hdf5_assemble_ms_per_1000_rows": 1e3 * assemble_s / texts * 1000}


def speedups(figures: dict, key: str, anchor: str = "1 worker") -> dict:
    return {name: f[key] / figures[anchor][key] for name, f in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4096, help="rows of the circuit parameter table")
    parser.add_argument("--texts", type=int, default=1500, help="SMS texts to embed")
    parser.add_argument("--rounds", type=int, default=5, help="timed turns of each configuration")
    parser.add_argument("--skip-embedding", action="store_true", help="circuits and serial costs only")
    parser.add_argument("--data", metavar="PATH", default=os.environ.get("B_DATA"),
                        help="the SMSSpamCollection file to embed (default: $B_DATA, else the named dataset "
                             "sms_spam, downloaded once and cached)")
    args = parser.parse_args()
    data = None if args.skip_embedding else sms_spam_file(args.data, "pass --data with a local copy instead")

    import ray

    # 3 logical CPUs on 2 cores: the 1- and 2-worker pools stay loaded side by side and take turns,
    # so at most 2 actors compute at any time
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, configure_logging=False)
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        circuits = bench_circuits(args.rows, args.rounds)
        embedding = {} if args.skip_embedding else bench_embedding(data, args.texts, args.rounds, tmp)
        serial = bench_serial(tmp, args.rows)
    ray.shutdown()

    circuit_speedup = speedups(circuits, "rows_per_s")
    embed_speedup = speedups(embedding, "texts_per_s") if embedding else {}
    log(f"\ncircuits: {args.rows}-row table, {SPEC.n_qubits} qubits, depth {SPEC.depth}, exact Aer ({cores} cores)")
    log("| evaluation | seconds | rows/s | vs 1 worker |\n| --- | --- | --- | --- |")
    for name, f in circuits.items():
        log(f"| {name} | {f['seconds']:.3f} | {f['rows_per_s']:,.0f} | {circuit_speedup[name]:.2f}x |")
    if embedding:
        log(f"\nembedding: {args.texts} SMS texts, all-MiniLM-L6-v2, 1 torch thread per worker")
        log("| embed_dataset | seconds | texts/s | vs 1 worker |\n| --- | --- | --- | --- |")
        for name, f in embedding.items():
            log(f"| {name} | {f['seconds']:.2f} | {f['texts_per_s']:.0f} | {embed_speedup[name]:.2f}x |")
    log("\nserial driver-side costs: " + ", ".join(f"{k} {v:.2f}" for k, v in serial.items()))
    print(json.dumps({
        "bench": "scale", "cores": cores, "rounds": args.rounds,
        "circuits": {"rows": args.rows, "qubits": SPEC.n_qubits, "depth": SPEC.depth,
                     "rows_per_s": {k: round(v["rows_per_s"]) for k, v in circuits.items()},
                     "speedup_vs_1_worker": {k: round(v, 2) for k, v in circuit_speedup.items()}},
        "embedding": {"texts": args.texts,
                      "texts_per_s": {k: round(v["texts_per_s"], 1) for k, v in embedding.items()},
                      "speedup_vs_1_worker": {k: round(v, 2) for k, v in embed_speedup.items()}},
        "serial": {k: round(v, 3) for k, v in serial.items()},
    }))


if __name__ == "__main__":
    main()
