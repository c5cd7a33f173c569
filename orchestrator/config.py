"""Typed, validated run configuration, on pydantic.

A config is YAML whose sections mirror the models below. Every key is checked: a typo
("max_lenght") is an error that names the key and suggests the closest valid one, never a
silently ignored setting. `--set section.key=value` overrides are parsed as YAML scalars, with
the same loader as config files (which also reads `1e-3` as a number). Whatever is wrong, the
user sees one line (a UserError), never pydantic's report.

The models also give a JSON Schema (`python -m orchestrator.config --schema`, kept in
docs/config.schema.json) that editors use to complete and check config files; docs/config.md
describes the keys (`python -m orchestrator.config --table`).
"""
from __future__ import annotations

import argparse
import difflib
import json
import re
import typing
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, BeforeValidator, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from embeddings.config import (DEFAULT_MODEL, ConfigSection, EmbeddingConfig, Flag, Int, Number, Text,
                               default_cache_dir)
from orchestrator.core.errors import UserError
from orchestrator.core.paulis import OBSERVABLE_SETS, observable_labels

__all__ = ["Config", "DataConfig", "SplitConfig", "EmbeddingConfig", "RayConfig", "QuantumConfig", "RuntimeConfig",
           "TrainConfig", "HardwareConfig", "load_config", "set_dotted", "flatten", "to_dict", "default_cache_dir", "DEFAULT_MODEL",
           "SELECTION_METRICS", "SECRET_KEYS", "config_json_schema", "config_reference_table", "config_yaml"]

SECRET_KEYS = {"token", "api_key", "apikey", "ibm_token", "password"}

SelectionMetric = Literal["f1_positive", "f1_macro", "accuracy"]
SELECTION_METRICS = typing.get_args(SelectionMetric)

RETIRED_CHANNEL = "ibm_quantum"
RETIRED_CHANNEL_TEXT = ("config: runtime.channel 'ibm_quantum' was retired by IBM on 1 July 2025; use "
                        "ibm_quantum_platform (IBM Quantum Platform, the default) or ibm_cloud")
AER_SIMULATOR = "aer_simulator"  # as in the backends package, which this module must not import (qiskit)
SCHEMA_ID = "urn:hybrid-quantum-orchestrator:config"


def refuse_bool(value: Any) -> Any:
    """Literal[0, 1, 2] alone would take `true` as 1."""
    if isinstance(value, bool):
        raise PydanticCustomError("literal_error", "a bool is not one of the choices")
    return value


ResilienceLevel = typing.Annotated[Literal[0, 1, 2], BeforeValidator(refuse_bool)]


class SplitConfig(ConfigSection):
    """Fractions of the rows for training, validation and test."""

    train: Number = Field(0.70, ge=0, le=1, description="fraction of rows to train on")
    val: Number = Field(0.15, ge=0, le=1, description="fraction for validation (checkpoint selection, early stop)")
    test: Number = Field(0.15, ge=0, le=1, description="fraction held out for the final score")
    seed: Int = Field(2018, description="seed of the shuffle")

    @model_validator(mode="after")
    def fractions_sum_to_one(self) -> SplitConfig:
        if abs(self.train + self.val + self.test - 1.0) > 1e-6:
            raise ValueError(f"config: data.split fractions must be >= 0 and sum to 1 "
                             f"(got {self.train}, {self.val}, {self.test})")
        return self


class DataConfig(ConfigSection):
    """The labelled texts and how they are split."""

    # sms_spam_sample ships with the project; sms_spam (the full UCI collection) is downloaded, checked, cached
    name: Optional[Text] = Field("sms_spam_sample", description="a named dataset: sms_spam_sample or sms_spam")
    path: Optional[Text] = Field(None, description="a local file; wins over name, which then only labels the run")
    format: Literal["auto", "uci", "csv", "tsv", "jsonl"] = Field("auto", description="file format")
    text_column: Text = Field("text", description="column (csv, tsv) or field (jsonl) holding the text")
    label_column: Text = Field("label", description="column or field holding the label")
    labels: Optional[list[Text]] = Field(None, description="raw label values in class-index order; "
                                                           "empty: the sorted unique values")
    positive_label: Optional[Text] = Field(None, description="the class F1 is reported for; empty: the rarest class")
    drop_empty: Flag = Field(False, description="drop empty texts instead of refusing the file")
    limit: Optional[Int] = Field(None, ge=1, description="keep the first N rows")
    duplicates: Literal["merge", "group", "keep"] = Field("merge", description="repeated texts (see orchestrator/data.py)")
    split: SplitConfig = Field(default_factory=SplitConfig)


class RayConfig(ConfigSection):
    """Where the Ray runtime is."""

    address: Optional[Text] = Field(None, description="join this cluster; empty: RAY_ADDRESS, else a local one")


def is_backend_name(name: str) -> bool:
    """The syntax of a backend name; whether that device exists is checked when the backend is built."""
    return name == AER_SIMULATOR or any(name.startswith(prefix) and len(name) > len(prefix)
                                        for prefix in ("fake_", "ibm_"))


class QuantumConfig(ConfigSection):
    """The dressed quantum circuit and the backend that evaluates it."""

    backend: Text = Field(AER_SIMULATOR, description="aer_simulator | fake_<device> (local testing mode) | ibm_<device>")
    n_qubits: Int = Field(4, ge=1, description="qubits of the circuit")
    depth: Int = Field(6, ge=0, description="variational layers of the dressed circuit")
    encoding: Literal["hadamard-ry", "ry", "rx"] = Field(
        "hadamard-ry", description="how the inputs enter: H then RY(x) (Mari et al.) | RY(x) | RX(x)")
    entangler: Literal["cnot-ladder", "cnot-ring", "cz-ladder"] = Field(
        "cnot-ladder", description="each layer's entangling block: CNOTs on even then odd neighbours | "
                                   "the same plus (last, first) | CZs on the ladder")
    observables: Union[Literal["z", "zz", "z+zz"], list[Text]] = Field(
        "z", description="what is read out: Z on every qubit | ZZ on neighbouring pairs | both | a list of "
                         "Pauli strings, last letter qubit 0 (e.g. [ZIII, XXII]); one head input each",
        json_schema_extra={"allowed": "z, zz, z+zz, or a list of Pauli strings (I, X, Y, Z; one letter per qubit)"})
    shots: Optional[Int] = Field(None, ge=1, description="per parameter set; empty: exact on Aer, "
                                                         "runtime.default_shots on devices")
    seed: Optional[Int] = Field(None, description="seeds Aer's sampling when shots are used")
    optimization_level: Int = Field(1, ge=0, le=3, description="preset pass manager level; the template is "
                                                               "transpiled once per backend")
    max_parameter_sets_per_job: Optional[Int] = Field(None, ge=1, description="split larger tables into several jobs")
    circuit_workers: Int = Field(0, ge=0, description="aer_simulator only: Ray circuit workers a large table "
                                                      "is split over")
    min_rows_for_workers: Int = Field(4096, ge=1, description="... when it has at least this many rows "
                                                              "(docs/benchmarks.md: scaling)")
    # simulated on the circuit's own qubits: far faster than the fake_<device> backend
    noise_model: Optional[Text] = Field(None, description="aer_simulator only: a fake device's noise "
                                                          "(fake_fez, ...), simulated on the circuit's qubits")
    gradient: Literal["parameter-shift", "parameter-shift-weights", "spsa"] = Field(
        "parameter-shift", description="parameter-shift (exact, 1 + 2 x parameters rows per sample) | "
                                       "parameter-shift-weights (exact for the circuit weights, pre-net frozen) | "
                                       "spsa (estimated, 1 + 2 x spsa_samples rows per sample)")
    spsa_step: Number = Field(0.1, gt=0, le=1, description="spsa: how far every parameter moves (radians)")
    spsa_samples: Int = Field(1, ge=1, description="spsa: perturbations per sample, averaged")
    eval_shots: Optional[Int] = Field(None, ge=1, description="shots per parameter set for validation and test; "
                                                              "empty: quantum.shots")

    @field_validator("backend")
    @classmethod
    def backend_name_has_a_known_form(cls, name: str) -> str:
        if not is_backend_name(name):
            raise ValueError(f"config: unknown backend {name!r}: use {AER_SIMULATOR}, fake_<device> (offline, "
                             f"e.g. fake_fez) or ibm_<device>; `orchestrate backends` lists them")
        return name

    @field_validator("noise_model")
    @classmethod
    def noise_model_names_a_fake_device(cls, name: Optional[str]) -> Optional[str]:
        if name is not None and not (name.startswith("fake_") and len(name) > len("fake_")):
            raise ValueError(f"config: quantum.noise_model must name a fake device (fake_<device>, e.g. "
                             f"fake_fez), not {name!r}")
        return name

    @field_validator("observables", mode="before")
    @classmethod
    def observables_are_a_set_or_strings(cls, value: Any) -> Any:
        # checked here, in one message: a failed Union would report each of its branches
        if isinstance(value, str) and value in OBSERVABLE_SETS:
            return value
        if isinstance(value, list) and all(isinstance(label, str) for label in value):
            return value
        raise ValueError(f"config: quantum.observables must be one of {', '.join(OBSERVABLE_SETS)} or a list of "
                         f"Pauli strings (e.g. [ZIII, XXII]), not {value!r}")

    @model_validator(mode="after")
    def observables_fit_the_qubits(self) -> QuantumConfig:
        try:
            observable_labels(self.observables, self.n_qubits)
        except ValueError as problem:
            raise ValueError(f"config: quantum.{problem}") from None
        return self

    @model_validator(mode="after")
    def noise_model_only_on_aer(self) -> QuantumConfig:
        if self.noise_model is not None and self.backend != AER_SIMULATOR:
            raise ValueError(f"config: quantum.noise_model applies to aer_simulator only; "
                             f"{self.backend} has its own noise")
        return self


class RuntimeConfig(ConfigSection):
    """IBM Quantum (ibm_<device>) and its local testing mode (fake_<device>). The token is never
    part of a config: it comes from QISKIT_IBM_TOKEN or qiskit's saved account."""

    channel: Optional[Literal["ibm_quantum_platform", "ibm_cloud"]] = Field(
        None, description="empty: QISKIT_IBM_CHANNEL or the saved account (IBM Quantum Platform: "
                          "ibm_quantum_platform; IBM Cloud: ibm_cloud)")
    instance: Optional[Text] = Field(None, description="CRN or instance name; empty: QISKIT_IBM_INSTANCE "
                                                       "or the saved account")
    execution_mode: Literal["auto", "session", "batch", "job"] = Field(
        "auto", description="auto (a session where the account may open one, else batch, else job: "
                            "IBM's Open plan refuses sessions) | session | batch | job")
    max_session_seconds: Optional[Int] = Field(None, ge=1, description="Session/Batch max_time; empty: IBM's default")
    default_shots: Int = Field(1024, ge=1, description="when quantum.shots is empty")
    precision: Optional[Number] = Field(None, gt=0, lt=1, description="target precision instead of shots "
                                                                      "(Estimator default_precision)")
    resilience_level: Optional[ResilienceLevel] = Field(None, description="empty: the Estimator's default (1) on "
                                                                           "ibm_<device>, 0 on fake_<device> (7x faster)")
    dynamical_decoupling: Flag = Field(False, description="dynamical decoupling on idle qubits")
    dd_sequence: Optional[Literal["XX", "XpXm", "XY4"]] = Field(None, description="empty: the service's default")
    twirling: Flag = Field(False, description="gate and measurement twirling")
    max_qpu_seconds: Optional[Number] = Field(None, gt=0, description="stop (resumably) before the run "
                                                                      "would spend more")
    retries: Int = Field(3, ge=0, description="per job, for transient failures")
    retry_backoff_seconds: Number = Field(2.0, ge=0, description="doubled after each failed attempt")

    @field_validator("channel", mode="before")
    @classmethod
    def channel_still_offered(cls, channel: Any) -> Any:
        if channel == RETIRED_CHANNEL:
            raise ValueError(RETIRED_CHANNEL_TEXT)
        return channel


class TrainConfig(ConfigSection):
    """The optimizer and the training loop."""

    optimizer: Literal["adam", "adamw"] = Field("adamw", description="adam | adamw")
    # defaults chosen by `orchestrate sweep --seeds 5` on the quick start (README, "Results"): lr 0.003
    # and no class weights beat 0.01 and balanced weights on mean spam F1 and its spread
    lr: Number = Field(0.003, gt=0, description="learning rate")
    # Linear(384 -> 4) overfits ~700 SMS rows without it (train acc 0.996, val 0.89); 0.5 had the best
    # validation F1 of 0 / 0.5 / 1 / 2
    weight_decay: Number = Field(0.5, ge=0, description="decoupled (AdamW) weight decay")
    schedule: Literal["cosine", "none"] = Field("cosine", description="cosine (to 0 over all steps) | none")
    class_weights: Literal["auto", "balanced", "none"] = Field(
        "none", description="none | balanced | auto: balanced when the classes are imbalanced (balancing buys "
                            "recall with precision: it lowered the quick start's spam F1 by 0.08)")
    batch_size: Int = Field(16, ge=1, description="rows per step")
    epochs: Int = Field(12, ge=1, description="passes over the training rows")
    seed: Int = Field(0, description="seeds initial weights and batch order")
    patience: Int = Field(12, ge=1, description="stop after this many epochs without a better validation metric "
                                                "(12: no early stop; the best epochs come late, as the cosine anneals)")
    select_metric: SelectionMetric = Field("f1_positive", description="validation metric that picks the "
                                                                      "best checkpoint")
    checkpoint_every: Int = Field(100, ge=0, description="also checkpoint every N steps (0: at epoch ends only)")
    max_steps: Optional[Int] = Field(None, ge=0, description="stop after this many training steps (then validate; "
                                                             "0: evaluate only); empty: train.epochs decide")
    grad_accumulation: Int = Field(1, ge=1, description="mini-batches (one job each) per optimizer step")
    warmup_ratio: Number = Field(0.0, ge=0, lt=1, description="fraction of the steps over which the learning "
                                                              "rates rise linearly from 0 (then the schedule)")
    max_grad_norm: Optional[Number] = Field(None, gt=0, description="clip the gradient norm of each step to this; "
                                                                     "empty: no clipping")
    # with embedding.train_layers > 0: Hugging Face fine-tuning's usual rates for the encoder
    encoder_lr: Number = Field(3e-5, gt=0, description="learning rate of the trained encoder layers "
                                                       "(embedding.train_layers)")
    encoder_weight_decay: Number = Field(0.01, ge=0, description="weight decay of the trained encoder layers")
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="the trained encoder layers' compute: auto = bfloat16 autocast on a GPU, float32 on CPU")
    trackers: list[Literal["tensorboard", "mlflow"]] = Field(
        ["tensorboard"], description="where the run also logs per-step loss, lr, jobs, circuits, shots and per-epoch "
                                     "metrics: tensorboard (run_dir/tensorboard), mlflow; [] for none")
    mlflow_tracking_uri: Optional[Text] = Field(
        None, description="MLflow's store; empty: MLFLOW_TRACKING_URI, else mlruns/ in the current folder")
    mlflow_experiment: Optional[Text] = Field(None, description="MLflow experiment; empty: the dataset's name")

    @field_validator("trackers")
    @classmethod
    def each_tracker_once(cls, trackers: list[str]) -> list[str]:
        return list(dict.fromkeys(trackers))


class HardwareConfig(ConfigSection):
    """A run on a device (fake_<device>, ibm_<device>) is a plan of phases: pre-training on exact Aer,
    optionally steps on Aer under the device's noise, then training steps and the evaluation on the
    device, all within runtime.max_qpu_seconds."""

    plan: Flag = Field(True, description="false: no phases, every training step on the device as on a simulator "
                                         "(see what it costs with orchestrate estimate)")
    pretrain_epochs: Optional[Int] = Field(None, ge=1, description="phase 1, exact Aer: epochs; empty: train.epochs")
    noisy_steps: Int = Field(0, ge=0, description="phase 2, Aer with the device's noise model: training steps "
                                                  "(0: no such phase)")
    steps: Optional[Int] = Field(None, ge=0, description="phase 3, on the device: training steps; empty: as many as "
                                                         "runtime.max_qpu_seconds allows after the evaluation")
    gradient: Literal["parameter-shift", "parameter-shift-weights", "spsa"] = Field(
        "spsa", description="the gradient of phases 2 and 3 (see quantum.gradient)")
    shots: Int = Field(1024, ge=1, description="shots per parameter set in training steps of phases 2 and 3")
    eval_shots: Int = Field(256, ge=1, description="shots per parameter set for validation and test in phases 2 and 3")
    batch_size: Optional[Int] = Field(None, ge=1, description="rows per step in phases 2 and 3; empty: train.batch_size")
    lr: Optional[Number] = Field(None, gt=0, description="learning rate of phases 2 and 3; empty: train.lr / 10")


class Config(ConfigSection):
    """A run configuration: one YAML mapping of sections."""

    data: DataConfig = Field(default_factory=DataConfig)
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    quantum: QuantumConfig = Field(default_factory=QuantumConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    hardware: HardwareConfig = Field(default_factory=HardwareConfig)


# ---------------------------------------------------------------------------------------- YAML

BOOL_TAG, FLOAT_TAG = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:float"
# YAML 1.2 floats that YAML 1.1 (PyYAML) leaves as text: an exponent without a dot or a sign (1e-3, 5E+2, 2.5e4)
EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")


class ConfigLoader(yaml.SafeLoader):
    """YAML 1.2 numbers and booleans on PyYAML: `lr: 1e-3` is a number, and only true/false are
    booleans (`labels: [yes, no]` stays text; `drop_empty: yes` is refused, not read as true)."""


ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
ConfigLoader.add_implicit_resolver(BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
ConfigLoader.add_implicit_resolver(FLOAT_TAG, EXPONENT_FLOAT, list("-+0123456789."))


class ConfigDumper(yaml.SafeDumper):
    """Quotes text that ConfigLoader would read as a number ('1234e56'), which safe_dump leaves bare."""


ConfigDumper.add_implicit_resolver(FLOAT_TAG, EXPONENT_FLOAT, list("-+0123456789."))


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=ConfigLoader)


def config_yaml(config: Config) -> str:
    """The config as YAML that load_config reads back as an equal Config (for config.yaml in a run dir)."""
    return yaml.dump(to_dict(config), Dumper=ConfigDumper, sort_keys=False)


# ---------------------------------------------------------------------------------------- loading

def load_config(path: Optional[str] = None, overrides: tuple[str, ...] | list[str] = ()) -> Config:
    """Read a YAML config (or the defaults), apply `key=value` overrides, validate, return it."""
    raw = read_config_file(path) if path else {}
    for item in overrides:
        set_dotted(raw, item)
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        raise UserError(first_problem(e)) from None


def read_config_file(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        raw = parse_yaml(p.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UserError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise UserError(f"config file {path} must hold a mapping of sections, not {type(raw).__name__}")
    return raw


def flatten(mapping: dict, prefix: str = "") -> dict:
    """A nested mapping as one level of dotted keys: {"train": {"lr": 0.01}} -> {"train.lr": 0.01}."""
    flat = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def set_dotted(raw: dict, item: str) -> None:
    """Apply one `section.key=value` override to a raw config mapping."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"override {item!r} must look like section.key=value")
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        if node.get(part) is None:  # absent, or an empty section (`ray:`)
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            raise UserError(f"override {item!r}: {part} is not a section")
    try:
        node[parts[-1]] = parse_yaml(value) if value.strip() else None
    except yaml.YAMLError as e:
        raise UserError(f"override {item!r}: the value is not valid YAML: {str(e).splitlines()[0]}") from None


def to_dict(config: Config) -> dict:
    """Plain Python values, sections and keys in declaration order (what config.yaml records)."""
    return config.model_dump()


# ---------------------------------------------------------------------------------------- errors

TYPE_NAMES = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "bool_type": "true or false", "bool_parsing": "true or false",
    "float_type": "a number", "float_parsing": "a number",
    "finite_number": "a finite number", "string_type": "a string", "list_type": "a list",
}
NOT_A_MAPPING = {"model_type", "model_attributes_type", "dict_type"}
BOUNDS = {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}
UNKNOWN_KEY = {"extra_forbidden", "invalid_key"}


def first_problem(error: ValidationError) -> str:
    """One line for the most telling problem: a secret, else an unknown key, else the first other."""
    problems = error.errors()
    return describe(min(problems, key=lambda p: (not is_secret(p), p["type"] not in UNKNOWN_KEY)))


def is_secret(problem: dict) -> bool:
    return problem["type"] in UNKNOWN_KEY and str(problem["loc"][-1]).lower() in SECRET_KEYS


def describe(problem: dict) -> str:
    loc, kind, value = problem["loc"], problem["type"], problem.get("input")
    key = dotted(loc)
    if is_secret(problem):
        return (f"config: '{key}' is refused: a token never goes into a config (it would be copied into every "
                f"run dir); set QISKIT_IBM_TOKEN or save a qiskit account")
    if kind in UNKNOWN_KEY:
        return unknown_key(loc)
    if kind == "value_error":  # our validators' messages are complete
        return str(problem["ctx"]["error"])
    if kind in BOUNDS:
        return f"config: {key} must be {bound_text(field_at(loc))}, not {value}"
    if value is None:
        return f"config: {key} must not be empty"
    if kind in NOT_A_MAPPING:
        return f"config: {key} must be a mapping, not {type(value).__name__}"
    if kind == "literal_error":
        shown = ", ".join("empty" if c is None else str(c) for c in choices(field_at(loc).annotation))
        return f"config: {key} must be one of {shown}, not {value!r}"
    if kind in TYPE_NAMES:
        return f"config: {key} must be {TYPE_NAMES[kind]}, not {value!r}"
    return f"config: {key}: {problem['msg']}"


def dotted(loc: tuple) -> str:
    """('data', 'labels', 0) -> 'data.labels[0]'."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "config"


def unknown_key(loc: tuple) -> str:
    known = list(model_at(loc[:-1]).model_fields)
    prefix = dotted(loc[:-1]) + "." if loc[:-1] else ""
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    hint = f"did you mean '{prefix}{close[0]}'?" if close else f"valid: {', '.join(known)}"
    return f"config: unknown key '{prefix}{loc[-1]}' ({hint})"


def model_at(path: tuple) -> type[BaseModel]:
    model: type[BaseModel] = Config
    for name in path:
        model = model.model_fields[name].annotation
    return model


def field_at(loc: tuple) -> FieldInfo:
    # a list item's problem (data.labels[0]) belongs to the list's field
    names = tuple(part for part in loc if isinstance(part, str))
    return model_at(names[:-1]).model_fields[names[-1]]


def choices(annotation: Any) -> list:
    """The allowed values of a Literal field, None (shown as `empty`) first when it is optional;
    [] for a field that is not a choice."""
    if typing.get_origin(annotation) is Literal:
        return list(typing.get_args(annotation))
    if typing.get_origin(annotation) is typing.Annotated:
        return choices(typing.get_args(annotation)[0])
    args = typing.get_args(annotation)
    allowed = [value for arg in args if arg is not type(None) for value in choices(arg)]
    return [None] + allowed if allowed and type(None) in args else allowed


def bounds(field: FieldInfo) -> dict:
    """{'ge': 1, 'le': 3, ...}: the numeric bounds of a field."""
    found = {}
    for constraint in field.metadata:
        for name in ("ge", "gt", "le", "lt"):
            if getattr(constraint, name, None) is not None:
                found[name] = getattr(constraint, name)
    return found


def bound_text(field: FieldInfo) -> str:
    b = bounds(field)
    if "ge" in b and "le" in b:
        return f"{b['ge']} to {b['le']}"
    if "gt" in b and "lt" in b:
        return f"between {b['gt']} and {b['lt']}"
    parts = ([f"at least {b['ge']}"] if "ge" in b else []) + ([f"> {b['gt']}"] if "gt" in b else []) + \
            ([f"at most {b['le']}"] if "le" in b else []) + ([f"< {b['lt']}"] if "lt" in b else [])
    return " and ".join(parts)


# ---------------------------------------------------------------------------------------- documentation

def config_json_schema() -> dict:
    """The JSON Schema of a config file (docs/config.schema.json), for editors and other tools."""
    schema = Config.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            **schema, "title": "hybrid-quantum-orchestrator run config",
            "description": "A run config (orchestrate run --config FILE): YAML sections of settings; "
                           "every key is optional and unknown keys are refused."}


def config_reference_table() -> str:
    """Markdown: per section, every key with its default, what it allows and what it means (docs/config.md)."""
    parts = []
    for section, field in Config.model_fields.items():
        parts.append(f"### `{section}`\n\n{field.annotation.__doc__.split(chr(10))[0]}\n")
        parts.append(section_table(field.annotation))
    return "\n".join(parts)


def section_table(model: type[BaseModel]) -> str:
    rows = ["| key | default | allowed | meaning |", "| --- | --- | --- | --- |"]
    for key, field in walk_fields(model):
        cells = (f"`{key}`", default_text(field), allowed_text(field), field.description or "")
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows) + "\n"


def walk_fields(model: type[BaseModel], prefix: str = "") -> typing.Iterator[tuple[str, FieldInfo]]:
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            yield from walk_fields(field.annotation, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", field


def default_text(field: FieldInfo) -> str:
    if field.default_factory is not None:
        return "(see meaning)"
    if field.default is None:
        return "empty"
    return f"`{field.default}`" if isinstance(field.default, str) else f"`{json.dumps(field.default)}`"


def allowed_text(field: FieldInfo) -> str:
    if isinstance(field.json_schema_extra, dict) and "allowed" in field.json_schema_extra:
        return str(field.json_schema_extra["allowed"])      # a field of mixed kinds says it in its own words
    allowed = choices(field.annotation)
    if allowed:
        return ", ".join("empty" if c is None else str(c) for c in allowed)
    kind = type_text(field.annotation)
    limits = bound_text(field)
    optional = "empty or " if type(None) in typing.get_args(field.annotation) else ""
    return f"{optional}{kind}{', ' + limits if limits else ''}"


def type_text(annotation: Any) -> str:
    names = {bool: "true/false", int: "integer", float: "number", str: "text", list: "list of text"}
    for candidate in (annotation, *typing.get_args(annotation)):
        base = typing.get_origin(candidate) or candidate
        if base is typing.Annotated:
            base = typing.get_args(candidate)[0]
        if base in names:
            return names[base]
    return str(annotation)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.config", description=__doc__.splitlines()[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--schema", action="store_true", help="print the JSON Schema (docs/config.schema.json)")
    what.add_argument("--table", action="store_true", help="print the Markdown table of keys (docs/config.md)")
    args = parser.parse_args(argv)
    print(json.dumps(config_json_schema(), indent=2) if args.schema else config_reference_table().rstrip("\n"))


if __name__ == "__main__":
    main()
