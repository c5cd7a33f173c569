"""The run directory: where a run's config, checkpoints, metrics, summary and plots live.

Every file is written atomically (orchestrator.core.files), so a kill at any moment leaves either
the previous version of a file or the new one, never half of one.

    run_dir/config.yaml       the resolved config
    run_dir/checkpoint.pt     the latest training state (orchestrator/training/state.py)
    run_dir/model.safetensors the model weights with the best validation metric so far
    run_dir/head.json         what eval / predict need to apply them (standardiser, label names,
                              circuit, encoder: orchestrator/training/model_files.py)
    run_dir/best.pt           the same for torch.load(weights_only=True)
    run_dir/jobs.jsonl, jobs/ the job journal of a remote backend (orchestrator/quantum/journal.py)
    run_dir/metrics.jsonl     one JSON line per epoch
    run_dir/summary.json      the final numbers (docs/summary.schema.json)
    run_dir/*.png             plots, when matplotlib is installed
"""
from __future__ import annotations

import contextlib
import datetime
import json
import re
import shutil
from pathlib import Path
from typing import Iterator

import yaml

from orchestrator.config import flatten
from orchestrator.core import locks
from orchestrator.core.errors import UserError
from orchestrator.core.files import usable_folder
from orchestrator.training.phases import has_started


LOCK_FILE = ".lock"     # held by the process writing to the run dir (orchestrator/core/locks.py)


def default_run_dir(dataset_name: str, backend: str, root: str | Path = "runs") -> Path:
    """runs/<UTC timestamp>-<dataset>-<backend>, with -2, -3, ... when that name is taken."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    slug = safe_name(f"{stamp}-{dataset_name}-{backend}")
    candidate, n = Path(root) / slug, 2
    while candidate.exists():
        candidate, n = Path(root) / f"{slug}-{n}", n + 1
    return candidate


def safe_name(text: str) -> str:
    """`text` with every run of characters outside [A-Za-z0-9_.-] replaced by one '_' (a file name)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


@contextlib.contextmanager
def claimed_run_dir(path: Path) -> Iterator[Path]:
    """A new run dir for the block: created and locked before any work, so a second process
    writing to it is refused at once. Refused too: a folder holding an earlier run, or one this
    process cannot write. If the block fails before the run wrote its config.yaml, the folder
    goes again: a failed command leaves no run dir (a folder it did not create is only emptied)."""
    created = not path.exists()
    if holds_a_run(path):
        if (path / LOCK_FILE).is_file():
            with locks.held(path / LOCK_FILE, f"run dir {path} is locked"):
                pass            # a run in progress is named as such
        raise UserError(f"run dir {path} already exists and is not empty; pick another --run-dir")
    usable_folder(path, "run dir", create=False)
    usable_folder(path, "run dir")
    with locks.held(path / LOCK_FILE, f"run dir {path} is locked"):
        if holds_a_run(path):   # another process claimed it in between
            raise UserError(f"run dir {path} already exists and is not empty; pick another --run-dir")
        clear_but_lock(path)                # what a run killed before its first checkpoint left
        try:
            yield path
        except BaseException:
            if not (path / "config.yaml").exists():
                shutil.rmtree(path) if created else (path / LOCK_FILE).unlink(missing_ok=True)
            raise


def clear_but_lock(path: Path) -> None:
    """Remove everything in the run dir `path` but its lock file (held by the caller)."""
    for stale in path.iterdir():
        if stale.name != LOCK_FILE:
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()


def holds_a_run(path: Path) -> bool:
    """Whether `path` holds anything worth keeping. A folder left by a run killed before its first
    checkpoint holds at most its lock and config.yaml (nothing to resume) and may be claimed again."""
    if not path.is_dir():
        return False
    # (the lock file proves a run made the folder: a user's own config.yaml in it is never taken)
    started_nothing = ((path / LOCK_FILE).is_file() and (path / "config.yaml").is_file() and not has_started(path)
                       and not (path / "summary.json").exists())
    kept = {LOCK_FILE} | ({"config.yaml", "tensorboard", "plan.json", "phases"} if started_nothing else set())
    return any(p.name not in kept for p in path.iterdir())


@contextlib.contextmanager
def locked_run_dir(path: Path) -> Iterator[Path]:
    """An existing run dir, locked for the block (resume, eval): another process using it is
    refused at once; a lock left by a killed process is gone with it."""
    usable_folder(path, "run dir")
    with locks.held(path / LOCK_FILE, f"run dir {path} is locked"):
        yield path


def list_runs(root: str | Path = "runs") -> list[dict]:
    """Every run dir under `root` (a folder holding config.yaml), oldest first, with its state:
    finished (summary.json), resumable (a checkpoint: `orchestrate resume` continues it) or
    incomplete (stopped before its first checkpoint: nothing to resume)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"no run dirs at {root}: not a folder")
    rows = [describe_run(d) for d in sorted(root.iterdir()) if (d / "config.yaml").is_file()]
    return sorted(rows, key=lambda row: row["started_at"] or "")


def describe_run(run_dir: Path) -> dict:
    config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    summary = read_json(run_dir / "summary.json")
    state = "finished" if summary else ("resumable" if has_started(run_dir) else "incomplete")
    test = (summary or {}).get("test", {})
    started = (summary or {}).get("run", {}).get("started_at") or datetime.datetime.fromtimestamp(
        (run_dir / "config.yaml").stat().st_mtime, datetime.timezone.utc).isoformat(timespec="seconds")
    return {"run_dir": str(run_dir), "state": state,
            "dataset": (config.get("data") or {}).get("name") or (config.get("data") or {}).get("path"),
            "backend": (config.get("quantum") or {}).get("backend"),
            "train_layers": (config.get("embedding") or {}).get("train_layers", 0),
            "test_accuracy": test.get("accuracy"), "test_f1": test.get("f1_positive"), "started_at": started}


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def runs_table(rows: list[dict]) -> str:
    lines = [f"{'run dir':<44} {'state':<10} {'dataset':<16} {'backend':<14} {'layers':>6} {'acc':>6} {'F1':>6}  started"]
    for row in rows:
        lines.append(f"{row['run_dir']:<44} {row['state']:<10} {str(row['dataset'])[-16:]:<16} "
                     f"{str(row['backend']):<14} {str(row['train_layers']):>6} {number(row['test_accuracy'])} "
                     f"{number(row['test_f1'])}  {row['started_at']}")
    return "\n".join(lines)


def number(value) -> str:
    return f"{value:6.3f}" if isinstance(value, float) else f"{'-':>6}"


COMPARED = (("test accuracy", ("test", "accuracy")), ("test F1", ("test", "f1_positive")),
            ("test F1 macro", ("test", "f1_macro")), ("logistic regression F1", ("classical_baseline", "f1_positive")),
            ("best epoch", ("best", "epoch")), ("steps", ("timing", "steps")), ("train s", ("timing", "train_s")),
            ("jobs", ("quantum", "jobs")), ("circuits", ("quantum", "circuits")))


def compare_runs(run_dirs: list[str | Path]) -> dict:
    """The config keys whose values differ between the runs, and their metrics side by side."""
    configs, summaries = [], []
    for run_dir in map(Path, run_dirs):
        if not (run_dir / "config.yaml").is_file():
            raise UserError(f"{run_dir} is not a run dir (no config.yaml)")
        configs.append(flatten(yaml.safe_load((run_dir / "config.yaml").read_text()) or {}))
        summaries.append(read_json(run_dir / "summary.json") or {})
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
