"""The Python API: `HybridTextClassifier`, a scikit-learn estimator over `orchestrate run`.

    from orchestrator import HybridTextClassifier

    clf = HybridTextClassifier(n_qubits=4, depth=2, epochs=3).fit(texts, labels)
    clf.score(test_texts, test_labels)          # accuracy (scikit-learn's ClassifierMixin)
    clf.predict(["WINNER!! Claim your prize now"]), clf.predict_proba([...])   # columns: clf.classes_
    HybridTextClassifier.load(clf.run_dir_)    # a fitted estimator from any run dir

`fit` runs what `orchestrate run` runs (orchestrator.pipeline.prepare_run, then the training
phases): the same checks before anything is written, the same content-addressed embedding cache
(a second fit on the same texts and labels embeds nothing), the same backends (aer_simulator,
fake_<device> with its device plan, ibm_<device>), and a run dir (`run_dir_`) that `orchestrate
eval`, `predict`, `runs` and `compare` read like any other. The texts and labels come from memory:
fit writes them as JSON lines into the run dir (data/fit.jsonl), which its config.yaml names.

The splits. All the data given to `fit` is for training and validation: the test split is the
validation split (summary.json's `test` numbers are validation numbers; score held-out data with
`score`). Without `validation`, data.split.val of the rows (0.15 by default, stratified, seeded by
data.split.seed, identical texts merged as data.duplicates says) validate and pick the best epoch,
and the rest train (data.split.train and .test are not used). With `validation=(texts, labels)`,
all of `texts` trains and those rows validate. Such a run dir is not one `orchestrate resume`
or `orchestrate eval RUN_DIR` (without --data) can re-split; `predict` and `eval --data` work.

Labels may be any hashable, sortable values: `classes_` are the sorted unique labels and
predictions are `classes_` items (numpy's scalar of the labels' type, as scikit-learn gives). In
the run dir a class is its `str()`; a fitted run dir loaded with `load` gives its labels back in
their types when fit wrote it (JSON types: str, int, float, bool), else as strings.

Bad input (an empty text, texts and labels of different lengths, one class only, an unknown
backend or model, a config typo) raises orchestrator.UserError, a ValueError, with the CLI's
one-line message, before anything is written.
"""
from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import numpy as np
try:
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.utils.validation import check_is_fitted
except ModuleNotFoundError as missing:     # scikit-learn is an extra, not a dependency of the command line
    raise ModuleNotFoundError(f"HybridTextClassifier needs scikit-learn ({missing}): pip install "
                              f"'hybrid-quantum-orchestrator[notebook]' (or scikit-learn)") from None

from embeddings.config import DEFAULT_MODEL, EmbeddingConfig
from orchestrator.config import Config, QuantumConfig, SplitConfig, TrainConfig, derive, flatten, load_config
from orchestrator.core.errors import UserError
from orchestrator.core.log import PACKAGES, show_messages_on_stderr
from orchestrator.run_dir import RunDir, default_run_dir

log = logging.getLogger(__name__)

DATA_FOLDER, DATA_FILE, RUN_NAME = "data", "fit.jsonl", "fit"
# data keys fit sets from its arguments: a config may not set them
DATA_KEYS = ("data.path", "data.name", "data.format", "data.text_column", "data.label_column", "data.labels",
             "data.limit", "data.drop_empty")


def default_of(section, key: str) -> Any:
    """A config key's default, from the config itself (orchestrator/config/sections.py)."""
    return section.model_fields[key].default


class HybridTextClassifier(ClassifierMixin, BaseEstimator):
    """A hybrid classical-to-quantum text classifier: encoder vectors -> HybridHead, as `orchestrate run` trains it.

    Parameters (each a config key; `config` gives any other key):
        n_qubits, depth, backend   quantum.n_qubits, quantum.depth, quantum.backend (aer_simulator,
                                   fake_<device>, ibm_<device>)
        model                      embedding.model: the encoder (hub id, local folder, or the packaged
                                   all-MiniLM-L6-v2); `encoder` is an alias that wins when given
        train_layers               embedding.train_layers: 0 (frozen, cached vectors), k or 'all'
        epochs, lr, seed           train.epochs, train.lr, train.seed
        batch_size                 train.batch_size; None: the config's
        run_dir                    where fit writes its run dirs (<time>-fit-<backend>, as runs/ holds
                                   orchestrate run's); None: a temporary folder kept while the
                                   estimator lives. Every fit writes a new run dir: `run_dir_`
        cache_dir                  embedding.cache_dir; None: the config's (~/.cache/hybrid-orchestrator)
        config                     a mapping of dotted keys to values ({"quantum.encoding": "ry",
                                   "train.trackers": []}) or the path of a YAML run config. A key one
                                   of the parameters above sets may only repeat that parameter's value.
        verbose                    the run's info lines and progress bars (tqdm.auto in a notebook)

    Fitted attributes: classes_, run_dir_ (a Path), summary_ (summary.json's dict), config_ (the
    run's resolved Config).
    """

    def __init__(self, n_qubits: int = default_of(QuantumConfig, "n_qubits"),
                 depth: int = default_of(QuantumConfig, "depth"), model: str = DEFAULT_MODEL,
                 train_layers: int | str = default_of(EmbeddingConfig, "train_layers"),
                 backend: str = default_of(QuantumConfig, "backend"), epochs: int = default_of(TrainConfig, "epochs"),
                 lr: float = default_of(TrainConfig, "lr"), seed: int = default_of(TrainConfig, "seed"),
                 batch_size: Optional[int] = None, run_dir: Optional[str] = None, cache_dir: Optional[str] = None,
                 config: Optional[Mapping | str] = None, verbose: bool = True, encoder: Optional[str] = None) -> None:
        self.n_qubits = n_qubits
        self.depth = depth
        self.model = model
        self.train_layers = train_layers
        self.backend = backend
        self.epochs = epochs
        self.lr = lr
        self.seed = seed
        self.batch_size = batch_size
        self.run_dir = run_dir
        self.cache_dir = cache_dir
        self.config = config
        self.verbose = verbose
        self.encoder = encoder

    # --- the config --------------------------------------------------------------------------

    def own_keys(self) -> dict[str, Any]:
        """The config keys the estimator's parameters set."""
        keys = {"quantum.n_qubits": self.n_qubits, "quantum.depth": self.depth, "quantum.backend": self.backend,
                "embedding.model": self.encoder if self.encoder is not None else self.model,
                "embedding.train_layers": self.train_layers, "train.epochs": self.epochs, "train.lr": self.lr,
                "train.seed": self.seed}
        if self.batch_size is not None:
            keys["train.batch_size"] = self.batch_size
        if self.cache_dir is not None:
            keys["embedding.cache_dir"] = str(self.cache_dir)
        keys = {key: plain(value) for key, value in keys.items()}
        if isinstance(keys["train.lr"], int) and not isinstance(keys["train.lr"], bool):
            keys["train.lr"] = float(keys["train.lr"])     # lr=1: a number (the config takes no int there)
        return keys

    def run_config(self, data_changes: Optional[dict] = None) -> Config:
        """The validated config of a fit: `config` (file or mapping), the parameters, `data_changes`."""
        base, given = self.given_config()
        own = self.own_keys()
        for key, value in given.items():
            if key in DATA_KEYS:
                raise UserError(f"config: {key} is set by fit's texts and labels; it cannot be configured here")
            if key in own and value != own[key]:
                name = next(name for name, k in PARAMETER_KEYS.items() if k == key)
                raise UserError(f"config: {key} is the estimator's {name} parameter ({own[key]!r}); "
                                f"pass {name}={value!r} instead of setting it in config")
        changes = {**given, **own, **(data_changes or {})}
        if "data.split.val" in given and not {"data.split.train", "data.split.test"} & set(given):
            changes.update({"data.split.train": 1.0 - float(given["data.split.val"]), "data.split.test": 0.0})
        config = derive(base, changes)
        if data_changes is None:
            return config
        # a fit's split: data.split.val of the rows validate, the rest train (config.yaml records it)
        return derive(config, {"data.split.train": 1.0 - config.data.split.val, "data.split.test": 0.0})

    def given_config(self) -> tuple[Config, dict]:
        """The `config` parameter as a base Config and the dotted keys it sets itself."""
        if self.config is None:
            return load_config(), {}
        if isinstance(self.config, (str, Path)):
            base = load_config(str(self.config))
            values = flatten(base.model_dump())
            return base, {key: values[key] for key in flatten(file_keys(str(self.config))) if key in values}
        if not isinstance(self.config, Mapping):
            raise UserError(f"config must be a mapping of dotted keys to values or a YAML file's path, not "
                            f"{type(self.config).__name__}")
        return load_config(), flatten({str(key): plain(value) for key, value in self.config.items()})

    # --- fit ---------------------------------------------------------------------------------

    def fit(self, texts, labels, validation: Optional[tuple] = None) -> "HybridTextClassifier":
        """Train on `texts` and their `labels`; `validation=(texts, labels)` validates on those rows
        instead of splitting data.split.val of the training rows off (see the module doc). Writes a
        new run dir (`run_dir_`); returns the fitted estimator."""
        from orchestrator.pipeline import RUN, preflight, prepare_run
        from orchestrator.training.phases import train_run

        texts = checked_texts(texts, "fit")
        y = checked_labels(labels, len(texts), "fit")
        classes, y_index = sorted_classes(y)
        if len(classes) < 2:
            raise UserError(f"fit: the labels have only one class ({plain(classes[0])!r}); a classifier needs at least 2")
        names = class_names(classes)
        val_texts, val_index = self.validation_rows(validation, classes)
        self.run_config()          # a config typo or a bad value: refused before any folder is made
        root = self.runs_root()
        run_dir = default_run_dir(RUN_NAME, str(self.backend), root=root)
        data_file = run_dir / DATA_FOLDER / DATA_FILE
        config = self.run_config({"data.path": str(Path(data_file).resolve()), "data.format": "jsonl",
                                  "data.labels": names, **self.positive_label_key(classes, names)})
        preflight(config, RUN)     # backend, trackers, cache, encoder: before anything is written
        splitter = given_split(len(texts), len(val_texts)) if val_texts else split_off_validation(config)
        rows = [(text, int(label)) for text, label in zip(texts + val_texts, np.concatenate([y_index, val_index]))]
        with shown_messages(self.verbose), run_dir.claimed():
            write_data_file(Path(data_file), rows, names, classes)
            config, prepared, plan = prepare_run(config, RUN_NAME, progress=bool(self.verbose), splitter=splitter)
            summary = train_run(config, prepared, run_dir, progress=bool(self.verbose), plan=plan)
        self.adopt(run_dir, classes)
        self.summary_ = summary
        return self

    def validation_rows(self, validation, classes: np.ndarray) -> tuple[list[str], np.ndarray]:
        if validation is None:
            return [], np.zeros(0, dtype=np.int64)
        if not isinstance(validation, (tuple, list)) or len(validation) != 2:
            raise UserError("fit: validation must be a pair (texts, labels)")
        val_texts = checked_texts(validation[0], "fit: validation")
        val_y = checked_labels(validation[1], len(val_texts), "fit: validation")
        index = {value: i for i, value in enumerate(classes.tolist())}
        unknown = [value for value in dict.fromkeys(val_y.tolist()) if value not in index]
        if unknown:
            raise UserError(f"fit: validation label {unknown[0]!r} is not a label of the training texts "
                            f"(labels: {', '.join(map(repr, classes.tolist()))})")
        return val_texts, np.array([index[value] for value in val_y.tolist()], dtype=np.int64)

    def positive_label_key(self, classes: np.ndarray, names: list[str]) -> dict:
        """data.positive_label given as a label value (1, "spam"): as the class's name in the run dir."""
        wanted = self.given_config()[1].get("data.positive_label")
        if wanted is None:
            return {}
        for value, name in zip(classes.tolist(), names):
            if wanted == value or str(wanted) == name:
                return {"data.positive_label": name}
        raise UserError(f"config: data.positive_label {wanted!r} is not one of the labels "
                        f"({', '.join(map(repr, classes.tolist()))})")

    def runs_root(self) -> Path:
        if self.run_dir is not None:
            return Path(self.run_dir).expanduser()
        # a temporary folder for this estimator's run dirs, removed when the estimator goes
        if getattr(self, "_temporary", None) is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="hybrid-classifier-")
        return Path(self._temporary.name)

    def adopt(self, run_dir: RunDir | Path | str, classes: Optional[np.ndarray] = None) -> None:
        """The fitted state of the run in `run_dir`: its best model, classes and config."""
        from orchestrator.inference import load_run

        run = load_run(run_dir)
        self._run = run
        self.run_dir_ = Path(str(run.run_dir))
        self.config_ = run.config
        self.classes_ = classes if classes is not None else recorded_classes(run.config, run.label_names)
        self._names = list(run.label_names)

    # --- predict -----------------------------------------------------------------------------

    def predict_proba(self, texts) -> np.ndarray:
        """(texts, classes) probabilities, columns in `classes_` order (what `orchestrate predict --json` gives)."""
        check_is_fitted(self, "run_dir_")
        texts = checked_texts(texts, "predict")
        key = (str(self.run_dir_), texts_digest(texts))
        remembered = getattr(self, "_last_probabilities", None)
        if remembered is not None and remembered[0] == key:   # score() after predict() on the same texts
            return remembered[1].copy()
        run = self.trained_run()
        probabilities = run.probabilities(run.text_inputs(texts))
        self._last_probabilities = (key, probabilities)
        return probabilities.copy()

    def predict(self, texts) -> np.ndarray:
        """The most probable class of each text, as an item of `classes_`."""
        check_is_fitted(self, "run_dir_")
        return self.classes_[self.predict_proba(texts).argmax(axis=1)]

    def trained_run(self):
        if getattr(self, "_run", None) is None:    # an unpickled estimator: load its run dir again
            from orchestrator.inference import load_run

            self._run = load_run(self.run_dir_)
        return self._run

    @classmethod
    def load(cls, run_dir: str | Path, **params) -> "HybridTextClassifier":
        """A fitted estimator from a finished run dir (one `fit` or `orchestrate run` wrote): its
        parameters from the run's config.yaml, `params` (verbose=False, ...) on top; its predictions
        equal `orchestrate predict RUN_DIR`'s."""
        from orchestrator.inference import load_run

        config = load_run(run_dir).config
        values = {"n_qubits": config.quantum.n_qubits, "depth": config.quantum.depth,
                  "model": config.embedding.model, "train_layers": config.embedding.train_layers,
                  "backend": config.quantum.backend, "epochs": config.train.epochs, "lr": config.train.lr,
                  "seed": config.train.seed, "batch_size": config.train.batch_size,
                  "cache_dir": config.embedding.cache_dir}
        estimator = cls(**{**values, **params})
        estimator.adopt(run_dir)
        return estimator

    def __getstate__(self) -> dict:
        # the loaded model (a circuit runner) and the temporary folder stay with this object
        state = super().__getstate__()
        return {key: value for key, value in state.items() if key not in ("_run", "_temporary", "_last_probabilities")}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags


PARAMETER_KEYS = {"n_qubits": "quantum.n_qubits", "depth": "quantum.depth", "backend": "quantum.backend",
                  "model": "embedding.model", "train_layers": "embedding.train_layers", "epochs": "train.epochs",
                  "lr": "train.lr", "seed": "train.seed", "batch_size": "train.batch_size",
                  "cache_dir": "embedding.cache_dir"}


def plain(value: Any) -> Any:
    """numpy scalars (a GridSearchCV grid's) as Python values, which the strict config takes."""
    return value.item() if isinstance(value, np.generic) else value


def file_keys(path: str) -> dict:
    """The keys a YAML config file sets itself (not its defaults)."""
    from orchestrator.config.yaml_io import read_config_file

    return read_config_file(path)


def checked_texts(texts, what: str) -> list[str]:
    """`texts` as a list of non-empty strings, or one line saying what is wrong with them."""
    if isinstance(texts, (str, bytes)):
        raise UserError(f"{what}: texts must be a list of strings, not one string")
    try:
        texts = list(texts)
    except TypeError:
        raise UserError(f"{what}: texts must be a list of strings, not {type(texts).__name__}") from None
    if not texts:
        raise UserError(f"{what}: no texts given")
    for n, text in enumerate(texts, start=1):
        if not isinstance(text, str):
            raise UserError(f"{what}: text {n} is a {type(text).__name__}, not a string")
    empty = [n for n, text in enumerate(texts, start=1) if not text.strip()]
    if empty:
        listed = ", ".join(map(str, empty[:10])) + (f" and {len(empty) - 10} more" if len(empty) > 10 else "")
        raise UserError(f"{what}: {len(empty)} empty text(s) ({'text' if len(empty) == 1 else 'texts'} {listed}); "
                        f"there is nothing to classify in them")
    return [str(text) for text in texts]


def texts_digest(texts: list[str]) -> str:
    """One sha256 over the texts, each length-prefixed: which texts the last probabilities were for."""
    import hashlib

    digest = hashlib.sha256()
    for text in texts:
        encoded = text.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "big") + encoded)
    return digest.hexdigest()


def checked_labels(labels, n_texts: int, what: str) -> np.ndarray:
    try:
        y = np.asarray(list(labels) if not isinstance(labels, np.ndarray) else labels)
    except TypeError:
        raise UserError(f"{what}: labels must be a list of labels, not {type(labels).__name__}") from None
    if y.ndim != 1:
        raise UserError(f"{what}: labels must be one label per text (a flat list), not an array of shape {y.shape}")
    if len(y) != n_texts:
        raise UserError(f"{what}: {n_texts} texts but {len(y)} labels; give one label per text")
    return y


def sorted_classes(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sorted unique labels and each row's class index (scikit-learn's classes_)."""
    try:
        classes, index = np.unique(y, return_inverse=True)
    except TypeError:
        raise UserError("fit: the labels must be of one sortable type (all strings, or all numbers)") from None
    return classes, index.reshape(-1).astype(np.int64)


def class_names(classes: np.ndarray) -> list[str]:
    """Each class as the run dir names it: its str(), or its index where those would clash or be blank."""
    names = [str(plain(value)) for value in classes]
    if len(set(names)) == len(names) and all(name and name == name.strip() for name in names):
        return names
    return [str(i) for i in range(len(classes))]


def json_value(value: Any) -> Any:
    value = plain(value)
    return value if isinstance(value, (str, int, float, bool)) else None


def write_data_file(path: Path, rows: list[tuple[str, int]], names: list[str], classes: np.ndarray) -> None:
    """The texts as JSON lines the jsonl reader takes: text, label (the class's name), and `value`,
    the label in its own type (what `load` gives back as classes_)."""
    from orchestrator.core.files import write_text_atomically

    values = [json_value(value) for value in classes]
    lines = [json.dumps({"text": text, "label": names[label], "value": values[label]}, ensure_ascii=False)
             for text, label in rows]
    write_text_atomically(path, "\n".join(lines) + "\n")


def recorded_classes(config: Config, label_names: list[str]) -> np.ndarray:
    """A run dir's classes: in the types fit recorded in its data file, else its label names."""
    path = Path(config.data.path) if config.data.path else None
    if config.data.format == "jsonl" and path is not None and path.name == DATA_FILE and path.is_file():
        found: dict[str, Any] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line) if line.strip() else {}
            if row.get("value") is not None:
                found.setdefault(row.get("label"), row["value"])
        if all(name in found for name in label_names):
            return np.array([found[name] for name in label_names])
    return np.array(label_names)


def split_off_validation(config: Config):
    """data.split.val of the rows validate (stratified, seeded, duplicates as data.duplicates says),
    the rest train; the test split is the validation split."""
    import dataclasses

    from orchestrator.data.splits import split_dataset

    s = config.data.split
    fractions = SplitConfig(train=1.0 - s.val, val=s.val, test=0.0, seed=s.seed)

    def splitter(dataset):
        split = split_dataset(dataset, fractions, config.data.duplicates)
        return dataclasses.replace(split, test=split.val)
    return splitter


def given_split(n_train: int, n_val: int):
    """The first n_train rows train, the next n_val validate (and stand for the test split)."""
    from orchestrator.data.splits import Split

    def splitter(dataset):
        val = np.arange(n_train, n_train + n_val, dtype=np.int64)
        return Split(train=np.arange(n_train, dtype=np.int64), val=val, test=val, duplicates_merged=0, policy="keep")
    return splitter


@contextlib.contextmanager
def shown_messages(verbose: bool):
    """The project's info lines on stderr for the block when `verbose` (as the CLI shows them),
    warnings only otherwise; the loggers as they were afterwards."""
    loggers = [logging.getLogger(name) for name in PACKAGES]
    saved = [(logger, logger.level, list(logger.handlers), logger.propagate) for logger in loggers]
    show_messages_on_stderr(logging.INFO if verbose else logging.WARNING)
    try:
        yield
    finally:
        for logger, level, handlers, propagate in saved:
            logger.setLevel(level)
            logger.handlers[:] = handlers
            logger.propagate = propagate
