"""The steps every command takes before it trains, scores or estimates: `prepare(config)`.

    dataset   read and checked (orchestrator/data.py)
    model     the encoder resolved, so an unknown one is refused before anything is written
    split     stratified train / val / test (every split needs rows), or the whole file to score
    vectors   from the verified HDF5 cache, computing on Ray workers only what is missing

`orchestrate run`, `resume`, `eval` and `estimate` all go through it, so a run dir's config
gives the same dataset, split and vectors whichever command reads it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from embeddings.models import resolve_model
from embeddings.stage import EmbedReport, embed_dataset
from orchestrator.config import Config
from orchestrator.core.errors import UserError
from orchestrator.data import Dataset, Split, load_dataset, split_dataset
from workers.embedding import ray_pool_starter

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    dataset: Dataset
    split: Optional[Split]               # None: the whole file is scored (eval --data)
    vectors: Optional[np.ndarray] = None   # None: not embedded (estimate)
    embedding: Optional[EmbedReport] = None
    embed_info: dict = field(default_factory=dict)   # summary.json's view of how the vectors were obtained


def prepare(config: Config, progress: bool = True, embed: bool = True, whole_file: bool = False) -> Prepared:
    """Dataset, split and vectors of `config`. `whole_file`: score every row of a labelled file
    (one class is enough) instead of splitting it for training."""
    dataset = load_dataset(config.data, min_classes=1 if whole_file else 2)
    if embed:
        resolve_model(config.embedding.model, config.embedding.revision)  # refuse an unknown model now
    split = None if whole_file else split_dataset(dataset, config.data.split, config.data.duplicates)
    if split is not None and min(len(split.train), len(split.val), len(split.test)) == 0:
        raise UserError(f"{split.describe()}: every split needs rows; use more data or other data.split fractions")
    described = f"rows {len(dataset)}" + (f"  {split.describe()}" if split is not None else "")
    log.info(f"dataset: {dataset.source}  {described}")
    prepared = Prepared(dataset=dataset, split=split)
    return with_vectors(prepared, config, progress) if embed else prepared


def with_vectors(prepared: Prepared, config: Config, progress: bool = True) -> Prepared:
    """`prepared` with its vectors: from the cache, or embedded now."""
    report = embed_vectors(prepared.dataset, config, progress)
    log.info(report.final_line())
    return Prepared(dataset=prepared.dataset, split=prepared.split, vectors=report.cache.vectors, embedding=report,
                    embed_info={"seconds": report.seconds, "path": str(report.cache.path), "key": report.key,
                                "hit": report.hit})


def embed_vectors(dataset: Dataset, config: Config, progress: bool = True) -> EmbedReport:
    """The dataset's vectors from the cache, embedding what is missing on the run's Ray cluster."""
    return embed_dataset(dataset, config.embedding, start_pool=ray_pool_starter(config.ray.address),
                         progress=progress)
