"""The Python API without Ray: HybridTextClassifier's parameters (scikit-learn's rules), its
checks of bad input before anything is written, HybridHead.on_backend, the notebook progress bar."""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

import orchestrator
from orchestrator import HybridHead, HybridTextClassifier, UserError
from orchestrator.config import load_config
from tests.conftest import SAMPLE_PATH


def sample(n: int = 60) -> tuple[list[str], list[str]]:
    rows = [line.split("\t", 1) for line in SAMPLE_PATH.read_text(encoding="utf-8").splitlines()[:n]]
    return [text for _, text in rows], [label for label, _ in rows]


@pytest.fixture
def folders(tmp_path):
    """Where a fit would write its run dirs and its cache: nothing may appear there when a check fails."""
    return {"run_dir": str(tmp_path / "runs"), "cache_dir": str(tmp_path / "cache")}


def nothing_written(folders) -> bool:
    from pathlib import Path

    return all(not Path(folder).exists() or not any(Path(folder).iterdir()) for folder in folders.values())


def test_the_package_exports_the_api_lazily():
    from orchestrator.api import HybridTextClassifier as direct
    from orchestrator.core.errors import UserError as error
    from orchestrator.quantum.model import QuantumLayer

    assert orchestrator.HybridTextClassifier is direct and orchestrator.UserError is error
    assert orchestrator.QuantumLayer is QuantumLayer and "HybridTextClassifier" in dir(orchestrator)
    with pytest.raises(AttributeError):
        orchestrator.no_such_name


def test_user_error_is_a_value_error():
    assert issubclass(UserError, ValueError)


def test_defaults_are_the_configs():
    config = load_config()
    params = HybridTextClassifier().get_params()
    assert (params["n_qubits"], params["depth"], params["backend"]) == (
        config.quantum.n_qubits, config.quantum.depth, config.quantum.backend)
    assert (params["epochs"], params["lr"], params["seed"]) == (config.train.epochs, config.train.lr, config.train.seed)
    assert (params["model"], params["train_layers"]) == (config.embedding.model, config.embedding.train_layers)
    assert params["batch_size"] is None and params["run_dir"] is None and params["config"] is None


def test_get_params_set_params_and_clone():
    from sklearn.base import clone

    clf = HybridTextClassifier(n_qubits=2, depth=1, epochs=1, config={"quantum.encoding": "ry"}, verbose=False)
    assert clf.get_params()["n_qubits"] == 2 and clf.get_params()["config"] == {"quantum.encoding": "ry"}
    assert clf.set_params(depth=3, lr=0.01) is clf and clf.depth == 3 and clf.lr == 0.01
    copy = clone(clf)
    assert copy is not clf and copy.get_params() == clf.get_params()
    with pytest.raises(ValueError):
        clf.set_params(no_such_parameter=1)


def test_the_parameters_make_the_runs_config(tmp_path):
    clf = HybridTextClassifier(n_qubits=3, depth=2, epochs=2, lr=1, seed=7, batch_size=8, backend="fake_fez",
                               encoder="all-MiniLM-L6-v2", cache_dir=str(tmp_path),
                               config={"quantum.encoding": "ry", "train": {"trackers": []}, "data.split.val": 0.2})
    config = clf.run_config()
    assert (config.quantum.n_qubits, config.quantum.depth, config.quantum.backend) == (3, 2, "fake_fez")
    assert (config.train.epochs, config.train.lr, config.train.seed, config.train.batch_size) == (2, 1.0, 7, 8)
    assert config.quantum.encoding == "ry" and config.train.trackers == [] and config.data.split.val == 0.2
    assert config.embedding.cache_dir == str(tmp_path)


def test_a_yaml_config_gives_the_other_keys(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("quantum:\n  entangler: cz-ladder\ntrain:\n  epochs: 12\n")
    assert HybridTextClassifier(config=str(path)).run_config().quantum.entangler == "cz-ladder"
    path.write_text("train:\n  epochs: 3\n")
    with pytest.raises(UserError, match=r"train.epochs is the estimator's epochs parameter \(12\); pass epochs=3"):
        HybridTextClassifier(config=str(path)).run_config()


@pytest.mark.parametrize("params, message", [
    ({"backend": "nope"}, "config: unknown backend 'nope'"),
    ({"backend": "fake_nodevice"}, "fake_nodevice"),
    ({"config": {"quantum.depht": 2}}, r"config: unknown key 'quantum.depht' \(did you mean 'quantum.depth'\?\)"),
    ({"config": {"train.epochs": 3}}, "pass epochs=3 instead"),
    ({"config": {"data.path": "x.csv"}}, "data.path is set by fit's texts"),
    ({"config": {"data.positive_label": "eggs"}}, "data.positive_label 'eggs' is not one of the labels"),
    ({"config": 3}, "config must be a mapping"),
    ({"n_qubits": 0}, "quantum.n_qubits"),
    ({"model": "/no/such/model"}, "model folder not found: /no/such/model"),
])
def test_bad_settings_are_one_line_before_anything_is_written(folders, params, message):
    texts, labels = sample()
    with pytest.raises(UserError, match=message) as raised:
        HybridTextClassifier(**{**folders, **params}, verbose=False).fit(texts, labels)
    assert "\n" not in str(raised.value) and nothing_written(folders)


def test_bad_data_is_one_line_before_anything_is_written(folders):
    texts, labels = sample()
    clf = HybridTextClassifier(**folders, verbose=False)
    cases = [
        ((texts[:5] + ["  "] + texts[6:], labels), r"fit: 1 empty text\(s\) \(text 6\)"),
        ((texts, labels[:-1]), "fit: 60 texts but 59 labels; give one label per text"),
        ((texts, ["ham"] * len(texts)), r"fit: the labels have only one class \('ham'\); a classifier needs at least 2"),
        (("one text", ["ham"]), "texts must be a list of strings, not one string"),
        (([], []), "fit: no texts given"),
        ((texts[:2] + [3], ["a", "b", "a"]), "fit: text 3 is a int, not a string"),
        ((texts[:3], [1, "a", None]), "the labels must be of one sortable type"),
        ((texts, np.zeros((60, 2))), "labels must be one label per text"),
    ]
    for (x, y), message in cases:
        with pytest.raises(UserError, match=message):
            clf.fit(x, y)
    with pytest.raises(UserError, match="fit: validation label 'eggs' is not a label of the training texts"):
        clf.fit(texts, labels, validation=(texts[:2], ["ham", "eggs"]))
    with pytest.raises(UserError, match="validation must be a pair"):
        clf.fit(texts, labels, validation=texts)
    assert nothing_written(folders)


def test_a_fit_that_fails_in_its_run_dir_leaves_none(folders, monkeypatch):
    """Too few texts to split a validation set off: refused by the run's own check, after the run dir
    was claimed and the texts written into it; the run dir goes again and nothing is embedded."""
    import orchestrator.pipeline

    def no_embedding(*args, **kwargs):
        raise AssertionError("nothing may be embedded")

    monkeypatch.setattr(orchestrator.pipeline, "with_vectors", no_embedding)
    with pytest.raises(UserError, match="every split needs rows"):
        HybridTextClassifier(**folders, verbose=False).fit(["spam text", "ham text", "more ham"], ["s", "h", "h"])
    assert nothing_written(folders)


def test_predict_before_fit_is_refused():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        HybridTextClassifier().predict(["hello"])


def test_class_names_and_the_data_file(tmp_path):
    from orchestrator.api import class_names, recorded_classes, sorted_classes, write_data_file
    from orchestrator.config import derive

    assert class_names(np.array(["ham", "spam"])) == ["ham", "spam"]
    assert class_names(np.array([0, 1, 10])) == ["0", "1", "10"]
    assert class_names(np.array([" a", "a"])) == ["0", "1"]          # stripped they would clash
    classes, index = sorted_classes(np.array([3, 1, 3, 2]))
    assert classes.tolist() == [1, 2, 3] and index.tolist() == [2, 0, 2, 1]
    path = tmp_path / "data" / "fit.jsonl"
    write_data_file(path, [("a text", 0), ("b text", 1)], ["1", "2"], np.array([1, 2]))
    config = derive(load_config(), {"data.path": str(path), "data.format": "jsonl"})
    assert recorded_classes(config, ["1", "2"]).tolist() == [1, 2]
    assert recorded_classes(load_config(), ["ham", "spam"]).tolist() == ["ham", "spam"]


def test_hybrid_head_on_a_backend_in_one_call():
    torch.manual_seed(0)
    head = HybridHead.on_backend(n_features=8, n_classes=3, backend="aer_simulator", n_qubits=2, depth=1,
                                 encoding="ry")
    assert isinstance(head, torch.nn.Module) and head.spec.n_qubits == 2
    features = torch.randn(5, 8)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), head)      # in a user's own model
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    loss = torch.nn.functional.cross_entropy(model(features), torch.tensor([0, 1, 2, 0, 1]))
    loss.backward()
    assert head.quantum_weights.grad is not None and model[0].weight.grad is not None
    optimizer.step()
    assert model(features).shape == (5, 3)


def test_hybrid_head_on_a_bad_backend_or_key_is_a_user_error():
    with pytest.raises(UserError, match="unknown backend 'nope'"):
        HybridHead.on_backend(4, 2, backend="nope")
    with pytest.raises(UserError, match="did you mean 'quantum.depth'"):
        HybridHead.on_backend(4, 2, depht=2)


def test_progress_is_a_notebook_bar_under_an_ipython_kernel(monkeypatch):
    from orchestrator.core import log

    assert not log.in_notebook()
    assert isinstance(log.progress(range(3), total=3, desc="x", unit="step"), log.PlainProgress)
    shell = types.SimpleNamespace(kernel=object())
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))
    assert log.in_notebook()
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: None))
    assert not log.in_notebook()     # IPython in a terminal, or imported by a library: no kernel
