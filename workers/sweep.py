"""A sweep's trials on Ray Tune: one Tune trial per run, placed wherever the cluster has CPUs.

The trials are given, not searched: the orchestrator chooses the settings and seeds (so that a
killed sweep can run exactly the unfinished ones again), and Tune schedules them, as many at
once as `cpus_per_trial` fits into the cluster's CPUs, on every node. Each trial reports its
run's epoch metrics with `tune.report` as it goes, so Tune's own results (`storage/<name>/`)
hold them too; the run dirs stay the record the orchestrator reads.
"""
from __future__ import annotations

import datetime
import math
import os
import sys
from pathlib import Path
from typing import Callable, Optional

import torch
from ray import tune

from workers.cluster import connect

RunTrial = Callable[[dict, Callable[[dict], None]], dict]   # (payload, report) -> final metrics


def run_trials(run_trial: RunTrial, payloads: list[dict], storage: Path, cpus_per_trial: float = 1.0,
               address: Optional[str] = None, progress: bool = True) -> dict[str, Optional[str]]:
    """Run `run_trial(payload, report)` for every payload as a Ray Tune trial; return each
    payload's name -> None when it finished, else the one-line error that stopped it."""
    if not payloads:
        return {}
    connect(address)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")   # with verbose=0: no experiment banner, no status tables

    threads = max(1, math.ceil(cpus_per_trial))

    def trainable(config: dict) -> None:
        os.environ["OMP_NUM_THREADS"] = str(threads)   # Aer and torch keep to the CPUs the trial holds
        torch.set_num_threads(threads)
        final = run_trial(config["payload"], lambda metrics: tune.report(numbers(metrics)))
        tune.report(numbers({**final, "done": True}))

    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": cpus_per_trial}),
        param_space={"payload": tune.grid_search(payloads)},
        tune_config=tune.TuneConfig(num_samples=1, trial_name_creator=trial_name, trial_dirname_creator=trial_name),
        run_config=tune.RunConfig(
            name=datetime.datetime.now(datetime.timezone.utc).strftime("tune-%Y%m%d-%H%M%S"),
            storage_path=str(Path(storage).resolve()), verbose=0,
            failure_config=tune.FailureConfig(max_failures=0),
            callbacks=[TrialLines()] if progress else []))
    results = tuner.fit()
    return {result.config["payload"]["name"]: one_line(result.error) if result.error else None for result in results}


def trial_name(trial) -> str:
    return trial.config["payload"]["name"]


def numbers(metrics: dict) -> dict:
    """What Tune keeps of a metrics dict: numbers and flags (not the confusion matrix)."""
    return {key: value for key, value in metrics.items() if isinstance(value, (int, float, bool))}


def one_line(error: BaseException) -> str:
    """The message a trial failed with, without Ray's traceback around it."""
    cause = getattr(error, "cause", None) or error
    lines = [line for line in str(cause).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


class TrialLines(tune.Callback):
    """One line on stderr as each trial ends."""

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        result = trial.last_result or {}
        f1, acc = result.get("test_f1"), result.get("test_accuracy")
        shown = f"test accuracy {acc:.4f}  F1 {f1:.4f}" if isinstance(f1, float) and isinstance(acc, float) else ""
        print(f"trial {trial_name(trial)} finished  {shown}", file=sys.stderr, flush=True)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        print(f"trial {trial_name(trial)} failed", file=sys.stderr, flush=True)
