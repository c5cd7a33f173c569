"""The small run most tests share, and what a killed and resumed run is checked with: kill -9 after a
checkpoint, then "the same run" (every number of the summary and of each epoch, timings aside)."""
import json
import os
import signal
import subprocess
import sys
import time

import torch

SMALL = ["--limit", "200", "--epochs", "2", "-q", "--set", "quantum.n_qubits=2", "--set", "quantum.depth=1",
         "--set", "train.batch_size=32", "--set", "train.checkpoint_every=2"]


def without_timings(rows):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def checkpoint_step(run_dir) -> int:
    """The step a resume would start from: checkpoint.pt's, or checkpoint.previous.pt's where a kill
    came between the two renames of a checkpoint (-1: none written yet)."""
    for name in ("checkpoint.pt", "checkpoint.previous.pt"):
        try:
            return torch.load(run_dir / name, weights_only=False)["step"]
        except (FileNotFoundError, EOFError, RuntimeError):   # not written yet, or being replaced
            continue
    return -1


def kill_after_checkpoint(args: list, run_dir, target: int, total_steps: int) -> int:
    """Start `orchestrate run ARGS --run-dir RUN_DIR` in a subprocess and SIGKILL it once a checkpoint
    at step `target` or later is on disk; the checkpointed step it died after."""
    process = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", *args, "--run-dir", str(run_dir)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while checkpoint_step(run_dir) < target:
        assert process.poll() is None, f"the run ended before step {target}"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (run_dir / "summary.json").exists(), "the kill came too late to test anything"
    interrupted_at = checkpoint_step(run_dir)
    assert target <= interrupted_at < total_steps
    return interrupted_at


def assert_same_run(resumed_dir, expected_dir):
    expected, resumed = (json.loads((d / "summary.json").read_text()) for d in (expected_dir, resumed_dir))
    for key in ("test", "classical_baseline", "quantum", "cache", "best", "split", "epochs_run"):
        assert resumed[key] == expected[key], key
    assert resumed["timing"]["steps"] == expected["timing"]["steps"]
    metrics = [[json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
               for d in (expected_dir, resumed_dir)]
    assert without_timings(metrics[1]) == without_timings(metrics[0])


def yaml_of_a_run() -> str:
    """config.yaml as a run of the default config writes it."""
    from orchestrator.config import config_yaml, load_config

    return config_yaml(load_config(None))
