"""The training run: cached vectors in, a trained hybrid head, baselines and a run dir out.

`train_and_report` reads top to bottom like a plain training script:

    standardise features with the train split's mean and std
    build the HybridHead, optimizer, lr schedule, weighted loss
    for each epoch: shuffle (seeded per epoch), step through mini-batches, checkpoint,
                    evaluate on validation, keep the best weights, stop early on no progress
    evaluate the best weights on test; fit the classical baselines on the same vectors
    write metrics.jsonl, summary.json, plots

Every training step is one request to the scheduler (values + Jacobian in one job); every
evaluation (validation each epoch, test at the end) is one values-only request.
"""
from __future__ import annotations

import contextlib
import math
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from orchestrator import baseline, runs
from orchestrator.config import Config, to_dict
from orchestrator.data import Dataset, Split
from orchestrator.journal import JobJournal
from orchestrator.metrics import Scores, score

IMBALANCE_RATIO = 1.5  # class_weights auto: balance when the largest class is this many times the smallest


@dataclass(frozen=True)
class Features:
    """Standardised vectors and labels of one split."""

    x: torch.Tensor     # (rows, F) float32
    y: torch.Tensor     # (rows,) int64


def standardiser(train_vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std of the train split (std 1 where a feature is constant)."""
    mean = train_vectors.mean(axis=0, dtype=np.float64)
    std = train_vectors.std(axis=0, dtype=np.float64)
    return mean, np.where(std > 1e-12, std, 1.0)


def standardise(vectors: np.ndarray, labels: np.ndarray, mean: np.ndarray, std: np.ndarray) -> Features:
    x = ((vectors.astype(np.float64) - mean) / std).astype(np.float32)
    return Features(x=torch.from_numpy(x), y=torch.from_numpy(labels.astype(np.int64)))


def class_weights(labels: np.ndarray, n_classes: int, policy: str) -> torch.Tensor | None:
    """'balanced' weights n / (C * count_c); 'auto' uses them only when the classes are imbalanced."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    imbalanced = counts.max() > IMBALANCE_RATIO * max(counts.min(), 1.0)
    if policy == "none" or (policy == "auto" and not imbalanced):
        return None
    weights = len(labels) / (n_classes * np.maximum(counts, 1.0))
    return torch.tensor(weights, dtype=torch.float32)


def lr_factor(step: int, total_steps: int, schedule: str) -> float:
    """Multiplier of the base lr after `step` steps: cosine from 1 to 0 over the run, or constant."""
    if schedule == "none" or total_steps <= 0:
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))


def epoch_order(n_rows: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the train rows in `epoch`: a function of (seed, epoch) only, so a resumed run
    visits the rows in the same order as an uninterrupted one."""
    return np.random.default_rng([seed, epoch]).permutation(n_rows)


def rng_states() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Evaluation:
    loss: float
    scores: Scores


def evaluate(head: nn.Module, features: Features, loss_fn: nn.Module, n_classes: int, positive: int) -> Evaluation:
    """One values-only request for the whole split (no Jacobian, no shifted rows)."""
    head.eval()
    with torch.no_grad():
        logits = head(features.x)
        loss = float(loss_fn(logits, features.y))
    head.train()
    return Evaluation(loss=loss, scores=score(features.y.numpy(), logits.argmax(dim=1).numpy(), n_classes, positive))


def build_head(config: Config, n_features: int, n_classes: int, run_dir: Path | None = None):
    """The HybridHead on the configured backend. On a remote backend (fake_/ibm_ devices) its
    jobs go through the run dir's job journal when `run_dir` is given."""
    from orchestrator.backends import backend_kind
    from orchestrator.backends.aer import AerOptions
    from orchestrator.circuits import QuantumSpec
    from orchestrator.model import build_hybrid_head

    q = config.quantum
    spec = QuantumSpec(n_qubits=q.n_qubits, depth=q.depth)
    if backend_kind(q.backend) == "aer":
        if q.circuit_workers:
            from orchestrator.ray_runtime import connect

            connect(config.ray.address)   # the workers join the run's cluster
        return build_hybrid_head(n_features, n_classes, spec=spec, optimization_level=q.optimization_level,
                                 aer_options=AerOptions(shots=q.shots, seed=q.seed, noise_model=q.noise_model,
                                                        max_parameter_sets_per_job=q.max_parameter_sets_per_job,
                                                        workers=q.circuit_workers,
                                                        min_rows_for_workers=q.min_rows_for_workers))
    from orchestrator.backends.ibm import RuntimeBackend, runtime_options

    backend = RuntimeBackend(q.backend, runtime_options(config))
    head = build_hybrid_head(n_features, n_classes, spec=spec, backend=backend, optimization_level=q.optimization_level)
    if run_dir is not None:
        scheduler = head.scheduler
        head.scheduler.job_hook = JobJournal(
            run_dir, config.runtime.max_qpu_seconds,
            lambda intent: backend.estimate_job_seconds(intent.rows, scheduler.transpiled().circuit))
    return head


def restore_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])


def train_and_report(config: Config, dataset: Dataset, vectors: np.ndarray, split: Split, run_dir: Path,
                     embed_info: dict, progress: bool = True, resume: bool = False) -> dict:
    """Train, evaluate, compare with the classical baselines, write the run dir; return summary.json's dict.

    resume=True continues from run_dir/checkpoint.pt: on an exact backend the result equals an
    uninterrupted run's."""
    from tqdm import tqdm

    t = config.train
    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)  # measured: 2 torch threads halve Aer's speed on a 2-core machine
    with contextlib.ExitStack() as stack:
        stack.callback(torch.set_num_threads, threads_before)
        n_classes = len(dataset.label_names)
        positive = dataset.label_names.index(dataset.positive_label)
        mean, std = standardiser(vectors[split.train])
        train = standardise(vectors[split.train], dataset.labels[split.train], mean, std)
        val = standardise(vectors[split.val], dataset.labels[split.val], mean, std)
        test = standardise(vectors[split.test], dataset.labels[split.test], mean, std)
        weights = class_weights(train.y.numpy(), n_classes, t.class_weights)

        seed_everything(t.seed)
        head = build_head(config, vectors.shape[1], n_classes, run_dir)
        stack.callback(close_backend, head.scheduler.backend)   # ends a Session/Batch on success, error, Ctrl-C
        optimizer_class = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
        optimizer = optimizer_class(head.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        steps_per_epoch = math.ceil(len(train.y) / t.batch_size)
        total_steps = steps_per_epoch * t.epochs
        lr_schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, total_steps, t.schedule))
        loss_fn = nn.CrossEntropyLoss(weight=weights)
        counters = head.scheduler.counters

        history: list[dict] = []
        step_seconds: list[float] = []
        best = {"metric": t.select_metric, "value": -math.inf, "epoch": None}
        epochs_without_progress = 0
        step, start_epoch, start_batch = 0, 0, 0
        running = {"loss_sum": 0.0, "correct": 0, "seen": 0, "predictions": [], "targets": []}  # this epoch so far
        train_seconds_before = 0.0
        if resume:
            state = runs.load_torch(run_dir / runs.CHECKPOINT)
            head.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            lr_schedule.load_state_dict(state["lr_scheduler"])
            restore_rng_states(state["rng"])
            step, start_epoch, start_batch = state["step"], state["epoch"], state["next_batch"]
            best, epochs_without_progress = state["best"], state["epochs_without_progress"]
            history, step_seconds, running = state["history"], state["step_seconds"], state["running"]
            train_seconds_before = state["train_seconds"]
            counters.total.jobs, counters.total.circuits, counters.total.shots = (
                state["counters"]["jobs"], state["counters"]["circuits"], state["counters"]["shots"])
            counters.requests = state["counters"]["requests"]
            resumed_order = state["data_order"]
            embed_info = state["embed_info"]  # the summary reports how the run's vectors were first obtained
            print(f"resuming at epoch {start_epoch + 1}, step {step}", file=sys.stderr)
        else:
            runs.write_yaml_atomically(run_dir / "config.yaml", to_dict(config))
        train_started = time.perf_counter()

        def checkpoint(epoch: int, order: np.ndarray, next_batch: int) -> None:
            runs.save_torch_atomically(run_dir / runs.CHECKPOINT, {
                "model": head.state_dict(), "optimizer": optimizer.state_dict(),
                "lr_scheduler": lr_schedule.state_dict(), "rng": rng_states(),
                "step": step, "epoch": epoch, "next_batch": next_batch, "data_order": order,
                "best": dict(best), "epochs_without_progress": epochs_without_progress,
                "embed_info": embed_info, "history": list(history), "step_seconds": list(step_seconds),
                "running": running,
                "train_seconds": train_seconds_before + time.perf_counter() - train_started,
                "counters": {"jobs": counters.total.jobs, "circuits": counters.total.circuits,
                             "shots": counters.total.shots, "requests": counters.requests}})
            if isinstance(head.scheduler.job_hook, JobJournal):   # no resume replays what this checkpoint covers
                head.scheduler.job_hook.prune(up_to_request=counters.requests)

        if not resume:
            checkpoint(0, epoch_order(len(train.y), t.seed, 0), 0)  # resumable from the very first step

        for epoch in range(start_epoch, t.epochs):
            if epochs_without_progress >= t.patience:
                print(f"early stop: no better validation {t.select_metric} for {t.patience} epochs",
                      file=sys.stderr)
                break
            epoch_started = time.perf_counter()
            first_batch = start_batch if epoch == start_epoch else 0
            # mid-epoch, continue the order the checkpoint saved; a new epoch draws its own
            order = resumed_order if resume and epoch == start_epoch and first_batch else epoch_order(
                len(train.y), t.seed, epoch)
            if first_batch == 0:
                running = {"loss_sum": 0.0, "correct": 0, "seen": 0, "predictions": [], "targets": []}
            bar = tqdm(range(first_batch, steps_per_epoch), desc=f"epoch {epoch + 1}/{t.epochs}", unit="step",
                       file=sys.stderr, disable=not progress, dynamic_ncols=True, leave=True,
                       initial=first_batch, total=steps_per_epoch)
            for batch in bar:
                rows = torch.from_numpy(order[batch * t.batch_size:(batch + 1) * t.batch_size])
                x, y = train.x[rows], train.y[rows]
                step_started = time.perf_counter()
                logits = head(x)                     # one job: values and the parameter-shift Jacobian
                loss = loss_fn(logits, y)
                optimizer.zero_grad()
                loss.backward()                      # local vector-Jacobian product, no job
                optimizer.step()
                lr_schedule.step()
                step += 1
                step_seconds.append(time.perf_counter() - step_started)

                predicted = logits.argmax(dim=1)
                running["loss_sum"] += loss.item() * len(y)
                running["correct"] += int((predicted == y).sum())
                running["seen"] += len(y)
                running["predictions"].append(predicted.numpy())
                running["targets"].append(y.numpy())
                bar.set_postfix(loss=f"{running['loss_sum'] / running['seen']:.4f}",
                                acc=f"{running['correct'] / running['seen']:.3f}",
                                jobs=str(counters.total.jobs), circuits=str(counters.total.circuits))
                if t.checkpoint_every and step % t.checkpoint_every == 0:
                    checkpoint(epoch, order, batch + 1)
            bar.close()

            train_scores = score(np.concatenate(running["targets"]), np.concatenate(running["predictions"]),
                                 n_classes, positive)
            validation = evaluate(head, val, loss_fn, n_classes, positive)
            value = validation.scores.metric(t.select_metric)
            if value > best["value"]:
                best.update(value=value, epoch=epoch + 1)
                epochs_without_progress = 0
                runs.save_torch_atomically(run_dir / runs.BEST, {
                    "model": head.state_dict(), "epoch": epoch + 1, "metric": t.select_metric, "value": value,
                    # what `orchestrate eval` / `predict` need to apply the model to new vectors
                    "standardiser": {"mean": mean, "std": std}, "labels": list(dataset.label_names),
                    "positive_label": dataset.positive_label})
            else:
                epochs_without_progress += 1
            history.append({
                "epoch": epoch + 1, "step": step,
                "train_loss": running["loss_sum"] / running["seen"], "train_acc": train_scores.accuracy,
                "train_f1": train_scores.f1_positive,
                "val_loss": validation.loss, "val_acc": validation.scores.accuracy,
                "val_f1": validation.scores.f1_positive, "val_f1_macro": validation.scores.f1_macro,
                "lr": optimizer.param_groups[0]["lr"],
                "jobs": counters.total.jobs, "circuits": counters.total.circuits,
                "seconds": time.perf_counter() - epoch_started})
            runs.write_jsonl_atomically(run_dir / "metrics.jsonl", history)
            checkpoint(epoch + 1, order, 0)
            if progress:
                print(f"epoch {epoch + 1}: val loss {validation.loss:.4f}  acc {validation.scores.accuracy:.3f}  "
                      f"{t.select_metric} {value:.3f}" + ("  (best)" if best["epoch"] == epoch + 1 else ""),
                      file=sys.stderr)
        train_seconds = train_seconds_before + time.perf_counter() - train_started

        head.load_state_dict(runs.load_torch(run_dir / runs.BEST)["model"])
        quantum_test = evaluate(head, test, loss_fn, n_classes, positive).scores

        logistic = baseline.fit_logistic_regression(train.x, train.y, n_classes, weights)
        logistic_test = score(test.y.numpy(), baseline.predict(logistic, test.x), n_classes, positive)
        classical_head = baseline.fit_classical_head(
            train.x, train.y, val.x, val.y, n_classes, config.quantum.n_qubits, weights,
            optimizer=t.optimizer, lr=t.lr, weight_decay=t.weight_decay, batch_size=t.batch_size,
            epochs=t.epochs, seed=t.seed, select_metric=t.select_metric, positive=positive)
        classical_head_test = score(test.y.numpy(), baseline.predict(classical_head, test.x), n_classes, positive)
        quantum = quantum_usage(head, config)   # before the backend closes (and stops its workers)

    summary = {
        "dataset": config.data.name,
        "model": config.embedding.model,
        "backend": config.quantum.backend,
        "n_qubits": config.quantum.n_qubits,
        "depth": config.quantum.depth,
        "test": {"accuracy": quantum_test.accuracy, "f1_positive": quantum_test.f1_positive,
                 "f1_macro": quantum_test.f1_macro, "confusion": quantum_test.confusion},
        "classical_baseline": {
            "accuracy": logistic_test.accuracy, "f1_positive": logistic_test.f1_positive,
            "logistic_regression": brief(logistic_test),
            "classical_head": brief(classical_head_test)},
        "quantum": quantum,
        "timing": {"embed_s": embed_info["seconds"], "train_s": train_seconds, "steps": step,
                   "step_s_median": statistics.median(step_seconds) if step_seconds else 0.0},
        "cache": {"path": embed_info["path"], "key": embed_info["key"], "hit": embed_info["hit"]},
        "labels": list(dataset.label_names),
        "positive_label": dataset.positive_label,
        "split": {"train": len(split.train), "val": len(split.val), "test": len(split.test),
                  "duplicates_merged": split.duplicates_merged, "policy": split.policy},
        "best": {"metric": best["metric"], "value": best["value"], "epoch": best["epoch"]},
        "epochs_run": len(history),
        "requests": {"train_steps": step, "evaluations": counters.requests - step},
    }
    runs.write_json_atomically(run_dir / "summary.json", summary)
    write_plots(run_dir, history, quantum_test, dataset.label_names)
    return summary


def close_backend(backend) -> None:
    close = getattr(backend, "close", None)
    if close is not None:
        close()


def quantum_usage(head, config: Config) -> dict:
    """summary.json's "quantum" block: jobs, circuits, shots, QPU seconds, and on a remote
    backend what the journal saved and how the jobs ran."""
    counters = head.scheduler.counters
    usage = {"jobs": counters.total.jobs, "circuits": counters.total.circuits, "shots": counters.total.shots,
             "qpu_seconds": 0.0}   # a simulator uses no QPU time
    workers = getattr(head.scheduler.backend, "workers_started", None)
    if workers is not None:
        usage["circuit_workers"] = workers      # Aer: Ray workers that evaluated slices of large tables
    journal = head.scheduler.job_hook
    if isinstance(journal, JobJournal):
        backend = head.scheduler.backend
        usage.update(qpu_seconds=journal.billed_seconds(),     # None: the backend reported none (local mode)
                     qpu_seconds_estimated=journal.spent_seconds(),
                     execution_mode=backend.options.execution_mode,
                     estimator_options=backend.options.estimator_options(),
                     transpilations=head.scheduler.transpilations,
                     jobs_from_journal=counters.from_journal, jobs_reattached=counters.reattached,
                     jobs_resubmitted=counters.resubmitted)
    return usage


def brief(scores: Scores) -> dict:
    return {"accuracy": scores.accuracy, "f1_positive": scores.f1_positive, "f1_macro": scores.f1_macro,
            "confusion": scores.confusion}


def write_plots(run_dir: Path, history: list[dict], test: Scores, label_names: list[str]) -> list[Path]:
    """loss.png, accuracy.png (train/val per epoch) and confusion.png (test); none without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    epochs = [row["epoch"] for row in history]
    for name, key in (("loss", "loss"), ("accuracy", "acc")):
        figure, axes = plt.subplots(figsize=(5, 3.5))
        axes.plot(epochs, [row[f"train_{key}"] for row in history], marker="o", label="train")
        axes.plot(epochs, [row[f"val_{key}"] for row in history], marker="o", label="validation")
        axes.set_xlabel("epoch")
        axes.set_ylabel(name)
        axes.legend()
        figure.tight_layout()
        written.append(save_figure(figure, run_dir / f"{name}.png"))
        plt.close(figure)
    figure, axes = plt.subplots(figsize=(4, 3.5))
    confusion = np.array(test.confusion)
    axes.imshow(confusion, cmap="Blues")
    for (i, j), count in np.ndenumerate(confusion):
        axes.text(j, i, str(count), ha="center", va="center")
    axes.set_xticks(range(len(label_names)), label_names)
    axes.set_yticks(range(len(label_names)), label_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title("test confusion")
    figure.tight_layout()
    written.append(save_figure(figure, run_dir / "confusion.png"))
    plt.close(figure)
    return written


def save_figure(figure, target: Path) -> Path:
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    runs.write_bytes_atomically(target, buffer.getvalue())
    return target


def report_table(summary: dict, run_dir: Path) -> str:
    """The short comparison printed at the end of `orchestrate run`."""
    rows = [("quantum head", summary["test"]),
            ("logistic regression", summary["classical_baseline"]["logistic_regression"]),
            ("classical head (no circuit)", summary["classical_baseline"]["classical_head"])]
    lines = [f"{'test split':<28} {'accuracy':>8} {'F1 ' + summary['positive_label']:>10} {'F1 macro':>9}"]
    lines += [f"{name:<28} {s['accuracy']:>8.3f} {s['f1_positive']:>10.3f} {s['f1_macro']:>9.3f}" for name, s in rows]
    q, timing = summary["quantum"], summary["timing"]
    lines.append(f"quantum: {q['jobs']} jobs, {q['circuits']} circuits, {timing['steps']} steps "
                 f"(median {timing['step_s_median'] * 1000:.0f} ms), train {timing['train_s']:.1f} s, "
                 f"embed {timing['embed_s']:.1f} s ({'cache hit' if summary['cache']['hit'] else 'computed'})")
    lines.append(f"run dir: {run_dir}")
    return "\n".join(lines)
