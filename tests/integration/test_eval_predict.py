"""`orchestrate eval` and `orchestrate predict` on a finished run (the small run of tests/support/runs.py)."""
import json
import pickle
import shutil

import numpy as np
import pytest
import torch

from orchestrator.cli import main
from orchestrator.config import DataConfig
from orchestrator.data.datasets import resolve_source
from tests.support.cli import one_error_line
from tests.support.runs import SMALL


@pytest.fixture(scope="module")
def finished_run(ray_session, tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    assert main(["run", *SMALL, "--cache-dir", str(root / "cache"), "--run-dir", str(root / "run")]) == 0
    return root / "run", root / "cache"


def test_eval_on_the_test_split_reproduces_the_summary(finished_run, capsys):
    run_dir, cache = finished_run
    assert main(["eval", "-q", str(run_dir), "--cache-dir", str(cache)]) == 0
    result = json.loads((run_dir / "evals" / "test.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    # the best weights on the same cached vectors, exact simulator: the very same numbers
    for metric in ("accuracy", "f1_positive", "f1_macro", "confusion"):
        assert result[metric] == summary["test"][metric], metric
    assert result["rows"] == summary["split"]["test"]
    assert f"accuracy {summary['test']['accuracy']:.4f}" in capsys.readouterr().out


def sample_lines(n: int) -> list[str]:
    path, _ = resolve_source(DataConfig(name="sms_spam_sample"))
    with open(path, encoding="utf-8") as file:
        return file.read().splitlines()[:n]


def test_eval_on_another_file_scores_every_row(finished_run, tmp_path):
    run_dir, cache = finished_run
    data = tmp_path / "more.tsv"
    data.write_text("\n".join(sample_lines(260)[200:]) + "\n")   # rows the run never saw
    assert main(["eval", "-q", str(run_dir), "--data", str(data), "--cache-dir", str(cache)]) == 0
    result = json.loads((run_dir / "evals" / "more.json").read_text())
    assert result["rows"] == 60 and sum(map(sum, result["confusion"])) == 60
    truth = [line.split("\t")[0] for line in sample_lines(260)[200:]]
    assert [sum(row) for row in result["confusion"]] == [truth.count("ham"), truth.count("spam")]


def test_eval_accepts_a_file_of_one_class_and_refuses_an_unknown_label(finished_run, tmp_path, capsys):
    run_dir, cache = finished_run
    spam_only = tmp_path / "spam_only.tsv"
    spam_only.write_text("\n".join(line for line in sample_lines(300) if line.startswith("spam\t")) + "\n")
    assert main(["eval", "-q", str(run_dir), "--data", str(spam_only), "--cache-dir", str(cache)]) == 0
    capsys.readouterr()
    unknown = tmp_path / "unknown.tsv"
    unknown.write_text("ham\thello there\neggs\twhat is this\n")
    assert main(["eval", "-q", str(run_dir), "--data", str(unknown), "--cache-dir", str(cache)]) == 2
    assert "label 'eggs', which is not in data.labels" in one_error_line(capsys)
    assert not (run_dir / "evals" / "unknown.json").exists()


def test_predict_agrees_with_the_cached_vectors(finished_run, capsys):
    """In-process encoding for predict gives the probabilities the cached (Ray-encoded) vectors give."""
    from orchestrator.data.datasets import load_dataset
    from embeddings.stage import embed_dataset
    from orchestrator.inference import load_run

    run_dir, cache = finished_run
    run = load_run(run_dir)
    dataset = load_dataset(run.config.data)
    cached = embed_dataset(dataset, run.config.embedding.model_copy(update={"cache_dir": str(cache)}), progress=False)   # no pool: a cache hit needs none
    assert cached.hit
    rows = list(range(0, 200, 10))
    texts = [dataset.texts[r] for r in rows]
    assert main(["predict", str(run_dir), "--json", *texts]) == 0
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [a["text"] for a in answers] == texts
    expected = run.probabilities(run.encoder.inputs(cached.cache.content, np.array(rows), dataset.labels, run.standardiser))
    got = np.array([[a["probabilities"][name] for name in run.label_names] for a in answers])
    assert np.abs(got - expected).max() < 1e-4
    assert [a["label"] for a in answers] == [run.label_names[i] for i in expected.argmax(axis=1)]
    assert all(a["probability"] == max(a["probabilities"].values()) >= 0.5 for a in answers)


def test_predict_reads_a_file_and_prints_label_probability_text(finished_run, tmp_path, capsys):
    run_dir, _ = finished_run
    texts = ["WINNER!! Claim your free prize now, call 09061701461", "ok see you at lunch"]
    file = tmp_path / "texts.txt"
    file.write_text("\n".join(texts) + "\n")
    assert main(["predict", str(run_dir), "--file", str(file)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for line, text in zip(lines, texts):
        label, probability, echoed = line.split("\t")
        assert label in ("ham", "spam") and 0.5 <= float(probability) <= 1.0 and echoed == text


@pytest.mark.parametrize("argv, match", [
    (["hello", ""], "text 2 is empty"),
    ([], "give the texts to classify as arguments or with --file F"),
    (["--backend", "qasm", "hi"], "unknown backend 'qasm'"),
])
def test_predict_bad_input_is_one_line(finished_run, capsys, argv, match):
    run_dir, _ = finished_run
    assert main(["predict", str(run_dir), *argv]) == 2
    assert match in one_error_line(capsys)


def test_predict_refuses_a_text_file_with_an_empty_line(finished_run, tmp_path, capsys):
    run_dir, _ = finished_run
    file = tmp_path / "texts.txt"
    file.write_text("one\n\nthree\n")
    assert main(["predict", str(run_dir), "--file", str(file)]) == 2
    assert "has an empty line (2)" in one_error_line(capsys)


def test_eval_loads_the_model_without_unpickling_anything(finished_run, tmp_path, monkeypatch):
    """A run dir shared without its pickles (best.pt, checkpoint.pt) evaluates to the same numbers:
    eval reads model.safetensors and head.json, and no unpickler runs."""
    run_dir, cache = finished_run
    shared = tmp_path / "shared"
    shutil.copytree(run_dir, shared, ignore=shutil.ignore_patterns("*.pt", "evals"))

    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled")

    for module, name in ((torch, "load"), (pickle, "load"), (pickle, "loads"), (pickle, "Unpickler")):
        monkeypatch.setattr(module, name, refuse)
    assert main(["eval", "-q", str(shared), "--cache-dir", str(cache)]) == 0
    result = json.loads((shared / "evals" / "test.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert {m: result[m] for m in ("accuracy", "f1_positive", "confusion")} == \
        {m: summary["test"][m] for m in ("accuracy", "f1_positive", "confusion")}


def test_head_json_and_safetensors_describe_the_whole_head(finished_run):
    """Rebuilt from the two files alone (numpy, safetensors and the exact statevector of the
    circuit head.json describes), the head gives the probabilities the package gives."""
    from safetensors.numpy import load_file

    from orchestrator.inference import load_run
    from orchestrator.quantum.circuits import QuantumSpec
    from tests.support.reference_sim import simulate_expectations_numpy

    run_dir, _ = finished_run
    head = json.loads((run_dir / "head.json").read_text())
    weights = load_file(run_dir / "model.safetensors")
    assert set(weights) == {"pre.weight", "pre.bias", "quantum_weights", "post.weight", "post.bias"}
    assert head["labels"] == ["ham", "spam"] and head["positive_label"] == "spam"
    assert head["circuit"]["observables"] == ["IZ", "ZI"] and head["best"]["metric"] == "f1_positive"

    vectors = np.random.default_rng(0).normal(0, 0.05, (6, len(head["standardiser"]["mean"])))
    x = (vectors - np.array(head["standardiser"]["mean"])) / np.array(head["standardiser"]["std"])
    angles = np.tanh(x @ weights["pre.weight"].T.astype(np.float64) + weights["pre.bias"]) * np.pi / 2
    circuit = head["circuit"]
    spec = QuantumSpec(circuit["n_qubits"], circuit["depth"], circuit["encoding"], circuit["entangler"],
                       tuple(circuit["observables"]))
    expectations = simulate_expectations_numpy(spec, angles, weights["quantum_weights"])
    logits = expectations @ weights["post.weight"].T.astype(np.float64) + weights["post.bias"]
    rebuilt = np.exp(logits - logits.max(axis=1, keepdims=True))
    rebuilt /= rebuilt.sum(axis=1, keepdims=True)
    run = load_run(run_dir)
    np.testing.assert_allclose(run.probabilities(run.standardiser.apply(vectors.astype(np.float32))), rebuilt, atol=2e-5)


def test_damaged_model_files_fall_back_to_best_pt_and_damage_to_both_is_one_line(finished_run, tmp_path, capsys):
    run_dir, cache = finished_run
    expected = json.loads((run_dir / "summary.json").read_text())["test"]["accuracy"]
    for damage in ("truncate", "other weights"):
        broken = tmp_path / damage.replace(" ", "_")
        shutil.copytree(run_dir, broken, ignore=shutil.ignore_patterns("evals"))
        data = (broken / "model.safetensors").read_bytes()
        (broken / "model.safetensors").write_bytes(data[:len(data) // 2] if damage == "truncate"
                                                   else data[:-4] + b"    ")
        assert main(["eval", "-q", str(broken), "--cache-dir", str(cache)]) == 0
        assert "model.safetensors does not match head.json" in capsys.readouterr().err
        assert json.loads((broken / "evals" / "test.json").read_text())["accuracy"] == expected
        (broken / "best.pt").write_bytes((broken / "best.pt").read_bytes()[:100])
        for command in (["eval", "-q", str(broken), "--cache-dir", str(cache)], ["predict", str(broken), "hello"]):
            assert main(command) == 2
            assert "best.pt is damaged" in one_error_line(capsys)
