"""The steps every command takes before it trains, scores or estimates: `prepare(config)`.

    dataset   read and checked (orchestrator/data.py)
    model     the encoder resolved, so an unknown one is refused before anything is written
    split     stratified train / val / test (every split needs rows), or the whole file to score
    vectors   from the verified HDF5 cache, computing on Ray workers only what is missing;
              with embedding.train_layers = k the cache holds the layer states below the top k
              layers instead, and with 'all' the texts are only tokenized (the whole encoder trains)

`orchestrate run`, `resume`, `eval` and `estimate` all go through it, so a run dir's config
gives the same dataset, split and vectors whichever command reads it.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from embeddings.encode import EncoderSource, tokenize_texts
from embeddings.models import resolve_model
from embeddings.stage import EmbedReport, embed_dataset
from embeddings.store import LayerStates
from orchestrator.config import Config
from orchestrator.core.errors import UserError
from orchestrator.core.files import usable_folder
from orchestrator.data import Dataset, Split, load_dataset, split_dataset
from workers.embedding import ray_pool_starter

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    dataset: Dataset
    split: Optional[Split]               # None: the whole file is scored (eval --data)
    vectors: Optional[np.ndarray] = None   # None: not embedded (estimate), or a co-trained encoder
    encoder_source: Optional[EncoderSource] = None   # train_layers k: layer states; all: token ids
    embedding: Optional[EmbedReport] = None
    embed_info: dict = field(default_factory=dict)   # summary.json's view of how the vectors were obtained
    pooling: Optional[str] = None        # the concrete pooling ('auto' resolved for the model)


def prepare(config: Config, progress: bool = True, embed: bool = True, whole_file: bool = False) -> Prepared:
    """Dataset, split and vectors of `config`. `whole_file`: score every row of a labelled file
    (one class is enough) instead of splitting it for training."""
    dataset = load_dataset(config.data, min_classes=1 if whole_file else 2)
    if embed:
        check_encoder(config)
    split = None if whole_file else split_dataset(dataset, config.data.split, config.data.duplicates)
    if split is not None and min(len(split.train), len(split.val), len(split.test)) == 0:
        raise UserError(f"{split.describe()}: every split needs rows; use more data or other data.split fractions")
    described = f"rows {len(dataset)}" + (f"  {split.describe()}" if split is not None else "")
    log.info(f"dataset: {dataset.source}  {described}")
    prepared = Prepared(dataset=dataset, split=split)
    return with_vectors(prepared, config, progress) if embed else prepared


def check_encoder(config: Config) -> None:
    """Refuse an unknown model, more layers to train than it has, or a max_length past its
    position embeddings, now: before anything is written."""
    e = config.embedding
    model = resolve_model(e.model, e.revision)
    model.check_train_layers(e.train_layers)
    model.check_max_length(e.max_length)


def check_cache_dir(config: Config) -> None:
    """One line, before any work, when the embedding cache cannot be used (a file, unwritable)."""
    if config.embedding.train_layers != "all":
        usable_folder(Path(config.embedding.cache_dir).expanduser(), "cache dir", create=False)


def with_vectors(prepared: Prepared, config: Config, progress: bool = True) -> Prepared:
    """`prepared` with its vectors (or layer states): from the cache, or embedded now; with
    train_layers 'all', its token ids."""
    if config.embedding.train_layers == "all":
        return with_token_ids(prepared, config)
    report = embed_vectors(prepared.dataset, config, progress)
    log.info(report.final_line())
    states = isinstance(report.cache.content, LayerStates)
    return Prepared(dataset=prepared.dataset, split=prepared.split, embedding=report, pooling=report.pooling,
                    vectors=None if states else report.cache.vectors,
                    encoder_source=report.cache.states if states else None,
                    embed_info={"seconds": report.seconds, "path": str(report.cache.path), "key": report.key,
                                "hit": report.hit, "bytes": report.cache.size_bytes})


def with_token_ids(prepared: Prepared, config: Config) -> Prepared:
    """Full fine-tuning caches nothing: the texts' token ids, made in this process (seconds)."""
    started = time.perf_counter()
    e = config.embedding
    model = resolve_model(e.model, e.revision)
    token_ids = tokenize_texts(model.path, prepared.dataset.texts, e.max_length)
    seconds = time.perf_counter() - started
    log.info(f"tokenized {len(token_ids.ids)} texts in {seconds:.1f} s (train_layers all: no cache)")
    return Prepared(dataset=prepared.dataset, split=prepared.split, encoder_source=token_ids,
                    pooling=model.pooling(e.pooling),
                    embed_info={"seconds": seconds, "path": None, "key": None, "hit": False, "bytes": 0})


def record_resolved(config: Config, prepared: Prepared) -> None:
    """Write into `config` what its inputs turned out to be, so that config.yaml records what ran
    and `eval` reads another file the same way: the data file's path, its format, the pooling."""
    if config.data.path:
        config.data.path = prepared.dataset.source
    config.data.format = prepared.dataset.format
    config.embedding.pooling = prepared.pooling


def embed_vectors(dataset: Dataset, config: Config, progress: bool = True) -> EmbedReport:
    """The dataset's vectors from the cache, embedding what is missing on the run's Ray cluster."""
    return embed_dataset(dataset, config.embedding, start_pool=ray_pool_starter(config.ray.address),
                         progress=progress)
