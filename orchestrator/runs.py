"""The run directory: where a run's config, checkpoints, metrics, summary and plots live.

Every file is written atomically (a temporary file in the same folder, fsync, os.replace), so a
kill at any moment leaves either the previous version of a file or the new one, never half of one.

    run_dir/config.yaml       the resolved config
    run_dir/checkpoint.pt     the latest training state (model, optimizer, lr schedule, RNGs, step, ...)
    run_dir/best.pt           the model weights with the best validation metric so far
    run_dir/metrics.jsonl     one JSON line per epoch
    run_dir/summary.json      the final numbers (schema in README / DESIGN)
    run_dir/*.png             plots, when matplotlib is installed
"""
from __future__ import annotations

import datetime
import io
import json
import re
from pathlib import Path
from typing import Any

import yaml

from orchestrator.atomic import write_bytes_atomically
from orchestrator.errors import UserError

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"


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


def write_text_atomically(target: Path, text: str) -> None:
    write_bytes_atomically(target, text.encode("utf-8"))


def write_json_atomically(target: Path, value: Any) -> None:
    write_text_atomically(target, json.dumps(value, indent=2) + "\n")


def write_yaml_atomically(target: Path, value: Any) -> None:
    write_text_atomically(target, yaml.safe_dump(value, sort_keys=False))


def write_jsonl_atomically(target: Path, rows: list[dict]) -> None:
    write_text_atomically(target, "".join(json.dumps(row) + "\n" for row in rows))


def save_torch_atomically(target: Path, state: dict) -> None:
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes_atomically(target, buffer.getvalue())


def load_torch(path: Path) -> dict:
    import torch

    # weights_only=False: a checkpoint holds numpy and python RNG states next to tensors; it is
    # a file this project wrote into its own run dir
    return torch.load(path, map_location="cpu", weights_only=False)
