"""The training run: cached vectors in, a trained hybrid head, baselines and a run dir out.

`train` reads top to bottom like a plain training script:

    standardise the features with the train split's mean and std      (setup)
    seed, build the runner on the configured backend, the model, optimizer, lr schedule, loss
    start fresh (checkpoint at step 0) or restore the last checkpoint
    for each epoch: stop early on no progress; train its mini-batches  (train_epoch)
                    evaluate on validation, keep the best weights, log, checkpoint  (end_epoch)
    evaluate the best weights on test; fit the classical baselines on the same vectors
    write summary.json and the plots                                   (report.py)

Every mini-batch is one request to the runner (values + Jacobian in one job); a training step
is `train.grad_accumulation` of them; every evaluation (validation each epoch, test at the end)
is one values-only request.

The model comes from training/model.py: `run_encoder(config)` says what stands in front of the
head (a frozen encoder's cached vectors, or a co-trained encoder), `build_model` puts it together;
the loop only calls `model.logits(split.batch(rows))` and `model.split_logits(split)`. A phase of a
device run (simulator, noisy simulator, hardware) is the same epoch loop on another runner.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch
from torch import nn

from orchestrator.config import Config, TrainConfig
from orchestrator.core import invocation
from orchestrator.core.log import progress as progress_display
from orchestrator.core.files import write_jsonl_atomically
from orchestrator.data.datasets import Dataset
from orchestrator.data.splits import Split
from orchestrator.quantum.backends import make_runner
from orchestrator.quantum.gradients import AUTO, chosen_gradient
from orchestrator.quantum.runner import CircuitRunner
from orchestrator.training import report
from orchestrator.training.baselines import fit_baselines
from orchestrator.training.encoder import steps_per_epoch
from orchestrator.training.features import Features, Standardiser, class_weights
from orchestrator.training.metrics import Scores, score
from orchestrator.training.model import RunEncoder, SplitInputs, build_model, run_encoder
from orchestrator.training.model_files import describe_head, load_best_weights, save_model_files
from orchestrator.run_dir import RunDir
from orchestrator.training.state import (Best, EpochTally, TrainState, epoch_order, load_checkpoint,
                                         save_checkpoint, save_torch_atomically, seed_everything)
from orchestrator.training.trackers import Trackers, open_trackers

log = logging.getLogger(__name__)

class Prepared(Protocol):
    """What a run trains on: orchestrator.pipeline.Prepared."""

    dataset: Dataset
    split: Split
    content: object      # the vectors (Vectors), or a co-trained encoder's LayerStates or TokenIds
    embed_info: dict


@dataclass
class Training:
    """What the loop works with, built once per run by `setup`."""

    config: TrainConfig
    run_dir: RunDir
    model: nn.Module                     # HybridHead, or EncoderHead (a co-trained encoder in front of it)
    encoder: RunEncoder                  # what stands in front of the head (training/model.py)
    runner: CircuitRunner
    optimizer: torch.optim.Optimizer
    lr_schedule: torch.optim.lr_scheduler.LambdaLR
    loss_fn: nn.Module
    class_weights: torch.Tensor | None
    standardiser: Standardiser
    train: SplitInputs
    val: SplitInputs
    test: SplitInputs
    baseline_features: tuple[Features, Features, Features]   # train, val, test vectors of the frozen encoder
    label_names: list[str]
    positive_label: str
    trackers: Trackers = field(default_factory=lambda: Trackers([]))   # opened once the start step is known
    head_description: dict = field(default_factory=dict)             # head.json, but for the best epoch

    @property
    def n_classes(self) -> int:
        return len(self.label_names)

    @property
    def positive(self) -> int:
        return self.label_names.index(self.positive_label)

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(len(self.train.y) / self.config.batch_size)

    @property
    def steps_per_epoch(self) -> int:
        return steps_per_epoch(len(self.train.y), self.config.batch_size, self.config.grad_accumulation)

    def step_batches(self, step: int, order: np.ndarray) -> list[np.ndarray]:
        """The mini-batches (rows of the train split) of the epoch's `step`-th optimizer step."""
        size, first = self.config.batch_size, step * self.config.grad_accumulation
        last = min(first + self.config.grad_accumulation, self.batches_per_epoch)
        return [order[batch * size:(batch + 1) * size] for batch in range(first, last)]


def train(config: Config, prepared: Prepared, run_dir: Path | RunDir, progress: bool = True, resume: bool = False,
          initial_model: dict | None = None, report_epoch: Callable[[dict], None] | None = None) -> dict:
    """Train, evaluate, compare with the classical baselines, write the run dir; return summary.json's dict.

    `initial_model`: start from these weights (a state dict of an earlier phase), and count them as
    the first candidate for the best model (validated before any step). resume=True continues from
    run_dir/checkpoint.pt: on an exact backend the result equals an uninterrupted run's.
    `report_epoch` receives each epoch's metrics as well as the trackers (a sweep trial's report)."""
    t, run_dir = config.train, RunDir.at(run_dir)
    with contextlib.ExitStack() as stack:
        encoder = run_encoder(config)
        stack.enter_context(encoder.threads())
        training = setup(config, prepared, run_dir, encoder, initial_model)
        stack.callback(training.runner.backend.close)   # ends a Session/Batch, stops workers: always
        state = restore(training, config) if resume else start(training, config, prepared.embed_info, initial_model)
        training.trackers = stack.enter_context(contextlib.closing(
            open_trackers(config, run_dir, resume_step=state.step if resume else None, report_epoch=report_epoch)))
        train_started = time.perf_counter()

        for epoch in range(state.epoch, t.epochs):
            if state.epochs_without_progress >= t.patience:
                log.info(f"early stop: no better validation {t.select_metric} for {t.patience} epochs")
                break
            if t.max_steps is not None and state.step >= t.max_steps:
                break
            if state.next_batch == 0:     # a new epoch: its own row order and tallies
                state.data_order = epoch_order(len(training.train.y), t.seed, epoch)
                state.tally = EpochTally()
            state.epoch = epoch
            epoch_started = time.perf_counter()
            train_epoch(training, state, train_started, progress)
            end_epoch(training, state, train_started, epoch_started, progress)
        train_seconds = state.train_seconds_before + time.perf_counter() - train_started
        return finish(training, config, prepared, state, train_seconds)


def finish(training: Training, config: Config, prepared: Prepared, state: TrainState, train_seconds: float) -> dict:
    """The best weights on the test split, the classical baselines, summary.json, plots, trackers."""
    training.model.load_state_dict(load_best_weights(training.run_dir))
    test = evaluate(training, training.test).scores
    baselines = fit_baselines(*training.baseline_features, training.n_classes, training.positive,
                              training.class_weights, config.quantum.n_qubits, config.train)
    quantum = report.quantum_usage(training.runner)   # before the backend closes (and stops its workers)
    summary = report.summary(config, prepared.dataset, prepared.split, state, test, baselines, quantum,
                             train_seconds, training.runner.counters.requests,
                             training.encoder.trainable_parameters(training.model))
    report.write_report(training.run_dir, summary, state.history, test, training.label_names)
    training.trackers.finish(training.run_dir, summary)
    return summary


def log_gradient_choice(config: Config) -> None:
    """quantum.gradient auto: which method it is here, and why (once per training phase)."""
    if config.quantum.gradient == AUTO:
        name, reason = chosen_gradient(config.quantum)
        log.info(f"quantum.gradient auto -> {name} ({reason})")


def setup(config: Config, prepared: Prepared, run_dir: RunDir, encoder: RunEncoder,
          initial_model: dict | None = None) -> Training:
    """Inputs, runner, model, optimizer, lr schedule and loss of a run, in a fixed seeded order."""
    t, dataset = config.train, prepared.dataset
    fitted = encoder.fit(prepared.content, dataset.labels, prepared.split)
    standardiser, splits = fitted.standardiser, fitted.splits
    weights = class_weights(splits[0].y.numpy(), len(dataset.label_names), t.class_weights)

    seed_everything(t.seed)
    runner = make_runner(config, run_dir)
    log_gradient_choice(config)
    model = build_model(runner, standardiser, len(dataset.label_names), encoder)
    if initial_model is not None:
        model.load_state_dict(initial_model)
    optimizer = make_optimizer(model, encoder, t)
    total_steps = steps_per_epoch(len(splits[0].y), t.batch_size, t.grad_accumulation) * t.epochs
    if t.max_steps is not None:
        total_steps = min(total_steps, t.max_steps)
    warmup_steps = math.ceil(t.warmup_ratio * total_steps)
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, t.schedule, warmup_steps))
    return Training(config=t, run_dir=run_dir, model=model, encoder=encoder, runner=runner, optimizer=optimizer,
                    lr_schedule=lr_schedule, loss_fn=nn.CrossEntropyLoss(weight=weights), class_weights=weights,
                    standardiser=standardiser, train=splits[0], val=splits[1], test=splits[2],
                    baseline_features=fitted.baseline_features, label_names=list(dataset.label_names),
                    positive_label=dataset.positive_label,
                    head_description=describe_head(config, standardiser.mean, standardiser.std,
                                                   list(dataset.label_names), dataset.positive_label))


def make_optimizer(model: nn.Module, encoder: RunEncoder, t: TrainConfig) -> torch.optim.Optimizer:
    optimizer_class = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    return optimizer_class(encoder.parameter_groups(model, t))


def start(training: Training, config: Config, embed_info: dict, initial_model: dict | None = None) -> TrainState:
    """A fresh run: config.yaml, and a checkpoint at step 0 so it is resumable from the first step.
    Starting from an earlier phase's weights, they are validated first: training must beat them."""
    training.run_dir.write_config(config)
    state = TrainState(best=Best(metric=training.config.select_metric), embed_info=embed_info,
                       data_order=epoch_order(len(training.train.y), training.config.seed, 0),
                       started_at=report.now(), command=invocation.command_line())
    if initial_model is not None:
        value = evaluate(training, training.val).scores.metric(training.config.select_metric)
        state.best.value, state.best.epoch = value, 0
        save_best(training, 0, value)
    checkpoint(training, state, train_seconds=0.0)
    return state


def restore(training: Training, config: Config) -> TrainState:
    """The run where its last checkpoint left it; config.yaml records a resume's new runtime settings."""
    training.run_dir.write_config(config)
    state = TrainState.from_checkpoint(load_checkpoint(training.run_dir), training.model,
                                       training.optimizer, training.lr_schedule, training.runner.counters)
    log.info(f"resuming at epoch {state.epoch + 1}, step {state.step}")
    return state


def train_epoch(training: Training, state: TrainState, train_started: float, progress: bool) -> None:
    """The optimizer steps of `state.epoch` from `state.next_batch` on, in `state.data_order`; each
    step is `grad_accumulation` mini-batches, one job each."""
    t, counters = training.config, training.runner.counters
    bar = progress_display(range(state.next_batch, training.steps_per_epoch), total=training.steps_per_epoch,
                           initial=state.next_batch, desc=f"epoch {state.epoch + 1}/{t.epochs}", unit="step",
                           enabled=progress)
    for step in bar:
        step_started = time.perf_counter()
        training.optimizer.zero_grad()
        batches = training.step_batches(step, state.data_order)
        step_loss = 0.0
        for rows in batches:
            logits, y = forward(training, training.train, rows)   # one job: values and the parameter-shift Jacobian
            loss = training.loss_fn(logits, y)
            (loss / len(batches)).backward()                      # local vector-Jacobian product, no job
            state.tally.add(loss.item(), logits.argmax(dim=1), y)
            step_loss += loss.item() / len(batches)
        lr = training.optimizer.param_groups[0]["lr"]             # the rate this step is taken with
        if t.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(training.model.parameters(), t.max_grad_norm)
        training.optimizer.step()
        training.lr_schedule.step()
        state.step += 1
        state.train_requests += len(batches)
        state.step_seconds.append(time.perf_counter() - step_started)
        training.trackers.log_step(state.step, {"train/loss": step_loss, "train/lr": lr,
                                                "quantum/jobs": counters.total.jobs,
                                                "quantum/circuits": counters.total.circuits,
                                                "quantum/shots": counters.total.shots})

        bar.set_postfix(loss=f"{state.tally.mean_loss:.4f}", acc=f"{state.tally.accuracy:.3f}",
                        jobs=str(counters.total.jobs), circuits=str(counters.total.circuits))
        state.next_batch = step + 1
        if t.checkpoint_every and state.step % t.checkpoint_every == 0:
            checkpoint(training, state, state.train_seconds_before + time.perf_counter() - train_started)
        if t.max_steps is not None and state.step >= t.max_steps:
            break
    bar.close()


def forward(training: Training, split: SplitInputs, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels of some rows of a split."""
    return training.model.logits(split.batch(rows)), split.y[torch.from_numpy(rows)]


def end_epoch(training: Training, state: TrainState, train_started: float, epoch_started: float,
              progress: bool) -> None:
    """Validate, keep the best weights (best.pt), append to metrics.jsonl, checkpoint."""
    t, counters, epoch = training.config, training.runner.counters, state.epoch + 1
    train_scores = state.tally.scores(training.n_classes, training.positive)
    validation = evaluate(training, training.val)
    value = validation.scores.metric(t.select_metric)
    if value > state.best.value:
        state.best.value, state.best.epoch = value, epoch
        state.epochs_without_progress = 0
        save_best(training, epoch, value)
    else:
        state.epochs_without_progress += 1
    state.history.append({
        "epoch": epoch, "step": state.step,
        "train_loss": state.tally.mean_loss, "train_acc": train_scores.accuracy,
        "train_f1": train_scores.f1_positive,
        "val_loss": validation.loss, "val_acc": validation.scores.accuracy,
        "val_f1": validation.scores.f1_positive, "val_f1_macro": validation.scores.f1_macro,
        "lr": training.optimizer.param_groups[0]["lr"],
        "jobs": counters.total.jobs, "circuits": counters.total.circuits,
        "seconds": time.perf_counter() - epoch_started})
    write_jsonl_atomically(training.run_dir / RunDir.METRICS, state.history)
    training.trackers.log_epoch(state.step, state.history[-1])
    state.epoch, state.next_batch = epoch, 0
    checkpoint(training, state, state.train_seconds_before + time.perf_counter() - train_started)
    if progress:
        log.info(f"epoch {epoch}: val loss {validation.loss:.4f}  acc {validation.scores.accuracy:.3f}  "
                 f"{t.select_metric} {value:.3f}" + ("  (best)" if state.best.epoch == epoch else ""))


def checkpoint(training: Training, state: TrainState, train_seconds: float) -> None:
    training.trackers.flush()   # what the trackers hold up to this step is on disk before the checkpoint
    covered_by_both, counters = state.checkpoint_requests, training.runner.counters
    save_checkpoint(training.run_dir, state.to_checkpoint(
        training.model, training.optimizer, training.lr_schedule, counters, train_seconds))
    state.checkpoint_requests = counters.requests
    # no resume replays what the previous checkpoint (its fallback) covers: the journal may drop those results
    training.runner.job_hook.prune(up_to_request=covered_by_both)


def save_best(training: Training, epoch: int, value: float) -> None:
    """best.pt, and the same weights as model.safetensors + head.json (what eval / predict load)."""
    weights = training.model.state_dict()     # with a co-trained encoder, its trained layers too
    chosen = {"epoch": epoch, "metric": training.config.select_metric, "value": value}
    standardiser = {name: torch.from_numpy(values) for name, values in training.standardiser.to_dict().items()}
    save_torch_atomically(training.run_dir / RunDir.BEST, dict(
        chosen, model=weights, standardiser=standardiser, labels=training.label_names,
        positive_label=training.positive_label))
    save_model_files(training.run_dir, weights, dict(training.head_description, best=chosen))


@dataclass
class Evaluation:
    loss: float
    scores: Scores


def evaluate(training: Training, features: SplitInputs) -> Evaluation:
    """One values-only request for the whole split (no Jacobian, no shifted rows)."""
    model = training.model
    model.eval()
    with torch.no_grad():
        logits = model.split_logits(features)
        loss = float(training.loss_fn(logits, features.y))
    model.train()
    predicted = logits.argmax(dim=1).numpy()
    return Evaluation(loss=loss, scores=score(features.y.numpy(), predicted, training.n_classes, training.positive))


def lr_factor(step: int, total_steps: int, schedule: str, warmup_steps: int = 0) -> float:
    """Multiplier of the base lr after `step` steps: a linear rise over the warmup steps, then
    cosine from 1 to 0 over the rest of the run, or constant."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if schedule == "none" or total_steps <= warmup_steps:
        return 1.0
    done = min(step, total_steps) - warmup_steps
    return 0.5 * (1.0 + math.cos(math.pi * done / (total_steps - warmup_steps)))
