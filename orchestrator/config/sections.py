"""The sections of a run config, on pydantic: what every key means, allows and defaults to.

A config is YAML whose sections mirror the models below (yaml_io.py reads it). Every key is
checked: a typo is refused naming the closest valid key (errors.py), never silently ignored.
Every section is frozen once validated; a changed config is a new one (yaml_io.derive).
The embedding section and the field types all sections share live in embeddings/config.py,
below the orchestrator, which re-exports them.
"""
from __future__ import annotations

import typing
from typing import Any, Literal, Optional, Union

from pydantic import BeforeValidator, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from embeddings.config import ConfigSection, EmbeddingConfig, Flag, Int, Number, Text
from orchestrator.core.backend_names import AER_SIMULATOR, family_of, unknown_backend
from orchestrator.core.paulis import OBSERVABLE_SETS, observable_labels
from orchestrator.data.readers import READERS
from orchestrator.quantum.ansatz import ENCODINGS, ENTANGLERS
from orchestrator.quantum.gradients import AUTO, GRADIENT_METHODS, TABLE_GRADIENTS, why_not_exact

# the choices the config offers are the names of what exists (Literal[(a, b)] is Literal[a, b])
EncodingName = Literal[tuple(ENCODINGS)]
EntanglerName = Literal[tuple(ENTANGLERS)]
ObservableSet = Literal[OBSERVABLE_SETS]
GradientName = Literal[(AUTO, *GRADIENT_METHODS)]
TableGradientName = Literal[TABLE_GRADIENTS]
DataFormat = Literal[("auto", *READERS)]

# auto (the default): what the class count asks for (pipeline.resolve records it): f1_positive with two
# classes, f1_macro with more (one class's F1 picks a poor 6-class model)
SelectionMetric = Literal["auto", "f1_positive", "f1_macro", "accuracy"]
SELECTION_METRICS = typing.get_args(SelectionMetric)[1:]   # the metrics themselves

RETIRED_CHANNEL = "ibm_quantum"
RETIRED_CHANNEL_TEXT = ("config: runtime.channel 'ibm_quantum' was retired by IBM on 1 July 2025; use "
                        "ibm_quantum_platform (IBM Quantum Platform, the default) or ibm_cloud")


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
    path: Optional[Text] = Field(None, description="a local file, a Hugging Face datasets folder (save_to_disk) or "
                                                   "hf:NAME[:SPLIT] (a hub id or a folder; split default train); "
                                                   "wins over name, which then only labels the run")
    format: DataFormat = Field("auto", description="file format; auto: by extension (.parquet), a saved "
                                                   "datasets folder or an hf: id is hf")
    text_column: Text = Field("text", description="column (csv, tsv, parquet, hf) or field (jsonl) holding the text")
    label_column: Text = Field("label", description="column or field holding the label")
    labels: Optional[list[Text]] = Field(None, description="raw label values in class-index order; "
                                                           "empty: the sorted unique values")
    positive_label: Optional[Text] = Field(None, description="the class F1 is reported for; empty: the rarest class")
    drop_empty: Flag = Field(False, description="drop empty texts instead of refusing the file")
    limit: Optional[Int] = Field(None, ge=1, description="keep the first N rows")
    duplicates: Literal["merge", "group", "keep"] = Field("merge", description="repeated texts (see orchestrator/data/splits.py)")
    split: SplitConfig = Field(default_factory=SplitConfig)


class RayConfig(ConfigSection):
    """Where the Ray runtime is."""

    address: Optional[Text] = Field(None, description="join this cluster; empty: RAY_ADDRESS, else a local one")


class QuantumConfig(ConfigSection):
    """The dressed quantum circuit and the backend that evaluates it."""

    backend: Text = Field(AER_SIMULATOR, description="aer_simulator | fake_<device> (local testing mode) | ibm_<device>")
    n_qubits: Int = Field(4, ge=1, description="qubits of the circuit")
    depth: Int = Field(6, ge=0, description="variational layers of the dressed circuit")
    encoding: EncodingName = Field(
        "hadamard-ry", description="how the inputs enter: H then RY(x) (Mari et al.) | RY(x) | RX(x)")
    entangler: EntanglerName = Field(
        "cnot-ladder", description="each layer's entangling block: CNOTs on even then odd neighbours | "
                                   "the same plus (last, first) | CZs on the ladder")
    observables: Union[ObservableSet, list[Text]] = Field(
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
    gradient: GradientName = Field(
        AUTO, description="auto (backprop on an exact simulator, else parameter-shift) | "
                          "backprop (exact statevector, differentiated by torch; exact aer_simulator only) | "
                          "parameter-shift (exact, 1 + 2 x parameters rows per sample) | "
                          "parameter-shift-weights (exact for the circuit weights, pre-net frozen) | "
                          "spsa (estimated, 1 + 2 x spsa_samples rows per sample)")
    spsa_step: Number = Field(0.1, gt=0, le=1, description="spsa: how far every parameter moves (radians)")
    spsa_samples: Int = Field(1, ge=1, description="spsa: perturbations per sample, averaged")
    eval_shots: Optional[Int] = Field(None, ge=1, description="shots per parameter set for validation and test; "
                                                              "empty: quantum.shots")

    @field_validator("backend")
    @classmethod
    def backend_name_has_a_known_form(cls, name: str) -> str:
        # whether that device exists is checked before the run starts (its backend family's check)
        if family_of(name) is None:
            raise ValueError(f"config: {unknown_backend(name)}")
        return name

    @field_validator("noise_model")
    @classmethod
    def noise_model_names_a_fake_device(cls, name: Optional[str]) -> Optional[str]:
        if name is not None and family_of(name) != "fake":
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
    def backprop_only_on_an_exact_simulator(self) -> QuantumConfig:
        method = GRADIENT_METHODS.get(self.gradient)
        reason = why_not_exact(self) if method is not None and method.needs_exact_simulator else None
        if reason is not None:
            raise ValueError(f"config: quantum.gradient {self.gradient} needs an exact simulator, but {reason}; "
                             f"use auto or parameter-shift")
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
    url: Optional[Text] = Field(None, description="the service's URL (on-premises, staging, a local platform); "
                                                  "empty: QISKIT_IBM_URL, the saved account, else IBM's cloud")
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
    max_pending_jobs: Optional[Int] = Field(None, ge=1, description="jobs queued or running at once; empty: 3 on "
                                                                    "an Open-plan instance, else no limit")
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
    select_metric: SelectionMetric = Field(
        "auto", description="validation metric that picks the best checkpoint; auto: f1_positive with two classes, "
                            "f1_macro with more")
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
    gradient: TableGradientName = Field(
        "spsa", description="the gradient of phases 2 and 3 (see quantum.gradient; they run with shots)")
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
