"""Experiment trackers: what a run logs besides its own files, set by `train.trackers`.

    tensorboard   run_dir/tensorboard/ (event files, written with tensorboardX's record writer):
                  `tensorboard --logdir runs/`
    mlflow        one MLflow run per run dir, in train.mlflow_tracking_uri, else MLFLOW_TRACKING_URI,
                  else mlruns/ in the current folder

Every training step logs train/loss, train/lr, quantum/jobs, quantum/circuits and quantum/shots
at its global step; every epoch its metrics.jsonl line (val/*, train/*_acc ...) at the step it
ended on; the end of the run the config and summary.json as artifacts. Every checkpoint flushes
them first, so what a checkpoint covers is logged before it exists. A resumed run continues
the same logs: TensorBoard hides the events past the checkpoint it resumes from (purge_step),
and MLflow reopens the run whose id is in run_dir/mlflow.json (steps between the last checkpoint
and a kill are logged twice there; the later value is the one a resumed run computed).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable, Optional, Protocol

from orchestrator.config import Config, flatten, to_dict
from orchestrator.core import invocation
from orchestrator.core.errors import UserError
from orchestrator.core.files import write_json_atomically
from orchestrator.run_dir import RunDir

MLFLOW_BATCH = 1000   # MLflow's limit on metrics per log_batch call


class Tracker(Protocol):
    def log_step(self, step: int, metrics: dict[str, float]) -> None: ...
    def log_epoch(self, step: int, metrics: dict[str, float]) -> None: ...
    def flush(self) -> None: ...
    def finish(self, run_dir: Path, summary: dict) -> None: ...
    def close(self) -> None: ...


class Trackers:
    """Every configured tracker, called as one."""

    def __init__(self, trackers: list[Tracker]) -> None:
        self.trackers = trackers

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        for tracker in self.trackers:
            tracker.log_step(step, metrics)

    def log_epoch(self, step: int, metrics: dict[str, float]) -> None:
        for tracker in self.trackers:
            tracker.log_epoch(step, metrics)

    def flush(self) -> None:
        for tracker in self.trackers:
            tracker.flush()

    def finish(self, run_dir: Path, summary: dict) -> None:
        for tracker in self.trackers:
            tracker.finish(run_dir, summary)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()


def open_trackers(config: Config, run_dir: Path, resume_step: Optional[int] = None,
                  report_epoch: Optional[Callable[[dict], None]] = None) -> Trackers:
    """The trackers of `config.train.trackers` for `run_dir`; `resume_step`: the step a resumed run
    continues from. `report_epoch` also receives every epoch's metrics (a sweep's trial reports)."""
    trackers: list[Tracker] = []
    if "tensorboard" in config.train.trackers:
        trackers.append(TensorBoardTracker(run_dir / RunDir.TENSORBOARD, resume_step))
    if "mlflow" in config.train.trackers:
        trackers.append(MlflowTracker(config, run_dir))
    if report_epoch is not None:
        trackers.append(EpochReporter(report_epoch))
    return Trackers(trackers)


def check_trackers(config: Config) -> None:
    """Refuse, before anything is written, a tracker whose package is not installed."""
    import importlib.util

    if "mlflow" in config.train.trackers and importlib.util.find_spec("mlflow") is None:
        raise UserError("train.trackers has mlflow, but MLflow is not installed: "
                        "pip install 'hybrid-quantum-orchestrator[tracking]'")


def epoch_scalars(row: dict) -> dict[str, float]:
    """A metrics.jsonl line as tracker names: val_f1 -> val/f1, train_loss -> train/loss_epoch."""
    names = {"train_loss": "train/loss_epoch", "train_acc": "train/accuracy", "train_f1": "train/f1",
             "val_loss": "val/loss", "val_acc": "val/accuracy", "val_f1": "val/f1", "val_f1_macro": "val/f1_macro",
             "seconds": "epoch/seconds", "epoch": "epoch/number"}
    return {names[key]: float(value) for key, value in row.items() if key in names and value is not None}


class TensorBoardTracker:
    """TensorBoard's event file, written in this thread. tensorboardX's SummaryWriter queues events
    for a background thread that its flush() does not wait for: after a kill -9 the last steps
    before a checkpoint would be missing. This writes each event to the file at once and flushes
    it at every checkpoint."""

    def __init__(self, logdir: Path, resume_step: Optional[int]) -> None:
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto.event_pb2 import Event, SessionLog

        logdir.mkdir(parents=True, exist_ok=True)
        self.Event = Event
        self.writer = EventsWriter(str(logdir / "events"))
        if resume_step is not None:
            # TensorBoard drops what the killed run logged after the step it resumes from
            self.writer.write_event(Event(wall_time=time.time(), step=resume_step + 1,
                                          session_log=SessionLog(status=SessionLog.START)))

    def add(self, summary, step: int) -> None:
        self.writer.write_event(self.Event(wall_time=time.time(), step=step, summary=summary))

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        from tensorboardX.summary import scalar

        for name, value in metrics.items():
            self.add(scalar(name, value), step)

    def log_epoch(self, step: int, metrics: dict[str, float]) -> None:
        self.log_step(step, epoch_scalars(metrics))

    def flush(self) -> None:
        self.writer.flush()

    def finish(self, run_dir: Path, summary: dict) -> None:
        from tensorboardX.summary import text

        steps = summary["timing"]["steps"]
        self.log_step(steps, {"test/accuracy": summary["test"]["accuracy"], "test/f1": summary["test"]["f1_positive"]})
        self.add(text("config", "```\n" + (run_dir / RunDir.CONFIG).read_text() + "\n```"), steps)
        self.add(text("summary", "```\n" + json.dumps(summary, indent=2) + "\n```"), steps)

    def close(self) -> None:
        self.writer.close()


class MlflowTracker:
    """One MLflow run per run dir. Steps are buffered and sent in batches at each checkpoint."""

    def __init__(self, config: Config, run_dir: Path) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        uri = mlflow_tracking_uri(config.train.mlflow_tracking_uri)
        self.client = MlflowClient(uri)
        self.Metric = mlflow.entities.Metric
        self.pending: list = []
        self.finished = False
        known = run_dir / RunDir.MLFLOW_RUN
        if known.is_file():      # a resumed run continues its MLflow run
            self.run_id = json.loads(known.read_text())["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            return
        name = config.train.mlflow_experiment or config.data.name or "orchestrate"
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
        tags = {"run_dir": str(Path(run_dir).resolve()), "mlflow.source.name": "orchestrate"}
        commit = invocation.git_commit()
        if commit:
            tags["mlflow.source.git.commit"] = commit
        self.run_id = self.client.create_run(experiment_id, run_name=run_dir.name, tags=tags).info.run_id
        params = [mlflow.entities.Param(key, str(value)[:500]) for key, value in flatten(to_dict(config)).items()]
        for start in range(0, len(params), 100):
            self.client.log_batch(self.run_id, params=params[start:start + 100])
        write_json_atomically(known, {"run_id": self.run_id, "experiment_id": experiment_id})

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        now = now_ms()
        self.pending += [self.Metric(name, float(value), now, step) for name, value in metrics.items()]

    def log_epoch(self, step: int, metrics: dict[str, float]) -> None:
        self.log_step(step, epoch_scalars(metrics))

    def flush(self) -> None:
        while self.pending:
            batch, self.pending = self.pending[:MLFLOW_BATCH], self.pending[MLFLOW_BATCH:]
            self.client.log_batch(self.run_id, metrics=batch)

    def finish(self, run_dir: Path, summary: dict) -> None:
        test, baseline = summary["test"], summary["classical_baseline"]
        self.log_step(summary["timing"]["steps"], {
            "test/accuracy": test["accuracy"], "test/f1": test["f1_positive"], "test/f1_macro": test["f1_macro"],
            "baseline/logistic_regression_f1": baseline["f1_positive"],
            "baseline/classical_head_f1": baseline["classical_head"]["f1_positive"]})
        self.flush()
        for name in (RunDir.CONFIG, RunDir.SUMMARY, RunDir.METRICS):
            if (run_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(run_dir / name))
        self.client.set_terminated(self.run_id, status="FINISHED")
        self.finished = True

    def close(self) -> None:
        self.flush()
        if not self.finished:
            self.client.set_terminated(self.run_id, status="KILLED")   # stopped: `orchestrate resume` reopens it


class EpochReporter:
    """Hands every epoch's metrics to a function (a Ray Tune trial's report)."""

    def __init__(self, report: Callable[[dict], None]) -> None:
        self.report = report

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        pass

    def log_epoch(self, step: int, metrics: dict[str, float]) -> None:
        self.report({**metrics, "step": step})

    def flush(self) -> None:
        pass

    def finish(self, run_dir: Path, summary: dict) -> None:
        pass

    def close(self) -> None:
        pass


def mlflow_tracking_uri(configured: Optional[str]) -> str:
    """The config's URI, else MLFLOW_TRACKING_URI, else a file store in ./mlruns. MLflow 3 keeps
    its file store in maintenance mode behind MLFLOW_ALLOW_FILE_STORE; a local folder is what
    this default promises, so it is allowed here (a database: set the URI)."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or "mlruns"
    if "://" not in uri and not uri.startswith("file:"):      # a folder: absolute, as a file URI
        uri = Path(uri).expanduser().resolve().as_uri()
    if uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return uri


def now_ms() -> int:
    return int(time.time() * 1000)
