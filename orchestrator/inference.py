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

import contextlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import torch

from embeddings.models import resolve_model
from orchestrator.config import Config, load_config
from orchestrator.core.errors import UserError
from orchestrator.quantum.backends import make_scheduler
from orchestrator.quantum.model import HybridHead, one_torch_thread
from orchestrator.training.encoder import EncoderHead, EncoderInputs, make_encoder
from orchestrator.training.features import Standardiser
from orchestrator.training.metrics import Scores, score
from orchestrator.training.model_files import WEIGHTS_FILE, has_model_files, load_model_files
from orchestrator.training.state import BEST, load_best


log = logging.getLogger(__name__)

Inputs = Union[np.ndarray, EncoderInputs]   # vectors, or a co-trained encoder's inputs


@dataclass
class TrainedRun:
    run_dir: Path
    config: Config
    model: torch.nn.Module          # HybridHead, or EncoderHead with the trained encoder layers
    standardiser: Standardiser
    label_names: list[str]
    positive_label: str

    @property
    def positive(self) -> int:
        return self.label_names.index(self.positive_label)

    @property
    def co_trained(self) -> bool:
        return isinstance(self.model, EncoderHead)

    def inputs(self, prepared, rows: np.ndarray) -> Inputs:
        """Rows of a prepared dataset (orchestrator.pipeline.Prepared) as this model reads them."""
        if self.co_trained:
            return EncoderInputs(source=prepared.encoder_source, rows=np.asarray(rows),
                                 y=torch.from_numpy(prepared.dataset.labels[rows].astype(np.int64)))
        return prepared.vectors[rows]

    def probabilities(self, inputs: Inputs) -> np.ndarray:
        """(rows, classes) softmax probabilities; one values-only request to the backend."""
        if len(inputs) == 0:
            return np.zeros((0, len(self.label_names)))
        with contextlib.ExitStack() as stack, torch.no_grad():
            if not self.co_trained:
                stack.enter_context(one_torch_thread())   # the simulator wants the cores (quantum/model.py)
            model = self.model.eval()
            logits = model.split_logits(inputs) if self.co_trained else model(self.standardiser.apply(inputs).x)
        return torch.softmax(logits.double(), dim=1).numpy()

    def evaluate(self, inputs: Inputs, labels: np.ndarray) -> Scores:
        predicted = self.probabilities(inputs).argmax(axis=1)
        return score(labels, predicted, len(self.label_names), self.positive)


def load_run(run_dir: str | Path, backend: str | None = None, ray_address: str | None = None) -> TrainedRun:
    """The best model of a finished (or interrupted, once it has a best.pt) run.

    `backend` evaluates on another backend than the one trained on (e.g. aer_simulator for a
    model trained on hardware); `ray_address`, the cluster to use instead of the one the run recorded."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"{run_dir} is not a run dir (no config.yaml)")
    if not has_model_files(run_dir) and not (run_dir / BEST).is_file():
        raise UserError(f"the run in {run_dir} has no trained model yet ({WEIGHTS_FILE} is written after its "
                        f"first epoch)")
    overrides = [f"quantum.backend={backend}"] if backend else []
    config = load_config(str(run_dir / "config.yaml"), overrides)
    config.ray.address = ray_address or config.ray.address
    weights, standardiser, labels, positive_label = best_model(run_dir)
    model = HybridHead(len(standardiser.mean), len(labels), make_scheduler(config))
    if config.embedding.train_layers != 0:
        model = encoder_head(config, model, standardiser)
    model.load_state_dict(weights)
    return TrainedRun(run_dir=run_dir, config=config, model=model, standardiser=standardiser,
                      label_names=labels, positive_label=positive_label)


def best_model(run_dir: Path) -> tuple[dict, Standardiser, list[str], str]:
    """(weights, standardiser, label names, positive label): from model.safetensors + head.json,
    or from the best.pt of a run written before them (torch's weights-only loader)."""
    best_pt, damaged = run_dir / BEST, None
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
            log.warning(f"{damaged}; using {BEST}, which holds the same weights")
        if "standardiser" not in best:
            raise UserError(f"{best_pt} was written by an older version without its standardiser; train the run again")
        weights, saved, labels, positive_label = best["model"], best["standardiser"], best["labels"], best["positive_label"]
    standardiser = Standardiser(**{name: np.asarray(values, dtype=np.float64) for name, values in saved.items()})
    return weights, standardiser, list(labels), positive_label


def encoder_head(config: Config, head: torch.nn.Module, standardiser: Standardiser) -> EncoderHead:
    """The encoder as loaded, cut as in training, in front of `head`: the trained layers come from the run's weights."""
    encoder, device, bfloat16 = make_encoder(config)
    return EncoderHead(encoder, head, standardiser, device, bfloat16)


def encode_texts(texts: list[str], run: TrainedRun) -> Inputs:
    """A few texts as the run's model reads them, in this process (no Ray, no cache): what
    `predict` needs. A co-trained encoder gets their token ids and runs whole on them."""
    from embeddings.encode import Encoder, tokenize_texts
    from embeddings.stage import encode_settings, with_model_pooling

    model = resolve_model(run.config.embedding.model, run.config.embedding.revision)
    if run.co_trained:
        tokens = tokenize_texts(model.path, texts, run.config.embedding.max_length)
        return EncoderInputs(source=tokens, rows=np.arange(len(texts)), y=torch.zeros(len(texts), dtype=torch.long))
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
