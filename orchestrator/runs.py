"""The run directory: where a run's config, checkpoints, metrics, summary and plots live.

Every file is written atomically (orchestrator.core.files), so a kill at any moment leaves either
the previous version of a file or the new one, never half of one.

    run_dir/config.yaml       the resolved config
    run_dir/checkpoint.pt     the latest training state (orchestrator/training/state.py)
    run_dir/best.pt           the model weights with the best validation metric so far, and what
                              eval / predict need to apply them (standardiser, label names)
    run_dir/jobs.jsonl, jobs/ the job journal of a remote backend (orchestrator/quantum/journal.py)
    run_dir/metrics.jsonl     one JSON line per epoch
    run_dir/summary.json      the final numbers (schema in README / DESIGN)
    run_dir/*.png             plots, when matplotlib is installed
"""
from __future__ import annotations

import datetime
import re
from pathlib import Path

from orchestrator.core.errors import UserError


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


def check_run_dir_free(path: Path) -> None:
    """Refuse a run dir that already holds files (an earlier run must not be overwritten)."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UserError(f"run dir {path} already exists and is not empty; pick another --run-dir")
