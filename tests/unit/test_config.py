"""The run config: defaults, YAML round trips, one-line messages for every kind of mistake, the schema."""
import ast
import json
import re
from pathlib import Path

import pytest
import yaml

from orchestrator.config import (DEFAULT_MODEL, SELECTION_METRICS, Config, EmbeddingConfig,
                                 config_json_schema, config_reference_table, config_yaml, default_cache_dir, derive,
                                 load_config, to_dict)
from orchestrator.core.errors import UserError

ROOT = Path(__file__).resolve().parents[2]

EVERY_SECTION = """\
data:
  name: null
  path: reviews.csv
  format: csv
  text_column: review
  label_column: sentiment
  labels: [0, 1]
  positive_label: 1
  drop_empty: true
  limit: 500
  duplicates: group
  split: {train: 0.8, val: 0.1, test: 0.1, seed: 7}
embedding:
  model: some/model
  revision: 1234
  max_length: 64
  pooling: mean
  dtype: bfloat16
  device: cpu
  batch_tokens: 4096
  shard_rows: 256
  workers: 2
  threads_per_worker: 3
  cache_dir: /tmp/cache
ray:
  address: ray://head:10001
quantum:
  backend: aer_simulator
  n_qubits: 3
  depth: 2
  shots: 2000
  seed: 5
  optimization_level: 3
  max_parameter_sets_per_job: 100
  circuit_workers: 4
  min_rows_for_workers: 1000
  noise_model: fake_fez
runtime:
  channel: ibm_cloud
  instance: my-instance
  execution_mode: batch
  max_session_seconds: 600
  default_shots: 4000
  precision: 0.01
  resilience_level: 2
  dynamical_decoupling: true
  dd_sequence: XY4
  twirling: true
  max_qpu_seconds: 120
  retries: 5
  retry_backoff_seconds: 1
train:
  optimizer: adam
  lr: 2.5e-4
  weight_decay: 0
  schedule: none
  class_weights: balanced
  batch_size: 8
  epochs: 3
  seed: 11
  patience: 2
  select_metric: accuracy
  checkpoint_every: 0
"""


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def refusal(*overrides: str) -> str:
    """The message load_config refuses these overrides with, checked to be one `config:` line."""
    with pytest.raises(UserError) as caught:
        load_config(overrides=overrides)
    message = str(caught.value)
    assert message.startswith("config: ") and "\n" not in message, message
    return message


# ---------------------------------------------------------------------------------------- values

def test_defaults():
    config = Config()
    assert config == load_config()
    assert config.data.name == "sms_spam_sample" and config.data.split.train == 0.70
    assert config.data.split.seed == 2018 and config.data.labels is None
    assert config.embedding.model == DEFAULT_MODEL == "all-MiniLM-L6-v2"
    assert config.embedding.cache_dir == default_cache_dir()
    assert config.quantum.backend == "aer_simulator" and config.quantum.shots is None
    assert config.runtime.execution_mode == "auto" and config.runtime.default_shots == 1024
    assert config.train.lr == 0.003 and config.train.weight_decay == 0.5 and config.train.epochs == 12
    assert config.train.class_weights == "none" and config.train.patience == 12 and config.train.trackers == ["tensorboard"]
    assert config.train.select_metric == "auto" and SELECTION_METRICS[0] == "f1_positive"


def test_cache_dir_default_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ORCHESTRATOR_CACHE_DIR", str(tmp_path))
    assert EmbeddingConfig().cache_dir == str(tmp_path)


def test_every_section_round_trips_through_yaml(tmp_path):
    config = load_config(write(tmp_path, EVERY_SECTION))
    assert config.data.labels == ["0", "1"] and config.data.positive_label == "1"
    assert config.embedding.revision == "1234"
    assert config.train.lr == 2.5e-4 and config.train.weight_decay == 0.0
    assert isinstance(config.runtime.max_qpu_seconds, float) and isinstance(config.train.epochs, int)
    as_dict = to_dict(config)
    assert list(as_dict) == ["data", "embedding", "ray", "quantum", "runtime", "train", "hardware"]
    assert list(as_dict["data"])[:3] == ["name", "path", "format"] and list(as_dict["data"])[-1] == "split"
    assert as_dict["data"]["split"] == {"train": 0.8, "val": 0.1, "test": 0.1, "seed": 7}
    # what the run does: plain values that safe_dump writes, and load_config reads back
    assert load_config(write(tmp_path, yaml.safe_dump(as_dict, sort_keys=False), "run.yaml")) == config
    assert load_config(write(tmp_path, config_yaml(config), "run2.yaml")) == config


def test_config_yaml_quotes_text_that_would_read_as_a_number(tmp_path):
    config = derive(Config(), {"embedding.revision": "1234e56", "data.labels": ["no", "yes"]})
    assert load_config(write(tmp_path, config_yaml(config))) == config


def test_exponent_numbers_are_floats_in_files_and_overrides(tmp_path):
    from_file = load_config(write(tmp_path, "train:\n  lr: 1e-3\n  epochs: 12\nruntime:\n  max_qpu_seconds: 5E+2\n"))
    assert from_file.train.lr == 0.001 and type(from_file.train.lr) is float
    assert from_file.runtime.max_qpu_seconds == 500.0 and from_file.train.epochs == 12
    assert type(from_file.train.epochs) is int
    from_override = load_config(overrides=["train.lr=1e-3", "train.weight_decay=2.5e-4"])
    assert from_override.train.lr == 0.001 and from_override.train.weight_decay == 0.00025


def test_text_keys_take_any_scalar_and_an_empty_section_is_its_defaults(tmp_path):
    config = load_config(write(tmp_path, "ray:\ndata:\n  labels: [no, yes]\n"),
                         overrides=["ray.address=5", "embedding.revision=true"])
    assert config.ray.address == "5" and config.embedding.revision == "True"
    assert config.data.labels == ["no", "yes"]  # YAML 1.1 would have read False, True


def test_a_config_is_frozen_and_a_derived_copy_is_checked():
    config = Config()
    with pytest.raises(ValueError):
        config.embedding.pooling = "mean"       # frozen: what a run resolved cannot change behind its back
    derived = derive(config, {"data.name": "other", "embedding.pooling": "mean", "data.split.seed": 3})
    assert (derived.data.name, derived.embedding.pooling, derived.data.split.seed) == ("other", "mean", 3)
    assert (config.data.name, config.embedding.pooling) == ("sms_spam_sample", "auto")
    with pytest.raises(UserError, match=r"^config: embedding.pooling must be one of auto, cls, pooler, mean, not 'max'$"):
        derive(config, {"embedding.pooling": "max"})
    with pytest.raises(UserError, match=r"unknown key 'train.optimiser'"):
        derive(config, {"train.optimiser": "sgd"})


# ---------------------------------------------------------------------------------------- messages

def test_unknown_key_suggests_the_closest():
    assert refusal("embedding.max_lenght=5") == \
        "config: unknown key 'embedding.max_lenght' (did you mean 'embedding.max_length'?)"
    assert refusal("train.optimiser=sgd") == "config: unknown key 'train.optimiser' (did you mean 'train.optimizer'?)"
    assert refusal("ray.zzzzzz=1") == "config: unknown key 'ray.zzzzzz' (valid: address)"


def test_unknown_section():
    assert refusal("embeding.max_length=5") == "config: unknown key 'embeding' (did you mean 'embedding'?)"
    assert refusal("zzz.q=1") == "config: unknown key 'zzz' (valid: data, embedding, ray, quantum, runtime, train, hardware)"


@pytest.mark.parametrize("key", ["runtime.token", "ibm_token", "quantum.API_KEY", "data.split.password"])
def test_secret_keys_are_refused_without_their_value(key):
    message = refusal(f"{key}=s3cret")
    assert message == (f"config: '{key}' is refused: a token never goes into a config (it would be copied into "
                       f"every run dir); set QISKIT_IBM_TOKEN or save a qiskit account")


def test_a_secret_is_reported_before_other_problems():
    assert "'runtime.token' is refused" in refusal("train.epochs=0", "train.zzz=1", "runtime.token=x")


@pytest.mark.parametrize("override, message", [
    ("embedding.max_length=many", "config: embedding.max_length must be an integer, not 'many'"),
    ("train.epochs=5.0", "config: train.epochs must be an integer, not 5.0"),
    ("train.epochs='5'", "config: train.epochs must be an integer, not '5'"),
    ("train.epochs=true", "config: train.epochs must be an integer, not True"),
    ("data.drop_empty=yes", "config: data.drop_empty must be true or false, not 'yes'"),
    ("data.drop_empty=1", "config: data.drop_empty must be true or false, not 1"),
    ("train.lr=fast", "config: train.lr must be a number, not 'fast'"),
    ("train.lr=false", "config: train.lr must be a number, not False"),
    ("train.lr=.inf", "config: train.lr must be a finite number, not inf"),
    ("embedding.model=[a, b]", "config: embedding.model must be a string, not ['a', 'b']"),
    ("data.labels=ham", "config: data.labels must be a list, not 'ham'"),
    ("embedding.model=", "config: embedding.model must not be empty"),
    ("train.epochs=", "config: train.epochs must not be empty"),
])
def test_wrong_types(override, message):
    assert refusal(override) == message


def test_a_section_must_be_a_mapping(tmp_path):
    assert refusal("embedding=[1, 2]") == "config: embedding must be a mapping, not list"
    assert refusal("data.split=0.5") == "config: data.split must be a mapping, not float"


@pytest.mark.parametrize("override, message", [
    ("embedding.pooling=max", "config: embedding.pooling must be one of auto, cls, pooler, mean, not 'max'"),
    ("runtime.channel=ibm", "config: runtime.channel must be one of empty, ibm_quantum_platform, ibm_cloud, "
                            "not 'ibm'"),
    ("runtime.channel=ibm_quantum", "config: runtime.channel 'ibm_quantum' was retired by IBM on 1 July 2025; "
                                    "use ibm_quantum_platform (IBM Quantum Platform, the default) or ibm_cloud"),
    ("runtime.resilience_level=3", "config: runtime.resilience_level must be one of empty, 0, 1, 2, not 3"),
    ("runtime.resilience_level=true", "config: runtime.resilience_level must be one of empty, 0, 1, 2, not True"),
    ("runtime.execution_mode=", "config: runtime.execution_mode must not be empty"),
    ("train.select_metric=loss", "config: train.select_metric must be one of auto, f1_positive, f1_macro, accuracy, "
                                 "not 'loss'"),
])
def test_choices(override, message):
    assert refusal(override) == message


@pytest.mark.parametrize("override, message", [
    ("train.epochs=0", "config: train.epochs must be at least 1, not 0"),
    ("data.limit=0", "config: data.limit must be at least 1, not 0"),
    ("runtime.retries=-1", "config: runtime.retries must be at least 0, not -1"),
    ("quantum.optimization_level=4", "config: quantum.optimization_level must be 0 to 3, not 4"),
    ("runtime.precision=1", "config: runtime.precision must be between 0 and 1, not 1"),
    ("runtime.max_qpu_seconds=0", "config: runtime.max_qpu_seconds must be > 0, not 0"),
    ("train.lr=0", "config: train.lr must be > 0, not 0"),
    ("train.weight_decay=-0.5", "config: train.weight_decay must be at least 0, not -0.5"),
])
def test_bounds(override, message):
    assert refusal(override) == message


def test_split_fractions_sum_to_one():
    assert refusal("data.split.train=0.5") == \
        "config: data.split fractions must be >= 0 and sum to 1 (got 0.5, 0.15, 0.15)"
    assert load_config(overrides=["data.split.train=0.5", "data.split.val=0.25", "data.split.test=0.25"])


def test_noise_model_is_for_aer_only():
    assert refusal("quantum.backend=fake_fez", "quantum.noise_model=fake_manila") == \
        "config: quantum.noise_model applies to aer_simulator only; fake_fez has its own noise"
    assert "quantum.noise_model must name a fake device" in refusal("quantum.noise_model=fez")
    assert load_config(overrides=["quantum.noise_model=fake_manila"]).quantum.noise_model == "fake_manila"


def test_batch_tokens_hold_one_text():
    assert refusal("embedding.batch_tokens=64") == \
        "config: embedding.batch_tokens (64) must be at least max_length (128)"
    assert load_config(overrides=["embedding.batch_tokens=64", "embedding.max_length=64"])


@pytest.mark.parametrize("name", ["qasm_simulator", "fake_", "ibm_", "FakeFez"])
def test_unknown_backend_name(name):
    assert refusal(f"quantum.backend={name}") == (
        f"config: unknown backend '{name}': use aer_simulator, fake_<device> (offline, e.g. fake_fez) or "
        f"ibm_<device>; `orchestrate backends` lists them")


@pytest.mark.parametrize("name", ["aer_simulator", "fake_fez", "fake_no_such_device", "ibm_torino"])
def test_backend_names_of_a_known_form_load(name):
    assert load_config(overrides=[f"quantum.backend={name}"]).quantum.backend == name


def test_a_derived_config_is_checked_like_loading():
    config = load_config(overrides=["quantum.noise_model=fake_fez"])
    with pytest.raises(UserError, match="applies to aer_simulator only"):
        derive(config, {"quantum.backend": "ibm_torino"})


def test_file_errors(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        load_config(str(tmp_path / "missing.yaml"))
    with pytest.raises(UserError, match="is not valid YAML"):
        load_config(write(tmp_path, "data: [unclosed\n"))
    with pytest.raises(UserError, match="must hold a mapping of sections, not list"):
        load_config(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(UserError, match="must look like section.key=value"):
        load_config(overrides=["train.epochs"])


# ---------------------------------------------------------------------------------------- files

@pytest.mark.parametrize("path", sorted(p.name for p in (ROOT / "configs").glob("*.yaml") if p.name != "cluster.yaml"))
def test_every_shipped_config_loads(path):
    load_config(str(ROOT / "configs" / path))


def test_schema_file_is_current():
    assert json.loads((ROOT / "docs" / "config.schema.json").read_text(encoding="utf-8")) == config_json_schema(), \
        "stale: python -m orchestrator.config --schema > docs/config.schema.json"


def test_reference_tables_are_current():
    text = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    generated = re.search(r"--table`: do not edit by hand -->\n\n(.*)\n<!-- end of the generated tables -->",
                          text, re.S)
    assert generated and generated.group(1) == config_reference_table(), \
        "stale: paste `python -m orchestrator.config --table` into docs/config.md"


def test_schema_describes_every_section():
    schema = config_json_schema()
    assert schema["$id"] and schema["title"] and schema["additionalProperties"] is False
    assert schema["properties"].keys() == to_dict(Config()).keys()
    assert schema["$defs"]["TrainConfig"]["properties"]["epochs"]["minimum"] == 1


def test_schema_accepts_configs_and_refuses_unknown_keys(tmp_path):
    schema = config_json_schema()
    jsonschema = pytest.importorskip("jsonschema")  # not a dependency: checked where it is installed
    jsonschema.validate(to_dict(load_config(write(tmp_path, EVERY_SECTION))), schema)
    jsonschema.validate(to_dict(Config()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"embedding": {"max_lenght": 5}}, schema)


def test_embeddings_config_imports_nothing_from_orchestrator():
    tree = ast.parse((ROOT / "embeddings" / "config.py").read_text(encoding="utf-8"))
    imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    imported += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert imported and not [name for name in imported if name.split(".")[0] == "orchestrator"]


def test_the_choices_the_config_offers_are_the_names_of_what_exists():
    """Written once: the gradient methods, the circuit's blocks, the observable sets and the data
    readers are the config's choices (a new one needs no second list here)."""
    import typing

    from orchestrator.config import DataConfig, HardwareConfig, QuantumConfig
    from orchestrator.core.paulis import OBSERVABLE_SETS
    from orchestrator.data.readers import READERS
    from orchestrator.quantum.ansatz import ENCODINGS, ENTANGLERS
    from orchestrator.quantum.gradients import GRADIENT_METHODS

    def offered(section, key):
        return typing.get_args(section.model_fields[key].annotation)

    assert offered(QuantumConfig, "encoding") == tuple(ENCODINGS) == ("hadamard-ry", "ry", "rx")
    assert offered(QuantumConfig, "entangler") == tuple(ENTANGLERS) == ("cnot-ladder", "cnot-ring", "cz-ladder")
    assert offered(QuantumConfig, "gradient") == ("auto", *GRADIENT_METHODS)
    # phases 2 and 3 run with shots: every method but the exact simulator's
    assert offered(HardwareConfig, "gradient") == tuple(
        name for name, method in GRADIENT_METHODS.items() if not method.needs_exact_simulator)
    assert typing.get_args(offered(QuantumConfig, "observables")[0]) == OBSERVABLE_SETS
    assert offered(DataConfig, "format") == ("auto", *READERS) == ("auto", "uci", "csv", "tsv", "jsonl", "parquet", "hf")
