"""The steps every command takes before it trains, scores or estimates: `prepare(config)`.

    dataset   read and checked (orchestrator/data.py)
    model     the encoder resolved, so an unknown one is refused before anything is written
    split     stratified train / val / test (every split needs rows), or the whole file to score
    vectors   from the verified HDF5 cache, computing on Ray workers only what is missing;
              with embedding.train_layers = k the cache holds the layer states below the top k
              layers instead, and with 'all' the texts are only tokenized (the whole encoder trains)

`orchestrate run`, `resume`, `eval` and `estimate` all go through it, so a run dir's config
gives the same dataset, split and vectors whichever command reads it. Around it:

    preflight(config, needs)   every check that can fail before anything is written, one list
                               for run, resume, estimate, embed and a sweep's trials
    resolve(config, prepared)  the one step that makes a run's final config: what its name, data
                               file, format, pooling, cache and addresses turned out to be (what
                               config.yaml records, and eval reads another file with)
"""
from __future__ import annotations

import enum
import logging
import os
import time
from pathlib import Path
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

from embeddings.encode import tokenize_texts
from embeddings.models import resolve_model
from embeddings.stage import EmbedReport, embed_dataset
from orchestrator.config import Config, derive
from orchestrator.core.errors import UserError
from orchestrator.core.files import usable_folder
from orchestrator.data.datasets import Dataset, load_dataset
from orchestrator.data.splits import Split, split_dataset
from workers.embedding import ray_pool_starter

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    dataset: Dataset
    split: Optional[Split]               # None: the whole file is scored (eval --data)
    # what the model reads, for every row: the cached Vectors (train_layers 0), LayerStates (k) or
    # TokenIds (all); None: not embedded (estimate)
    content: object = None
    embed_info: dict = field(default_factory=dict)   # summary.json's view of how the vectors were obtained


def prepare(config: Config, progress: bool = True, embed: bool = True, whole_file: bool = False,
            splitter: Optional[Callable[[Dataset], Split]] = None) -> Prepared:
    """Dataset, split and vectors of `config`. `whole_file`: score every row of a labelled file
    (one class is enough) instead of splitting it for training. `splitter`: the split of the
    dataset made by the caller (the Python API's own validation rows) instead of data.split's."""
    dataset = load_dataset(config.data, min_classes=1 if whole_file else 2)
    if embed:
        check_encoder(config)
    if whole_file:
        split = None
    else:
        split = (splitter or (lambda d: split_dataset(d, config.data.split, config.data.duplicates)))(dataset)
    if split is not None and min(len(split.train), len(split.val), len(split.test)) == 0:
        raise UserError(f"{split.describe()}: every split needs rows; use more data or other data.split fractions")
    described = f"rows {len(dataset)}" + (f"  {split.describe()}" if split is not None else "")
    log.info(f"dataset: {dataset.source}  {described}")
    prepared = Prepared(dataset=dataset, split=split)
    return with_vectors(prepared, config, progress) if embed else prepared


class Check(enum.Enum):
    BACKEND = "backend"      # the name, a device or noise model that exists, credentials, qubits and shots
    TRACKERS = "trackers"    # every configured tracker's package installed
    CACHE = "cache"          # the embedding cache folder usable
    ENCODER = "encoder"      # the model found; train_layers and max_length within it


RUN = (Check.BACKEND, Check.TRACKERS, Check.CACHE, Check.ENCODER)      # run, and each trial of a sweep
RESUME = (Check.BACKEND, Check.TRACKERS, Check.CACHE)
ESTIMATE = (Check.BACKEND,)
EMBED = (Check.ENCODER, Check.CACHE)


def preflight(config: Config, needs: Iterable[Check]) -> None:
    """Every check of `needs`, before anything is written: the first problem is one line (UserError)."""
    from orchestrator.quantum.backends import check_backend
    from orchestrator.training.trackers import check_trackers

    checks = {Check.BACKEND: check_backend, Check.TRACKERS: check_trackers, Check.CACHE: check_cache_dir,
              Check.ENCODER: check_encoder}
    for need in needs:
        checks[need](config)


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


def data_name(config: Config, config_file: Optional[str]) -> Optional[str]:
    """What a run is called: data.name, but a data file wins over it: the run is named after its
    config file, else after the data file."""
    if not config.data.path:
        return config.data.name
    return Path(config_file).stem if config_file else Path(config.data.path).stem


def resolve(config: Config, prepared: Optional["Prepared"] = None, *, name: Optional[str] = None,
            ray_address: Optional[str] = None) -> Config:
    """The run's final config, frozen: `config` with what its settings turned out to be. The data
    file as an absolute path and the format it was read as (`prepared`), the concrete pooling
    ('auto' made the model's own), the selection metric ('auto': f1_positive with two classes, f1_macro with
    more), the device (ibm_least_busy: the one it picked), the cache folder and MLflow's store as absolute paths (a sweep's
    trial runs in a folder of its own; eval may run from another), the run's `name`, and the Ray
    cluster given now (`ray_address`, which wins over the one recorded)."""
    from orchestrator.training.metrics import AUTO as AUTO_METRIC, selection_metric
    from orchestrator.training.trackers import mlflow_tracking_uri

    from orchestrator.quantum.backends import backend_family

    e, t = config.embedding, config.train
    changes = {"embedding.pooling": resolve_model(e.model, e.revision).pooling(e.pooling),
               "quantum.backend": backend_family(config.quantum.backend).device_name(config),
               "embedding.cache_dir": str(Path(e.cache_dir).expanduser().resolve())}
    if prepared is not None:
        changes["data.format"] = prepared.dataset.format
        if t.select_metric == AUTO_METRIC:   # what 'auto' picks for this many classes
            changes["train.select_metric"] = selection_metric(t.select_metric, len(prepared.dataset.label_names))
        if config.data.path:
            changes["data.path"] = prepared.dataset.source
    if name is not None:
        changes["data.name"] = name
    if ray_address:
        changes["ray.address"] = ray_address
    if "mlflow" in t.trackers and not os.environ.get("MLFLOW_TRACKING_URI"):
        changes["train.mlflow_tracking_uri"] = mlflow_tracking_uri(t.mlflow_tracking_uri)   # ./mlruns: here
    return derive(config, changes)


def with_vectors(prepared: Prepared, config: Config, progress: bool = True) -> Prepared:
    """`prepared` with its vectors (or layer states): from the cache, or embedded now; with
    train_layers 'all', its token ids."""
    if config.embedding.train_layers == "all":
        return with_token_ids(prepared, config)
    report = embed_vectors(prepared.dataset, config, progress)
    log.info(report.final_line())
    return Prepared(dataset=prepared.dataset, split=prepared.split, content=report.cache.content,
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
    return Prepared(dataset=prepared.dataset, split=prepared.split, content=token_ids,
                    embed_info={"seconds": seconds, "path": None, "key": None, "hit": False, "bytes": 0})


def prepare_run(config: Config, name: Optional[str], progress: bool = True,
                splitter: Optional[Callable[[Dataset], Split]] = None) -> tuple[Config, Prepared, Optional[list]]:
    """What `orchestrate run` (and the Python API's fit) does in its claimed run dir before training:
    dataset and split, the resolved config, the QPU budget, a device run's plan (a plan past the
    budget stops here), then the vectors. Returns the config, the prepared data and the plan."""
    from orchestrator.training.phases import account_budget, is_planned, plan_run

    prepared = prepare(config, progress=progress, embed=False, splitter=splitter)
    config = resolve(config, prepared, name=name)   # what config.yaml records: what 'auto' turned out to be
    config = account_budget(config, prepared.split)  # an Open-plan instance: what is left of its window
    plan = plan_run(config, prepared.split) if is_planned(config) else None
    return config, with_vectors(prepared, config, progress=progress), plan


def embed_vectors(dataset: Dataset, config: Config, progress: bool = True) -> EmbedReport:
    """The dataset's vectors from the cache, embedding what is missing on the run's Ray cluster."""
    return embed_dataset(dataset, config.embedding, start_pool=ray_pool_starter(config.ray.address),
                         progress=progress)
