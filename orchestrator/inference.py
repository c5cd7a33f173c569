"""A finished run applied to texts: `orchestrate eval` and `orchestrate predict`.

A run dir holds all that is needed: `config.yaml` (encoder, pooling, max_length, circuit,
backend), `model.safetensors` (the head's best weights) and `head.json` (the train split's
standardiser, the label names; training/model_files.py): nothing is unpickled. Vectors come
from the same encoder settings as training, so a text gets the vector it would have had in the
training set. A run with a co-trained encoder (embedding.train_layers k or all) keeps its
trained layers in `model.safetensors` too: `eval` reads the split's cached layer states
(or token ids) like training did, `predict` runs the whole encoder, with those layers, on the texts.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from orchestrator.config import Config, derive
from orchestrator.core.errors import UserError
from orchestrator.quantum.backends import make_runner
from orchestrator.run_dir import RunDir
from orchestrator.training.features import Standardiser
from orchestrator.training.metrics import Scores, score
from orchestrator.training.model import RunEncoder, SplitInputs, build_model, run_encoder
from orchestrator.training.model_files import has_best_model, load_best_model



@dataclass
class TrainedRun:
    run_dir: RunDir
    config: Config
    model: torch.nn.Module          # HybridHead, or EncoderHead with the trained encoder layers
    encoder: RunEncoder             # what stands in front of the head (training/model.py)
    standardiser: Standardiser
    label_names: list[str]
    positive_label: str

    @property
    def positive(self) -> int:
        return self.label_names.index(self.positive_label)

    def inputs(self, prepared, rows: np.ndarray) -> SplitInputs:
        """Rows of a prepared dataset (orchestrator.pipeline.Prepared) as this model reads them."""
        return self.encoder.inputs(prepared.content, np.asarray(rows), prepared.dataset.labels, self.standardiser)

    def text_inputs(self, texts: list[str]) -> SplitInputs:
        """A few texts as this model reads them, encoded in this process (no Ray, no cache): what
        `predict` needs. A co-trained encoder runs whole, with its trained layers, on their tokens."""
        return self.encoder.text_inputs(texts, self.standardiser)

    def probabilities(self, inputs: SplitInputs) -> np.ndarray:
        """(rows, classes) softmax probabilities; one values-only request to the backend."""
        if len(inputs) == 0:
            return np.zeros((0, len(self.label_names)))
        with self.encoder.threads(), torch.no_grad():
            logits = self.model.eval().split_logits(inputs)
        return torch.softmax(logits.double(), dim=1).numpy()

    def evaluate(self, inputs: SplitInputs, labels: np.ndarray) -> Scores:
        predicted = self.probabilities(inputs).argmax(axis=1)
        return score(labels, predicted, len(self.label_names), self.positive)


def load_run(run_dir: str | Path, backend: str | None = None, ray_address: str | None = None) -> TrainedRun:
    """The best model of a finished (or interrupted, once it has a best.pt) run.

    `backend` evaluates on another backend than the one trained on (e.g. aer_simulator for a
    model trained on hardware); `ray_address`, the cluster to use instead of the one the run recorded."""
    run_dir = RunDir.at(run_dir).existing()
    if not has_best_model(run_dir):
        raise UserError(f"the run in {run_dir} has no trained model yet ({RunDir.WEIGHTS} is written after its "
                        f"first epoch)")
    config = run_dir.read_config([f"quantum.backend={backend}"] if backend else [])
    if ray_address:
        config = derive(config, {"ray.address": ray_address})
    best = load_best_model(run_dir)
    encoder = run_encoder(config)
    model = build_model(make_runner(config), best.standardiser, len(best.label_names), encoder)
    model.load_state_dict(best.weights)
    return TrainedRun(run_dir=run_dir, config=config, model=model, encoder=encoder, standardiser=best.standardiser,
                      label_names=best.label_names, positive_label=best.positive_label)


def read_texts(path: str) -> list[str]:
    """One text per line of `path` ('-': standard input); an empty line is refused, naming it."""
    try:
        raw = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"text file not found: {path}") from None
    except UnicodeDecodeError as problem:
        raise UserError(f"text file {path} is not UTF-8 ({problem.reason} at byte {problem.start})") from None
    lines = raw.splitlines()
    empty = [n for n, line in enumerate(lines, start=1) if not line.strip()]
    if empty:
        raise UserError(f"text file {path} has an empty line ({', '.join(map(str, empty[:10]))}"
                        f"{' ...' if len(empty) > 10 else ''}); put one text per line")
    if not lines:
        raise UserError(f"text file {path} holds no texts")
    return lines


def dataset_texts(run: TrainedRun, path: str) -> list[str]:
    """The texts of a labelled dataset (any format `--data` takes), read with the run's columns;
    its labels are read and checked, but any labels will do."""
    from orchestrator.data.datasets import format_for_other_file, load_dataset

    data = run.config.data
    config = derive(run.config, {"data.path": path, "data.labels": None, "data.positive_label": None,
                                 "data.limit": None, "data.format": format_for_other_file(data.format, path)})
    return load_dataset(config.data, min_classes=1).texts


def check_texts(texts: list[str]) -> list[str]:
    for n, text in enumerate(texts, start=1):
        if not text.strip():
            raise UserError(f"text {n} is empty; there is nothing to classify")
    return texts
