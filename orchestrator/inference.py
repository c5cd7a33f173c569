"""A finished run applied to texts: `orchestrate eval` and `orchestrate predict`.

A run dir holds all that is needed: `config.yaml` (encoder, pooling, max_length, circuit,
backend) and `best.pt` (the head's best weights, the train split's standardiser, the label
names). Vectors come from the same encoder settings as training, so a text gets the vector it
would have had in the training set.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from orchestrator.config import Config, load_config
from orchestrator.core.errors import UserError
from orchestrator.quantum.backends import make_scheduler
from orchestrator.quantum.model import HybridHead, one_torch_thread
from orchestrator.training.features import Standardiser
from orchestrator.training.metrics import Scores, score
from orchestrator.training.state import BEST, load_torch


@dataclass
class TrainedRun:
    run_dir: Path
    config: Config
    head: torch.nn.Module
    standardiser: Standardiser
    label_names: list[str]
    positive_label: str

    @property
    def positive(self) -> int:
        return self.label_names.index(self.positive_label)

    def probabilities(self, vectors: np.ndarray) -> np.ndarray:
        """(rows, classes) softmax probabilities; one values-only request to the backend."""
        if len(vectors) == 0:
            return np.zeros((0, len(self.label_names)))
        features = self.standardiser.apply(vectors)
        with one_torch_thread(), torch.no_grad():   # the simulator wants the cores (quantum/model.py)
            logits = self.head.eval()(features.x)
        return torch.softmax(logits.double(), dim=1).numpy()

    def evaluate(self, vectors: np.ndarray, labels: np.ndarray) -> Scores:
        predicted = self.probabilities(vectors).argmax(axis=1)
        return score(labels, predicted, len(self.label_names), self.positive)


def load_run(run_dir: str | Path, backend: str | None = None) -> TrainedRun:
    """The best model of a finished (or interrupted, once it has a best.pt) run.

    `backend` evaluates on another backend than the one trained on (e.g. aer_simulator for a
    model trained on hardware)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"{run_dir} is not a run dir (no config.yaml)")
    if not (run_dir / BEST).is_file():
        raise UserError(f"the run in {run_dir} has no trained model yet ({BEST} is written after its first epoch)")
    overrides = [f"quantum.backend={backend}"] if backend else []
    config = load_config(str(run_dir / "config.yaml"), overrides)
    best = load_torch(run_dir / BEST)
    if "standardiser" not in best:
        raise UserError(f"{run_dir / BEST} was written by an older version without its standardiser; "
                        f"train the run again")
    standardiser = Standardiser(**best["standardiser"])
    head = HybridHead(len(standardiser.mean), len(best["labels"]), make_scheduler(config))
    head.load_state_dict(best["model"])
    return TrainedRun(run_dir=run_dir, config=config, head=head, standardiser=standardiser,
                      label_names=list(best["labels"]), positive_label=best["positive_label"])


def encode_texts(texts: list[str], run: TrainedRun) -> np.ndarray:
    """Vectors for a few texts, in this process (no Ray, no cache): what `predict` needs."""
    from embeddings.encode import Encoder
    from embeddings.models import resolve_model
    from embeddings.stage import encode_settings, with_model_pooling

    model = resolve_model(run.config.embedding.model, run.config.embedding.revision)
    cfg = with_model_pooling(run.config.embedding, model)   # a run's config.yaml records it concrete already
    device = "cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()) else "cpu"
    return Encoder(model.path, encode_settings(cfg, device)).encode(texts)


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


def check_texts(texts: list[str]) -> list[str]:
    for n, text in enumerate(texts, start=1):
        if not text.strip():
            raise UserError(f"text {n} is empty; there is nothing to classify")
    return texts
