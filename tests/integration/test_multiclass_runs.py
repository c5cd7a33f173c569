"""A 3-class run end to end: summary.json's per-class block, the printed table, config.yaml's
selection metric, `predict --json` with every class's probability, and `eval`."""
import contextlib
import csv
import io
import json

import pytest
import yaml

from orchestrator.cli import main
from orchestrator.config import DataConfig
from orchestrator.data.datasets import resolve_source
from tests.support.runs import SMALL
from tests.support.summary_schema import assert_valid_summary

LABELS = ["long", "short", "spam"]


def relabelled_sms(target) -> None:
    """The packaged SMS sample in three classes by a fixed rule: spam, ham of at most 40
    characters (short), longer ham (long)."""
    path, _ = resolve_source(DataConfig(name="sms_spam_sample"))
    with open(path, encoding="utf-8") as source, open(target, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, delimiter="\t", lineterminator="\n")
        writer.writerow(["text", "label"])
        for line in source.read().splitlines():
            label, text = line.split("\t", 1)
            writer.writerow([text, "spam" if label == "spam" else "short" if len(text) <= 40 else "long"])


@pytest.fixture(scope="module")
def three_class_run(ray_session, tmp_path_factory):
    root = tmp_path_factory.mktemp("multiclass")
    data = root / "sms3.tsv"
    relabelled_sms(data)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["run", "--data", str(data), "--set", "data.format=tsv", *SMALL,
                     "--cache-dir", str(root / "cache"), "--run-dir", str(root / "run")]) == 0
    return root, printed.getvalue()


def test_a_three_class_run_reports_every_class(three_class_run):
    root, table = three_class_run
    run_dir = root / "run"
    assert_valid_summary(run_dir / "summary.json")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["labels"] == LABELS
    for block in (summary["test"], summary["classical_baseline"]["logistic_regression"],
                  summary["classical_baseline"]["classical_head"]):
        assert list(block["per_class"]) == LABELS
        assert sum(c["support"] for c in block["per_class"].values()) == summary["split"]["test"]
        assert [c["support"] for c in block["per_class"].values()] == [sum(row) for row in block["confusion"]]
        f1 = [c["f1"] for c in block["per_class"].values()]
        assert block["f1_macro"] == pytest.approx(sum(f1) / 3)
        assert len(block["confusion"]) == 3 and 0 <= block["f1_weighted"] <= 1
    # auto picked macro F1 for three classes, and config.yaml records it
    assert summary["best"]["metric"] == "f1_macro"
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["select_metric"] == "f1_macro"
    assert table.splitlines()[0].split()[2:] == ["accuracy", "F1", "macro", "F1", "weighted"]
    assert all((run_dir / name).is_file() for name in ("confusion.png", "per_class.png"))


def test_predict_json_gives_every_class_a_probability(three_class_run, capsys):
    root, _ = three_class_run
    texts = ["WINNER!! claim your free prize now, call 09061701461", "ok see you",
             "I will be home a little later tonight because the meeting runs long"]
    assert main(["predict", str(root / "run"), "--json", *texts]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["text"] for row in rows] == texts
    for row in rows:
        assert list(row["probabilities"]) == LABELS
        assert sum(row["probabilities"].values()) == pytest.approx(1.0)
        assert row["label"] == max(row["probabilities"], key=row["probabilities"].get)
        assert row["probability"] == pytest.approx(max(row["probabilities"].values()))


def test_eval_reproduces_the_summary(three_class_run):
    root, _ = three_class_run
    run_dir = root / "run"
    assert main(["eval", "-q", str(run_dir), "--cache-dir", str(root / "cache")]) == 0
    result = json.loads((run_dir / "evals" / "test.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    for metric in ("accuracy", "f1_macro", "confusion"):
        assert result[metric] == summary["test"][metric], metric
    assert result["labels"] == LABELS
