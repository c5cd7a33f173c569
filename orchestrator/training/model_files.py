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
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from orchestrator.config import Config
from orchestrator.core.errors import UserError
from orchestrator.core.files import write_bytes_atomically, write_json_atomically
from orchestrator.core.paulis import observable_labels
from orchestrator.run_dir import RunDir
from orchestrator.training.features import Standardiser
from orchestrator.training.state import load_best

log = logging.getLogger(__name__)

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
    write_bytes_atomically(run_dir / RunDir.WEIGHTS, data)
    write_json_atomically(run_dir / RunDir.HEAD, dict(head, weights_sha256=hashlib.sha256(data).hexdigest()))


def has_model_files(run_dir: Path) -> bool:
    return (run_dir / RunDir.WEIGHTS).is_file() and (run_dir / RunDir.HEAD).is_file()


def load_model_files(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(weights, head) of a run dir; one line naming the file when either is damaged or they disagree."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        head = json.loads((run_dir / RunDir.HEAD).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as problem:
        raise UserError(f"{run_dir / RunDir.HEAD} is unreadable ({problem})") from None
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise UserError(f"{run_dir / RunDir.HEAD} is not a head description ({FORMAT})")
    data = (run_dir / RunDir.WEIGHTS).read_bytes()
    if hashlib.sha256(data).hexdigest() != head.get("weights_sha256"):
        raise UserError(f"{run_dir / RunDir.WEIGHTS} does not match {RunDir.HEAD} (damaged, or the run was killed "
                        f"while saving its best model: `orchestrate resume {run_dir}` writes both again)")
    try:
        return load(data), head
    except SafetensorError as problem:
        raise UserError(f"{run_dir / RunDir.WEIGHTS} is unreadable ({problem})") from None


@dataclass(frozen=True)
class BestModel:
    weights: dict[str, torch.Tensor]
    standardiser: Standardiser
    label_names: list[str]
    positive_label: str


def load_best_model(run_dir: Path) -> BestModel:
    """A run dir's best model: model.safetensors + head.json, else (damaged, said in one warning,
    or from a run that began before they were written) best.pt with torch's weights-only loader.
    One line when neither can be read."""
    best_pt, damaged = run_dir / RunDir.BEST, None
    try:
        weights, head = load_model_files(run_dir) if has_model_files(run_dir) else (None, None)
    except UserError as problem:
        if not best_pt.is_file():
            raise
        weights, head, damaged = None, None, problem
    if head is not None:
        saved, labels, positive_label = head["standardiser"], head["labels"], head["positive_label"]
    else:
        try:
            best = load_best(best_pt)
        except UserError as problem:
            raise UserError(f"{damaged}; and {problem}" if damaged else str(problem)) from None
        if damaged:
            log.warning(f"{damaged}; using {RunDir.BEST}, which holds the same weights")
        if "standardiser" not in best:
            raise UserError(f"{best_pt} was written by an older version without its standardiser; train the run again")
        weights, saved, labels, positive_label = best["model"], best["standardiser"], best["labels"], best["positive_label"]
    standardiser = Standardiser(**{name: np.asarray(values, dtype=np.float64) for name, values in saved.items()})
    return BestModel(weights=weights, standardiser=standardiser, label_names=list(labels), positive_label=positive_label)


def has_best_model(run_dir: Path) -> bool:
    return has_model_files(run_dir) or (run_dir / RunDir.BEST).is_file()


def load_best_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """The best weights of a run dir (see load_best_model)."""
    return load_best_model(run_dir).weights
