"""The state of a training run, and the files that keep it: `checkpoint.pt` and `best.pt`
(model.safetensors and head.json beside it: model_files.py).

`TrainState` is everything the loop changes besides the model, the optimizer and the lr
schedule: where the run is (step, epoch, next batch, this epoch's row order), the best
validation value so far, the history, the running tallies of the epoch in progress. With the
RNG states and the runner's job counters, `to_checkpoint` / `from_checkpoint` make a resumed
run on an exact backend reproduce the uninterrupted run's numbers.

Both files are written atomically (orchestrator.core.files): a kill leaves the old one or the new one.
Two generations of checkpoints are kept: a checkpoint.pt damaged after the fact (a full disk, a
bad copy) is read from checkpoint.previous.pt instead, with one warning; the job journal keeps the
results since that one (loop.checkpoint prunes only what both cover).
"""
from __future__ import annotations

import io
import logging
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from orchestrator.core.errors import UserError, first_line
from orchestrator.core.files import write_bytes_atomically
from orchestrator.quantum.runner import RunnerCounters
from orchestrator.run_dir import RunDir
from orchestrator.training.metrics import Scores, score

log = logging.getLogger(__name__)


@dataclass
class EpochTally:
    """Loss and predictions of the epoch so far (a checkpoint mid-epoch keeps them)."""

    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    predictions: list = field(default_factory=list)   # np.ndarray per step
    targets: list = field(default_factory=list)

    def add(self, loss: float, predicted: torch.Tensor, targets: torch.Tensor) -> None:
        self.loss_sum += loss * len(targets)
        self.correct += int((predicted == targets).sum())
        self.seen += len(targets)
        self.predictions.append(predicted.numpy())
        self.targets.append(targets.numpy())

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / self.seen

    @property
    def accuracy(self) -> float:
        return self.correct / self.seen

    def scores(self, n_classes: int, positive: int) -> Scores:
        return score(np.concatenate(self.targets), np.concatenate(self.predictions), n_classes, positive)

    def to_dict(self) -> dict:
        return {"loss_sum": self.loss_sum, "correct": self.correct, "seen": self.seen,
                "predictions": list(self.predictions), "targets": list(self.targets)}


@dataclass
class Best:
    """The best validation value so far and the epoch (1-based) that reached it."""

    metric: str
    value: float = -math.inf
    epoch: Optional[int] = None

    def to_dict(self) -> dict:
        return {"metric": self.metric, "value": self.value, "epoch": self.epoch}


@dataclass
class TrainState:
    best: Best
    data_order: np.ndarray               # the row order of the epoch in progress
    step: int = 0                        # training (optimizer) steps done
    train_requests: int = 0              # their mini-batches: one request each
    epoch: int = 0                       # the epoch in progress, 0-based
    next_batch: int = 0                  # its first batch not trained yet
    epochs_without_progress: int = 0
    history: list = field(default_factory=list)        # one dict per finished epoch (metrics.jsonl)
    step_seconds: list = field(default_factory=list)
    tally: EpochTally = field(default_factory=EpochTally)
    train_seconds_before: float = 0.0    # training time spent by earlier processes of this run
    checkpoint_requests: int = 0         # the runner's requests when the last checkpoint was written
    embed_info: dict = field(default_factory=dict)     # how the run's vectors were first obtained
    started_at: str = ""                 # when and by what command the run first started (summary.json)
    command: str = ""

    def to_checkpoint(self, model: torch.nn.Module, optimizer, lr_schedule, counters: RunnerCounters,
                      train_seconds: float) -> dict:
        return {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "lr_scheduler": lr_schedule.state_dict(), "rng": rng_states(),
            "step": self.step, "train_requests": self.train_requests, "epoch": self.epoch, "next_batch": self.next_batch, "data_order": self.data_order,
            "best": self.best.to_dict(), "epochs_without_progress": self.epochs_without_progress,
            "embed_info": self.embed_info, "history": list(self.history), "step_seconds": list(self.step_seconds),
            "running": self.tally.to_dict(), "train_seconds": train_seconds,
            "started_at": self.started_at, "command": self.command,
            "counters": {"jobs": counters.total.jobs, "circuits": counters.total.circuits,
                         "shots": counters.total.shots, "requests": counters.requests}}

    @classmethod
    def from_checkpoint(cls, checkpoint: dict, model: torch.nn.Module, optimizer, lr_schedule,
                        counters: RunnerCounters) -> "TrainState":
        """Restore the model, optimizer, lr schedule, RNGs and job counters; return the state."""
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        lr_schedule.load_state_dict(checkpoint["lr_scheduler"])
        restore_rng_states(checkpoint["rng"])
        saved = checkpoint["counters"]
        counters.total.jobs, counters.total.circuits, counters.total.shots = (
            saved["jobs"], saved["circuits"], saved["shots"])
        counters.requests = saved["requests"]
        return cls(best=Best(**checkpoint["best"]), data_order=checkpoint["data_order"], step=checkpoint["step"],
                   train_requests=checkpoint.get("train_requests", checkpoint["step"]),
                   epoch=checkpoint["epoch"], next_batch=checkpoint["next_batch"],
                   epochs_without_progress=checkpoint["epochs_without_progress"],
                   history=checkpoint["history"], step_seconds=checkpoint["step_seconds"],
                   tally=EpochTally(**checkpoint["running"]), train_seconds_before=checkpoint["train_seconds"],
                   embed_info=checkpoint["embed_info"], started_at=checkpoint.get("started_at", ""),
                   command=checkpoint.get("command", ""), checkpoint_requests=saved["requests"])


def epoch_order(n_rows: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the train rows in `epoch`: a function of (seed, epoch) only, so a resumed run
    visits the rows in the same order as an uninterrupted one."""
    return np.random.default_rng([seed, epoch]).permutation(n_rows)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_states() -> dict:
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():   # a co-trained encoder's dropout on a GPU
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])


def save_torch_atomically(target: Path, state: dict) -> None:
    # through a buffer, not a path: torch names the archive inside the file after its path, and
    # the same state must give the same bytes wherever it is written
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes_atomically(target, buffer.getvalue())


def save_checkpoint(run_dir: RunDir, checkpoint: dict) -> None:
    """checkpoint.pt, the one it replaces kept as checkpoint.previous.pt."""
    current = run_dir / RunDir.CHECKPOINT
    if current.is_file():
        os.replace(current, run_dir / RunDir.PREVIOUS_CHECKPOINT)
    save_torch_atomically(current, checkpoint)


def load_checkpoint(run_dir: RunDir) -> dict:
    """The newest readable checkpoint: checkpoint.pt, or (damaged, or gone in a kill between the
    two renames) checkpoint.previous.pt, said in one warning; one line if neither can be read."""
    problems = []
    for name in (RunDir.CHECKPOINT, RunDir.PREVIOUS_CHECKPOINT):
        path = run_dir / name
        if not path.is_file():
            problems.append(f"{name} is missing")
            continue
        try:
            checkpoint = load_torch(path)
        except Exception as problem:      # truncated, empty, overwritten: torch raises several kinds
            problems.append(f"{name} is damaged ({first_line(problem, 120)})")
            continue
        if problems:
            log.warning(f"{problems[0]}; resuming from {name} (step {checkpoint['step']}), the checkpoint before it")
        return checkpoint
    raise UserError(f"no checkpoint of {run_dir} can be read: {'; '.join(problems)}")


def load_torch(path: Path) -> dict:
    # weights_only=False: a checkpoint holds numpy and python RNG states next to tensors; it is
    # a file this project wrote into its own run dir
    return torch.load(path, map_location="cpu", weights_only=False)


def load_best(path: Path) -> dict:
    """best.pt, with torch's weights-only unpickler: tensors, numbers, strings and lists. (best.pt
    written before the standardiser was kept as tensors holds numpy arrays: allowed by name.)
    A damaged file is one line."""
    numpy_arrays = [np.ndarray, np.dtype, np.dtypes.Float64DType, np.dtypes.Float32DType,
                    getattr(np, "_core", np.core).multiarray._reconstruct]
    try:
        with torch.serialization.safe_globals(numpy_arrays):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as problem:
        raise UserError(f"{path} is damaged ({first_line(problem, 120)})") from None
