"""The run directory: one class that owns its file names, its lock and the questions asked of it.

    config.yaml              the resolved config (written by RunDir.write_config only)
    checkpoint.pt            the latest training state (training/state.py);
    checkpoint.previous.pt   the one before it, read when checkpoint.pt is damaged
    model.safetensors        the weights with the best validation metric so far, and
    head.json                what eval / predict need to apply them (training/model_files.py)
    best.pt                  the same for torch.load(weights_only=True)
    metrics.jsonl            one JSON line per epoch
    jobs.jsonl, jobs/        the job journal of a remote backend (quantum/journal.py)
    plan.json, phases/       a device run's plan and its phases, each a run dir of its own
    tensorboard/, mlflow.json   the trackers' files (training/trackers.py)
    evals/                   what `orchestrate eval` scored
    summary.json             the final numbers (docs/summary.schema.json): the run finished
    *.png                    plots
    .lock                    held by the process writing to the run dir (core/locks.py)

Every file is written atomically (orchestrator.core.files): a kill at any moment leaves the
previous version of a file or the new one, never half of one. A RunDir behaves as a path
(`run / name`, os.fspath) wherever one is expected.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import shutil
from pathlib import Path
from typing import Iterator, Optional, Union

from orchestrator.config import Config, config_yaml, load_config
from orchestrator.core import locks
from orchestrator.core.errors import UserError
from orchestrator.core.files import usable_folder, write_json_atomically, write_text_atomically


class RunDir(os.PathLike):
    CONFIG = "config.yaml"
    SUMMARY = "summary.json"
    METRICS = "metrics.jsonl"
    CHECKPOINT = "checkpoint.pt"
    PREVIOUS_CHECKPOINT = "checkpoint.previous.pt"
    BEST = "best.pt"
    WEIGHTS = "model.safetensors"
    HEAD = "head.json"
    JOURNAL = "jobs.jsonl"
    JOB_RESULTS = "jobs"
    PLAN = "plan.json"
    PHASES = "phases"
    EVALS = "evals"
    TENSORBOARD = "tensorboard"
    MLFLOW_RUN = "mlflow.json"
    LOCK = ".lock"

    def __init__(self, path: Union[str, os.PathLike]) -> None:
        self.path = Path(path)

    @classmethod
    def at(cls, path: Union[str, os.PathLike, "RunDir"]) -> "RunDir":
        """`path` as a RunDir (one already is one)."""
        return path if isinstance(path, RunDir) else cls(path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __eq__(self, other) -> bool:
        return isinstance(other, RunDir) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    # --- what it holds --------------------------------------------------------------------------

    def is_run(self) -> bool:
        """A run made this folder (it holds its config.yaml)."""
        return (self.path / self.CONFIG).is_file()

    def has_checkpoint(self) -> bool:
        return (self.path / self.CHECKPOINT).is_file() or (self.path / self.PREVIOUS_CHECKPOINT).is_file()

    def has_started(self) -> bool:
        """Whether it holds a checkpoint to resume from (its own, or a phase's)."""
        return self.has_checkpoint() or any(phase.has_checkpoint() for phase in self.phases())

    def is_finished(self) -> bool:
        return (self.path / self.SUMMARY).is_file()

    def phase(self, folder: str) -> "RunDir":
        """The run dir of one phase of a device run's plan."""
        return RunDir(self.path / self.PHASES / folder)

    def phases(self) -> list["RunDir"]:
        return [RunDir(p) for p in sorted((self.path / self.PHASES).glob("*"))]

    def state(self) -> str:
        """finished (summary.json), resumable (a checkpoint) or incomplete (stopped before its first one)."""
        return "finished" if self.is_finished() else ("resumable" if self.has_started() else "incomplete")

    # --- config and summary ---------------------------------------------------------------------

    def existing(self) -> "RunDir":
        """This run dir, or one line saying it is none."""
        if not self.is_run():
            raise UserError(f"{self.path} is not a run dir (no {self.CONFIG})")
        return self

    def read_config(self, overrides: tuple[str, ...] | list[str] = ()) -> Config:
        return load_config(str(self.existing().path / self.CONFIG), overrides)

    def write_config(self, config: Config) -> None:
        """config.yaml: what the run is (rewritten only when it changes, as a resume's runtime --set does)."""
        text = config_yaml(config)
        path = self.path / self.CONFIG
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            write_text_atomically(path, text)

    def read_summary(self) -> Optional[dict]:
        return read_json(self.path / self.SUMMARY)

    def write_summary(self, summary: dict) -> None:
        write_json_atomically(self.path / self.SUMMARY, summary)

    # --- who writes to it -----------------------------------------------------------------------

    @contextlib.contextmanager
    def claimed(self) -> Iterator["RunDir"]:
        """A new run dir for the block: created and locked before any work, so a second process
        writing to it is refused at once. Refused too: a folder holding an earlier run, or one this
        process cannot write. If the block fails before the run wrote its config.yaml, the folder
        goes again: a failed command leaves no run dir (a folder it did not create is only emptied)."""
        path, created = self.path, not self.path.exists()
        if self.holds_a_run():
            if (path / self.LOCK).is_file():
                with locks.held(path / self.LOCK, f"run dir {path} is locked"):
                    pass            # a run in progress is named as such
            raise UserError(f"run dir {path} already exists and is not empty; pick another --run-dir")
        usable_folder(path, "run dir", create=False)
        usable_folder(path, "run dir")
        with locks.held(path / self.LOCK, f"run dir {path} is locked"):
            if self.holds_a_run():   # another process claimed it in between
                raise UserError(f"run dir {path} already exists and is not empty; pick another --run-dir")
            self.clear_but_lock()                # what a run killed before its first checkpoint left
            try:
                yield self
            except BaseException:
                if not self.is_run():
                    shutil.rmtree(path) if created else (path / self.LOCK).unlink(missing_ok=True)
                raise

    @contextlib.contextmanager
    def locked(self) -> Iterator["RunDir"]:
        """An existing folder, locked for the block (resume, eval, a sweep trial): another process
        using it is refused at once; a lock left by a killed process is gone with it."""
        usable_folder(self.path, "run dir")
        with locks.held(self.path / self.LOCK, f"run dir {self.path} is locked"):
            self.remove_partial_writes()
            yield self

    def remove_partial_writes(self) -> None:
        """The atomic writer's temporary files (core/files.py: `.NAME.*.tmp`) that a process killed
        mid-write left; the caller holds the lock, so no live writer owns one."""
        for partial in self.path.rglob(".*.tmp"):
            if partial.is_file():
                partial.unlink(missing_ok=True)

    def holds_a_run(self) -> bool:
        """Whether it holds anything worth keeping. A folder left by a run killed before its first
        checkpoint holds at most its lock and config.yaml (nothing to resume) and may be claimed again."""
        if not self.path.is_dir():
            return False
        # (the lock file proves a run made the folder: a user's own config.yaml in it is never taken)
        started_nothing = ((self.path / self.LOCK).is_file() and self.is_run() and not self.has_started()
                           and not self.is_finished())
        kept = {self.LOCK} | ({self.CONFIG, self.TENSORBOARD, self.PLAN, self.PHASES} if started_nothing else set())
        return any(p.name not in kept for p in self.path.iterdir())

    def clear_but_lock(self) -> None:
        """Remove everything in it but its lock file (held by the caller)."""
        for stale in self.path.iterdir():
            if stale.name != self.LOCK:
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink()


def default_run_dir(dataset_name: str, backend: str, root: str | Path = "runs") -> RunDir:
    """runs/<UTC timestamp>-<dataset>-<backend>, with -2, -3, ... when that name is taken."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    slug = safe_name(f"{stamp}-{dataset_name}-{backend}")
    candidate, n = Path(root) / slug, 2
    while candidate.exists():
        candidate, n = Path(root) / f"{slug}-{n}", n + 1
    return RunDir(candidate)


def safe_name(text: str) -> str:
    """`text` with every run of characters outside [A-Za-z0-9_.-] replaced by one '_' (a file name)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
