"""Any number of classes: per-class metrics (against scikit-learn's own functions), the selection
metric's default, the printed table, the plots at 10 classes, the multinomial baselines."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import jsonschema
import numpy as np
import pytest
import torch
from sklearn import metrics as sk

from orchestrator.config import Config, derive
from orchestrator.pipeline import resolve
from orchestrator.training import report
from orchestrator.training.baselines import fit_classical_head, fit_logistic_regression, predict
from orchestrator.training.metrics import (AUTO, confusion_matrix, f1_weighted, score, selection_metric,
                                           support_per_class)
from tests.support.summary_schema import SCHEMA

# fixed predictions of 5 classes: every kind of mistake, class 4 never predicted, class 3 rare
Y_TRUE = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 3, 4, 4, 0, 1, 2, 3, 4]
Y_PRED = [0, 0, 1, 2, 1, 1, 0, 2, 2, 2, 3, 1, 3, 0, 2, 0, 1, 2, 0, 1]
LABELS = ["alpha", "beta", "gamma", "delta", "epsilon"]


def test_per_class_scores_equal_scikit_learns():
    s = score(Y_TRUE, Y_PRED, 5, positive=3)
    precision, recall, f1, support = sk.precision_recall_fscore_support(Y_TRUE, Y_PRED, labels=range(5),
                                                                        zero_division=0)
    assert s.precision == pytest.approx(precision.tolist())
    assert s.recall == pytest.approx(recall.tolist())
    assert s.f1 == pytest.approx(f1.tolist())
    assert s.support == support.tolist()
    assert s.confusion == sk.confusion_matrix(Y_TRUE, Y_PRED, labels=range(5)).tolist()
    assert s.accuracy == pytest.approx(sk.accuracy_score(Y_TRUE, Y_PRED))


def test_macro_and_weighted_f1_equal_scikit_learns():
    s = score(Y_TRUE, Y_PRED, 5, positive=3)
    assert s.f1_macro == pytest.approx(sk.f1_score(Y_TRUE, Y_PRED, labels=range(5), average="macro", zero_division=0))
    assert s.f1_weighted == pytest.approx(sk.f1_score(Y_TRUE, Y_PRED, labels=range(5), average="weighted",
                                                      zero_division=0))
    assert s.f1_positive == pytest.approx(sk.f1_score(Y_TRUE, Y_PRED, labels=[3], average="macro", zero_division=0))
    # a class absent from both counts in macro F1 as 0, as scikit-learn's with labels=range(C)
    absent = score([0, 1, 1], [0, 1, 1], 3, positive=2)
    assert absent.f1_macro == pytest.approx(sk.f1_score([0, 1, 1], [0, 1, 1], labels=range(3), average="macro",
                                                        zero_division=0)) == pytest.approx(2 / 3)
    assert f1_weighted(np.zeros((3, 3), dtype=int)) == 0.0


def test_two_classes_keep_their_numbers():
    y_true, y_pred = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0], [1, 1, 1, 0, 1, 1, 0, 0, 0, 0]
    s = score(y_true, y_pred, 2, positive=1)
    assert s.f1_positive == pytest.approx(sk.f1_score(y_true, y_pred))
    assert s.f1_weighted == pytest.approx(sk.f1_score(y_true, y_pred, average="weighted"))
    assert support_per_class(confusion_matrix(y_true, y_pred, 2)).tolist() == [6, 4]


def test_per_class_block_by_name_matches_the_schema():
    s = score(Y_TRUE, Y_PRED, 5, positive=3)
    block = report.brief(s, LABELS)
    assert list(block["per_class"]) == LABELS
    assert block["per_class"]["gamma"] == {"precision": s.precision[2], "recall": s.recall[2], "f1": s.f1[2],
                                           "support": 6}
    assert block["f1_weighted"] == s.f1_weighted
    jsonschema.validate(block, {"$defs": SCHEMA["$defs"], "$ref": "#/$defs/scores"})
    # an older summary's block (no per_class, no f1_weighted) is still valid
    older = {k: v for k, v in report.brief(s).items() if k != "f1_weighted"}
    jsonschema.validate(older, {"$defs": SCHEMA["$defs"], "$ref": "#/$defs/scores"})


@pytest.mark.parametrize("n_classes, chosen", [(2, "f1_positive"), (3, "f1_macro"), (6, "f1_macro"),
                                               (10, "f1_macro")])
def test_selection_metric_auto_follows_the_class_count(n_classes, chosen):
    assert Config().train.select_metric == AUTO
    assert selection_metric(AUTO, n_classes) == chosen
    for explicit in ("accuracy", "f1_positive", "f1_macro"):
        assert selection_metric(explicit, n_classes) == explicit
    s = score([0, 1] * n_classes, [0, 1] * n_classes, n_classes, positive=1)
    assert s.metric(AUTO) == s.metric(chosen)


def resolved_select_metric(labels: list[str], select_metric: str = AUTO) -> str:
    prepared = SimpleNamespace(dataset=SimpleNamespace(format="tsv", source="/data/x.tsv", label_names=labels))
    config = derive(Config(), {"train.select_metric": select_metric, "train.trackers": []})
    return resolve(config, prepared).train.select_metric


def test_resolve_records_what_auto_picked():
    assert resolved_select_metric(["ham", "spam"]) == "f1_positive"
    assert resolved_select_metric(["a", "b", "c"]) == "f1_macro"
    assert resolved_select_metric(["a", "b", "c"], "accuracy") == "accuracy"
    assert resolved_select_metric(["ham", "spam"], "f1_macro") == "f1_macro"


def summary_of(n_classes: int) -> dict:
    labels = LABELS[:n_classes] if n_classes <= 5 else [f"class {i}" for i in range(n_classes)]
    rng = np.random.default_rng(n_classes)
    y_true = rng.integers(0, n_classes, 60)
    y_pred = np.where(rng.random(60) < 0.7, y_true, rng.integers(0, n_classes, 60))
    s = score(y_true, y_pred, n_classes, positive=n_classes - 1)
    block = report.brief(s, labels)
    return {"labels": labels, "positive_label": labels[-1], "test": block,
            "classical_baseline": {"accuracy": s.accuracy, "f1_positive": s.f1_positive,
                                   "logistic_regression": block, "classical_head": block},
            "quantum": {"jobs": 3, "circuits": 30},
            "timing": {"steps": 2, "step_s_median": 0.001, "train_s": 0.1, "embed_s": 0.2},
            "cache": {"hit": True, "path": "x", "bytes": 0}, "encoder": {"train_layers": 0}}


def test_two_class_table_keeps_its_columns():
    table = report.report_table(summary_of(2), Path("runs/x"))
    header = table.splitlines()[0].split()
    assert header == ["test", "split", "accuracy", "F1", "beta", "F1", "macro"]
    assert "per class (quantum head)" in table and "precision" in table


def test_five_class_table_leads_with_accuracy_and_macro_f1():
    summary = summary_of(5)
    table = report.report_table(summary, Path("runs/x"))
    lines = table.splitlines()
    assert lines[0].split() == ["test", "split", "accuracy", "F1", "macro", "F1", "weighted"]
    assert "epsilon" not in lines[0]           # no positive-class F1 column
    quantum = lines[1].split()
    assert quantum[:2] == ["quantum", "head"]
    assert [float(v) for v in quantum[2:]] == pytest.approx(
        [summary["test"]["accuracy"], summary["test"]["f1_macro"], summary["test"]["f1_weighted"]], abs=5e-4)
    per_class = lines[lines.index(next(line for line in lines if line.startswith("per class"))) + 1:][:5]
    assert [line.split()[0] for line in per_class] == LABELS
    gamma = summary["test"]["per_class"]["gamma"]
    assert [float(v) for v in per_class[2].split()[1:4]] == pytest.approx(
        [gamma["precision"], gamma["recall"], gamma["f1"]], abs=5e-4)


def test_an_older_summary_still_prints():
    summary = summary_of(3)
    for key in ("per_class", "f1_weighted"):     # the test and baseline blocks are one dict here
        summary["test"].pop(key)
    assert "per class" not in report.report_table(summary, Path("runs/x"))


def test_plots_at_ten_classes(tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib import image

    labels = [f"a rather long class name {i}" for i in range(10)]
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 10, 400)
    y_pred = np.where(rng.random(400) < 0.6, y_true, rng.integers(0, 10, 400))
    s = score(y_true, y_pred, 10, positive=0)
    history = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.1 / e, "train_acc": 0.5, "val_acc": 0.5,
                "val_f1": 0.4, "val_f1_macro": 0.45} for e in (1, 2)]
    written = report.write_plots(tmp_path, history, s, labels, {"metric": "f1_macro", "value": 0.45, "epoch": 2})
    assert {p.name for p in written} == {"loss.png", "accuracy.png", "confusion.png", "per_class.png"}
    assert all(p.stat().st_size > 0 for p in written)
    small = score([0, 1, 1, 0], [0, 1, 0, 0], 2, positive=1)
    import matplotlib.pyplot as plt
    report.confusion_figure(plt, np.array(small.confusion), ["ham", "spam"], tmp_path / "two.png")
    ten, two = image.imread(tmp_path / "confusion.png"), image.imread(tmp_path / "two.png")
    assert ten.shape[0] > 1.5 * two.shape[0] and ten.shape[1] > 1.5 * two.shape[1]   # grows with the classes


@pytest.fixture
def one_thread():
    """Tiny matrices: one torch thread is some 40 times faster than two here."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def blobs(n_classes: int, rows_per_class: int = 60, dims: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2.0, (n_classes, dims))
    x = np.concatenate([centre + rng.normal(0, 1.5, (rows_per_class, dims)) for centre in centres])
    y = np.repeat(np.arange(n_classes), rows_per_class)
    return torch.from_numpy(x).float(), torch.from_numpy(y)


def test_logistic_regression_is_scikit_learns_multinomial_one(one_thread):
    from sklearn.linear_model import LogisticRegression

    x, y = blobs(4)
    l2 = 1e-2
    ours = fit_logistic_regression(x, y, 4, class_weights=None, l2=l2, max_iter=500)
    assert ours.weight.shape == (4, 8)
    # mean cross-entropy + l2/2 ||W||^2 is scikit-learn's C * summed cross-entropy + 1/2 ||W||^2 with C = 1/(l2 n)
    theirs = LogisticRegression(C=1.0 / (l2 * len(x)), max_iter=5000, tol=1e-10).fit(x.numpy(), y.numpy())
    with torch.no_grad():
        probabilities = torch.softmax(ours(x.double()), dim=1).numpy()
    assert probabilities == pytest.approx(theirs.predict_proba(x.numpy()), abs=2e-3)
    assert (predict(ours, x) == theirs.predict(x.numpy())).mean() > 0.98


def test_classical_head_has_one_output_per_class_and_learns_them(one_thread):
    x, y = blobs(5, seed=1)
    head = fit_classical_head(x, y, x, y, 5, 4, None, optimizer="adamw", lr=0.01, weight_decay=0.0, batch_size=32,
                              epochs=30, seed=0, select_metric=AUTO, positive=4)
    assert head[-1].out_features == 5
    s = score(y.numpy(), predict(head, x), 5, positive=4)
    assert s.accuracy > 0.6 and len(set(predict(head, x).tolist())) == 5


def test_quantum_head_maps_its_observables_to_every_class():
    from orchestrator.quantum.backends import make_runner
    from orchestrator.quantum.model import HybridHead

    config = derive(Config(), {"quantum.n_qubits": 2, "quantum.depth": 1, "quantum.observables": "z+zz"})
    head = HybridHead(n_features=6, n_classes=7, runner=make_runner(config))
    assert head.post.in_features == 3 and head.post.out_features == 7    # z0, z1, z0z1 -> 7 classes
    with torch.no_grad():
        assert head(torch.randn(5, 6)).shape == (5, 7)


def sweep_row(seed: int, setting: dict, rng) -> dict:
    """A finished trial of a 4-class sweep as sweep.json holds it: its scores from a random confusion."""
    from orchestrator.training.report import brief

    def block():
        confusion = rng.integers(0, 12, size=(4, 4)) + np.diag(rng.integers(10, 30, size=4))
        y_true = np.repeat(np.arange(4), confusion.sum(axis=1))
        y_pred = np.concatenate([np.repeat(np.arange(4), row) for row in confusion])
        return brief(score(y_true, y_pred, 4, positive=3), LABELS[:4])
    return {"name": f"s-seed{seed}", "setting": setting, "seed": seed, "status": "finished", "error": None,
            "test": block(), "classical_baseline": {"logistic_regression": block(), "classical_head": block()}}


def test_a_multi_class_sweep_leads_with_macro_f1_and_charts_it(tmp_path):
    from orchestrator import sweep

    rng = np.random.default_rng(0)
    rows = [sweep_row(seed, {"quantum.depth": depth}, rng) for depth in (1, 2) for seed in range(3)]
    results = {"sweep_dir": str(tmp_path), "grid": {"quantum.depth": [1, 2]}, "samples": None, "seeds": [0, 1, 2],
               "f1": "f1_macro", "trials": rows, "settings": sweep.aggregate(rows)}
    first = results["settings"][0]
    macro = [row["test"]["f1_macro"] for row in rows[:3]]
    assert first["quantum_head"]["f1_macro"]["mean"] == pytest.approx(np.mean(macro))
    assert first["quantum_head"]["f1_macro"]["std"] == pytest.approx(np.std(macro, ddof=1))
    assert [s["f1_macro"] for s in first["per_seed"]] == macro
    table = sweep.sweep_table(results)
    assert "quantum macro F1" in table.splitlines()[1]
    q = first["quantum_head"]["f1_macro"]
    assert f"{q['mean']:.3f} ± {q['std']:.3f} ({q['min']:.3f})" in table.splitlines()[2]
    chart = sweep.write_sweep_chart(results, tmp_path / "sweep.png")
    assert chart.read_bytes().startswith(b"\x89PNG") and chart.stat().st_size > 5000
