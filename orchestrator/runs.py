"""What the run dirs under a folder hold, read without training anything: `orchestrate runs`
(each run and its state) and `orchestrate compare` (the config keys that differ, the metrics side
by side). A run dir itself is orchestrator/run_dir.py's RunDir.
"""
from __future__ import annotations

import datetime
from pathlib import Path

import yaml

from orchestrator.config import flatten
from orchestrator.core.errors import UserError
from orchestrator.run_dir import RunDir
from orchestrator.training.metrics import headline_f1


def list_runs(root: str | Path = "runs") -> list[dict]:
    """Every run dir under `root` (a folder holding config.yaml), oldest first, with its state:
    finished (summary.json), resumable (a checkpoint: `orchestrate resume` continues it) or
    incomplete (stopped before its first checkpoint: nothing to resume)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"no run dirs at {root}: not a folder")
    rows = [describe_run(RunDir(d)) for d in sorted(root.iterdir()) if RunDir(d).is_run()]
    return sorted(rows, key=lambda row: row["started_at"] or "")


def describe_run(run_dir: RunDir) -> dict:
    config = yaml.safe_load((run_dir / RunDir.CONFIG).read_text()) or {}
    summary = run_dir.read_summary()
    test = (summary or {}).get("test", {})
    started = (summary or {}).get("run", {}).get("started_at") or datetime.datetime.fromtimestamp(
        (run_dir / RunDir.CONFIG).stat().st_mtime, datetime.timezone.utc).isoformat(timespec="seconds")
    return {"run_dir": str(run_dir), "state": run_dir.state(),
            "dataset": (config.get("data") or {}).get("name") or (config.get("data") or {}).get("path"),
            "backend": (config.get("quantum") or {}).get("backend"),
            "train_layers": (config.get("embedding") or {}).get("train_layers", 0),
            "test_accuracy": test.get("accuracy"), "test_f1": test.get(headline_f1(len(test.get("confusion") or [0, 0]))),
            "started_at": started}


def runs_table(rows: list[dict]) -> str:
    """One line per run; F1: the positive class's with two classes, macro F1 with more."""
    lines = [f"{'run dir':<44} {'state':<10} {'dataset':<16} {'backend':<14} {'layers':>6} {'acc':>6} {'F1':>6}  started"]
    for row in rows:
        lines.append(f"{row['run_dir']:<44} {row['state']:<10} {str(row['dataset'])[-16:]:<16} "
                     f"{str(row['backend']):<14} {str(row['train_layers']):>6} {number(row['test_accuracy'])} "
                     f"{number(row['test_f1'])}  {row['started_at']}")
    return "\n".join(lines)


def number(value) -> str:
    return f"{value:6.3f}" if isinstance(value, float) else f"{'-':>6}"


COMPARED = (("test accuracy", ("test", "accuracy")), ("test F1", ("test", "f1_positive")),
            ("test F1 macro", ("test", "f1_macro")),
            ("test F1 weighted", ("test", "f1_weighted")), ("logistic regression F1", ("classical_baseline", "f1_positive")),
            ("best epoch", ("best", "epoch")), ("steps", ("timing", "steps")), ("train s", ("timing", "train_s")),
            ("jobs", ("quantum", "jobs")), ("circuits", ("quantum", "circuits")))


def compare_runs(run_dirs: list[str | Path]) -> dict:
    """The config keys whose values differ between the runs, and their metrics side by side."""
    configs, summaries = [], []
    for run_dir in map(RunDir, run_dirs):
        configs.append(flatten(yaml.safe_load((run_dir.existing() / RunDir.CONFIG).read_text()) or {}))
        summaries.append(run_dir.read_summary() or {})
    keys = sorted(set().union(*configs))
    differences = {key: [c.get(key) for c in configs] for key in keys if len({repr(c.get(key)) for c in configs}) > 1}
    metrics = {name: [dig(s, path) for s in summaries] for name, path in COMPARED}
    return {"runs": [str(d) for d in run_dirs], "config_differences": differences, "metrics": metrics}


def dig(mapping: dict, path: tuple):
    for key in path:
        mapping = mapping.get(key) if isinstance(mapping, dict) else None
    return mapping


def comparison_table(comparison: dict) -> str:
    names = [Path(r).name for r in comparison["runs"]]
    width = max([24, *(len(k) + 2 for k in comparison["config_differences"])])
    cell = max([14, *(len(n) for n in names)])
    lines = [f"{'':<{width}} " + " ".join(f"{n:>{cell}}" for n in names)]
    if comparison["config_differences"]:
        lines.append("config (keys that differ)")
        for key, values in comparison["config_differences"].items():
            lines.append(f"  {key:<{width - 2}} " + " ".join(f"{shown(v):>{cell}}" for v in values))
    else:
        lines.append("config: the same in every run")
    lines.append("metrics")
    for name, values in comparison["metrics"].items():
        lines.append(f"  {name:<{width - 2}} " + " ".join(f"{shown(v):>{cell}}" for v in values))
    return "\n".join(lines)


def shown(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)
