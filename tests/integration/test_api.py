"""HybridTextClassifier end to end, on the shared Ray session: fit (the same pipeline, cache and run
dir as `orchestrate run`), predict / predict_proba / score, load == `orchestrate predict`, and
scikit-learn's own clone, cross_val_score, GridSearchCV and Pipeline on it. Tiny settings: 2
qubits, depth 1, 1 epoch, 240 texts of the packaged SMS sample, 3 folds; one fitted estimator per
module."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from orchestrator import HybridTextClassifier
from orchestrator.cli import main
from orchestrator.run_dir import RunDir
from tests.conftest import SAMPLE_PATH

pytestmark = pytest.mark.slow
N = 240
NEW = ["WINNER!! You have won a free prize, call now to claim", "see you at 6 at the station"]


def sample(n: int = N, start: int = 0) -> tuple[list[str], list[str]]:
    rows = [line.split("\t", 1) for line in SAMPLE_PATH.read_text(encoding="utf-8").splitlines()[start:start + n]]
    return [text for _, text in rows], [label for label, _ in rows]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("api-cache"))


@pytest.fixture(scope="module")
def tiny(cache):
    """The estimator's tiny settings (no trackers: nothing here reads their files)."""
    return dict(n_qubits=2, depth=1, epochs=1, cache_dir=cache, config={"train.trackers": []}, verbose=False)


@pytest.fixture(scope="module")
def fitted(ray_session, tiny):
    texts, labels = sample()
    return HybridTextClassifier(**tiny).fit(texts, labels)


def test_fit_writes_a_run_dir_like_orchestrate_run(fitted):
    run = RunDir(fitted.run_dir_)
    assert run.is_finished() and (run / RunDir.WEIGHTS).is_file()
    assert fitted.classes_.tolist() == ["ham", "spam"]
    summary = fitted.summary_
    assert summary == run.read_summary()
    assert summary["split"]["test"] == summary["split"]["val"] > 0           # the test split is the validation split
    assert summary["split"]["train"] + summary["split"]["val"] + summary["split"]["duplicates_merged"] == N
    config = run.read_config()
    assert (config.quantum.n_qubits, config.quantum.depth, config.train.epochs) == (2, 1, 1)
    assert (config.data.split.train, config.data.split.test, config.data.format) == (0.85, 0.0, "jsonl")


def test_predict_predict_proba_and_score(fitted):
    texts, labels = sample(60, start=N)
    probabilities = fitted.predict_proba(texts)
    assert probabilities.shape == (60, 2) and np.allclose(probabilities.sum(axis=1), 1)
    predicted = fitted.predict(texts)
    assert set(predicted.tolist()) <= {"ham", "spam"}
    assert predicted.tolist() == fitted.classes_[probabilities.argmax(axis=1)].tolist()
    assert 0.5 <= fitted.score(texts, labels) <= 1


def test_a_second_fit_on_the_same_texts_embeds_nothing(fitted, tiny):
    texts, labels = sample()
    again = HybridTextClassifier(**tiny).fit(texts, labels)
    assert again.summary_["cache"]["hit"] and again.summary_["cache"]["key"] == fitted.summary_["cache"]["key"]
    assert again.run_dir_ != fitted.run_dir_


def test_load_predicts_what_orchestrate_predict_prints(fitted, capsys):
    loaded = HybridTextClassifier.load(fitted.run_dir_, verbose=False)
    assert (loaded.n_qubits, loaded.depth, loaded.epochs) == (2, 1, 1)
    assert loaded.classes_.tolist() == fitted.classes_.tolist()
    capsys.readouterr()
    assert main(["predict", str(fitted.run_dir_), "--json", *NEW]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert loaded.predict(NEW).tolist() == [row["label"] for row in printed] == fitted.predict(NEW).tolist()
    expected = [[row["probabilities"][name] for name in loaded.classes_] for row in printed]
    assert np.allclose(loaded.predict_proba(NEW), expected)


def test_integer_labels_and_a_given_validation_set(ray_session, tiny):
    texts, labels = sample(N + 60)
    y = [int(label == "spam") for label in labels]
    clf = HybridTextClassifier(**tiny).fit(texts[:N], y[:N], validation=(texts[N:], y[N:]))
    assert clf.classes_.tolist() == [0, 1] and clf.summary_["split"]["train"] == N
    assert clf.summary_["split"]["val"] == clf.summary_["split"]["test"] == 60
    predicted = clf.predict(NEW)
    assert all(isinstance(value, (int, np.integer)) for value in predicted)
    assert HybridTextClassifier.load(clf.run_dir_).classes_.tolist() == [0, 1]    # their types, from the run dir
    assert 0.5 <= clf.score(texts[N:], y[N:]) <= 1


def test_clone_and_cross_val_score(fitted, tiny):
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_score

    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params() and not hasattr(copy, "classes_")
    texts, labels = sample()
    scores = cross_val_score(HybridTextClassifier(**tiny), texts, labels, cv=3)
    assert len(scores) == 3 and all(0.5 <= value <= 1 for value in scores)


def test_grid_search(fitted, tiny):
    """The folds are cross_val_score's (StratifiedKFold, no shuffle): their vectors are cache hits."""
    from sklearn.model_selection import GridSearchCV

    texts, labels = sample()
    search = GridSearchCV(HybridTextClassifier(**tiny), {"lr": [0.003, 0.03]}, cv=3).fit(texts, labels)
    assert search.best_params_["lr"] in (0.003, 0.03) and len(search.cv_results_["mean_test_score"]) == 2
    assert search.best_estimator_.summary_["cache"]["hit"]
    assert search.predict(NEW).tolist()[0] in ("ham", "spam")


def test_pipeline(fitted, tiny):
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    texts, labels = sample()
    # a step in front that leaves the texts as they are: the fixture's vectors serve (a cache hit)
    pipeline = Pipeline([("texts", FunctionTransformer(lambda texts: [str(text) for text in texts])),
                         ("classifier", HybridTextClassifier(**tiny))])
    assert 0.5 <= pipeline.fit(texts, labels).score(texts[:60], labels[:60]) <= 1
    assert pipeline.get_params()["classifier__n_qubits"] == 2
    assert pipeline.named_steps["classifier"].summary_["cache"]["hit"]


def test_a_fake_device_runs_its_plan(ray_session, tiny, tmp_path):
    texts, labels = sample(60)
    clf = HybridTextClassifier(**{**tiny, "config": {
        "train.trackers": [], "train.batch_size": 8, "quantum.shots": 200, "quantum.seed": 5,
        "hardware.steps": 2, "hardware.batch_size": 4, "hardware.eval_shots": 64}},
        backend="fake_manila", run_dir=str(tmp_path / "runs"))
    clf.fit(texts, labels)
    assert Path(clf.run_dir_).parent == tmp_path / "runs"
    phases = clf.summary_["phases"]
    assert phases[0]["backend"] == "aer_simulator" and phases[-1]["backend"] == "fake_manila" and phases[-1]["steps"] == 2
    assert clf.predict(NEW[:1]).tolist()[0] in ("ham", "spam")
