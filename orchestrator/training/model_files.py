"""The trained model as files that load without unpickling anything, and without this package:

    model.safetensors   the best weights (safetensors: tensors only, no code)
    head.json           what applies them: the label names, the train split's standardiser, the
                        circuit, the encoder (id, revision, pooling, max_length, layers trained),
                        the best epoch, and the sha256 of model.safetensors

Written beside best.pt whenever the best weights change; `eval` and `predict` read these.
head.json is written after model.safetensors and names its digest, so a run killed between the
two writes is noticed (its resume writes both again) rather than pairing one epoch's weights
with another's description.

The head they describe (orchestrator/quantum/model.py): standardise x with head.json's mean and
std, `pre` (Linear F -> n_qubits), tanh * pi/2, the circuit (circuit.encoding, .entangler,
.depth; weights `quantum_weights` in the order of layer * n_qubits + qubit), read the
circuit.observables, `post` (Linear n_observables -> classes), softmax over `labels`.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from orchestrator.config import Config
from orchestrator.core.errors import UserError
from orchestrator.core.files import write_bytes_atomically, write_json_atomically
from orchestrator.core.paulis import observable_labels
from orchestrator.training.state import BEST, load_best

WEIGHTS_FILE = "model.safetensors"
HEAD_FILE = "head.json"
FORMAT = "hybrid-orchestrator/head-v1"


def describe_head(config: Config, mean, std, label_names: list[str], positive_label: str) -> dict:
    """head.json without its best epoch and digest: what stays the same for the whole run."""
    q, e = config.quantum, config.embedding
    return {
        "format": FORMAT,
        "labels": list(label_names), "positive_label": positive_label,
        "standardiser": {"mean": [float(v) for v in mean], "std": [float(v) for v in std]},
        "circuit": {"n_qubits": q.n_qubits, "depth": q.depth, "encoding": q.encoding, "entangler": q.entangler,
                    "observables": list(observable_labels(q.observables, q.n_qubits))},
        "encoder": {"model": e.model, "revision": e.revision, "pooling": e.pooling, "max_length": e.max_length,
                    "train_layers": e.train_layers},
    }


def save_model_files(run_dir: Path, weights: dict[str, torch.Tensor], head: dict) -> None:
    from safetensors.torch import save

    data = save({name: tensor.detach().cpu().contiguous() for name, tensor in weights.items()},
                metadata={"format": FORMAT})
    write_bytes_atomically(run_dir / WEIGHTS_FILE, data)
    write_json_atomically(run_dir / HEAD_FILE, dict(head, weights_sha256=hashlib.sha256(data).hexdigest()))


def has_model_files(run_dir: Path) -> bool:
    return (run_dir / WEIGHTS_FILE).is_file() and (run_dir / HEAD_FILE).is_file()


def load_model_files(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(weights, head) of a run dir; one line naming the file when either is damaged or they disagree."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        head = json.loads((run_dir / HEAD_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as problem:
        raise UserError(f"{run_dir / HEAD_FILE} is unreadable ({problem})") from None
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise UserError(f"{run_dir / HEAD_FILE} is not a head description ({FORMAT})")
    data = (run_dir / WEIGHTS_FILE).read_bytes()
    if hashlib.sha256(data).hexdigest() != head.get("weights_sha256"):
        raise UserError(f"{run_dir / WEIGHTS_FILE} does not match {HEAD_FILE} (damaged, or the run was killed "
                        f"while saving its best model: `orchestrate resume {run_dir}` writes both again)")
    try:
        return load(data), head
    except SafetensorError as problem:
        raise UserError(f"{run_dir / WEIGHTS_FILE} is unreadable ({problem})") from None


def load_best_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """The best weights of a run dir: model.safetensors, or the best.pt of a run that began
    before model.safetensors was written."""
    return load_model_files(run_dir)[0] if has_model_files(run_dir) else load_best(run_dir / BEST)["model"]
