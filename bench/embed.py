"""Benchmark: embedding throughput of the project against the anchors, measured in the same run.

    python bench/embed.py                # SMS Spam Collection (5,574 texts), max_length 128
    B_DATA=/path/to/SMSSpamCollection python bench/embed.py    # offline: a local copy

The texts: B_DATA, else the project's named dataset sms_spam (downloaded once, checked, cached).

Times, on the same texts and the same model (all-MiniLM-L6-v2):
  project   `embed_dataset` into a fresh cache (tokenize, batch, encode on Ray actors, write and
            verify the HDF5 shards, assemble): median of B_RUNS runs with the actors already
            loaded, as the anchor has its model loaded; plus one cold `orchestrate embed` command
            (Ray start, actor start, everything) for the whole picture
  anchor    sentence-transformers' encode() (bench/anchors/st_encode.py)
  naive     the one-text-at-a-time loop, padded to max_length (same script, W_NAIVE=1; its cost per
            text does not depend on the text, so a sample of B_NAIVE_TEXTS texts is timed)
The anchors run with ANCHOR_PYTHON (default: this interpreter) with B_THREADS torch threads.
Prints one JSON line with texts/s of each and the ratios.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
ANCHOR = Path(__file__).resolve().parent / "anchors" / "st_encode.py"
RUNS = int(os.environ.get("B_RUNS", 3))          # turns of anchor + project
MAX_LENGTH = int(os.environ.get("B_MAX_LEN", 128))
THREADS = int(os.environ.get("B_THREADS", len(os.sched_getaffinity(0))))
NAIVE_TEXTS = int(os.environ.get("B_NAIVE_TEXTS", 300))

sys.path.insert(0, str(REPO))

from sms_spam import sms_spam_file  # noqa: E402  (bench/sms_spam.py)


def run_anchor(data: Path, naive: bool) -> float:
    """texts/s of one anchor run (the script loads its model, warms up, then times one pass)."""
    python = os.environ.get("ANCHOR_PYTHON", sys.executable)
    env = dict(os.environ, W_DATA=str(data), W_THREADS=str(THREADS), W_MAX_LEN=str(MAX_LENGTH), W_RUNS="1")
    if naive:
        env.update(W_NAIVE="1", W_TEXTS=str(NAIVE_TEXTS))
    out = subprocess.run([python, str(ANCHOR)], env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["texts_per_s"]


class Project:
    """The project's embedding stage with its actors loaded once, as the anchor has its model loaded."""

    def __init__(self, tmp: str, data: Path):
        from embeddings.models import resolve_model
        from orchestrator.config import DataConfig, EmbeddingConfig
        from orchestrator.data.datasets import load_dataset
        from embeddings.stage import with_model_pooling
        from workers.embedding import EmbeddingPool

        self.tmp, self.runs = tmp, 0
        self.dataset = load_dataset(DataConfig(format="uci", path=str(data)))
        self.config = lambda cache_dir: EmbeddingConfig(max_length=MAX_LENGTH, cache_dir=cache_dir)
        model = resolve_model(self.config(tmp).model)
        self.pool = EmbeddingPool(model, with_model_pooling(self.config(tmp), model))
        self.texts_per_s()  # warm-up

    def texts_per_s(self) -> float:
        """One full embedding of the dataset into a fresh cache folder."""
        from embeddings.stage import embed_dataset

        self.runs += 1
        started = time.perf_counter()
        report = embed_dataset(self.dataset, self.config(f"{self.tmp}/run{self.runs}"), progress=False, pool=self.pool)
        seconds = time.perf_counter() - started
        assert report.encoded_rows == len(self.dataset) and not report.hit
        return len(self.dataset) / seconds


def time_cold_command(data: Path) -> float:
    """One whole `orchestrate embed` in a fresh process: Ray start, actor start, encode, cache."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "orchestrator.cli", "embed", "--data", str(data), "-q",
                        "--set", f"embedding.max_length={MAX_LENGTH}", "--cache-dir", tmp],
                       check=True, capture_output=True, cwd=REPO)
        return time.perf_counter() - started


def main() -> None:
    # Anchor and project take turns, so a busy machine slows both alike; medians of RUNS turns.
    data = sms_spam_file(os.environ.get("B_DATA"), "set B_DATA=/path/to/SMSSpamCollection, a local copy, instead")
    anchor, project = [], []
    with tempfile.TemporaryDirectory() as tmp:
        stage = Project(tmp, data)
        for _ in range(RUNS):
            anchor.append(run_anchor(data, naive=False))
            project.append(stage.texts_per_s())
        workers, threads = stage.pool.plan.workers, stage.pool.plan.threads
        stage.pool.close()
    naive = run_anchor(data, naive=True)
    cold_s = time_cold_command(data)
    project_tps, anchor_tps = statistics.median(project), statistics.median(anchor)
    print(json.dumps({
        "bench": "embed", "data": data.name, "texts": len(stage.dataset), "max_length": MAX_LENGTH,
        "project_texts_per_s": round(project_tps, 1), "workers": workers, "threads_per_worker": threads,
        "st_encode_texts_per_s": round(anchor_tps, 1), "naive_loop_texts_per_s": round(naive, 1),
        "ratio_vs_st_encode": round(project_tps / anchor_tps, 2),
        "ratio_vs_naive_loop": round(project_tps / naive, 2),
        "turns": {"project": [round(x, 1) for x in project], "st_encode": [round(x, 1) for x in anchor]},
        "cold_command_s": round(cold_s, 1),
        "cold_command_texts_per_s": round(len(stage.dataset) / cold_s, 1),
        "targets": {"ratio_vs_st_encode": 1.5, "ratio_vs_naive_loop": 10},
    }))


if __name__ == "__main__":
    main()
