"""A run on a Parquet file, then `eval` on a saved Hugging Face datasets folder and `predict` on
an hf: id of a folder of data files: the one --data of every command (the readers themselves:
tests/unit/test_data_formats.py)."""
import json
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.config import load_config

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
hf = pytest.importorskip("datasets")

SAMPLE = Path(__file__).resolve().parents[2] / "orchestrator" / "datasets" / "sms_spam_sample.tsv"


def sample_columns(start: int, stop: int) -> dict:
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()[start:stop]
    labels, texts = zip(*(line.split("\t", 1) for line in lines))
    return {"text": list(texts), "label": list(labels)}


def test_run_on_parquet_then_eval_and_predict_on_hf_datasets(ray_session, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(hf.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    data = tmp_path / "sms.parquet"
    pq.write_table(pa.table(sample_columns(0, 200)), str(data))
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    assert main(["run", "--data", str(data), "--limit", "200", "--epochs", "1", "-q", "--set", "quantum.n_qubits=2",
                 "--set", "quantum.depth=1", "--cache-dir", str(cache), "--run-dir", str(run_dir)]) == 0
    config = load_config(str(run_dir / "config.yaml"))
    assert config.data.format == "parquet" and config.data.path == str(data)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["labels"] == ["ham", "spam"] and sum(map(sum, summary["test"]["confusion"])) == summary["split"]["test"]

    folder = tmp_path / "more"
    hf.Dataset.from_dict(sample_columns(200, 260)).save_to_disk(str(folder))   # rows the run never saw
    assert main(["eval", "-q", str(run_dir), "--data", str(folder), "--cache-dir", str(cache), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result["rows"] == 60 and result["data"] == str(folder)
    truth = sample_columns(200, 260)["label"]
    assert [sum(row) for row in result["confusion"]] == [truth.count("ham"), truth.count("spam")]

    files = tmp_path / "files"
    files.mkdir()
    pq.write_table(pa.table(sample_columns(260, 265)), str(files / "test.parquet"))
    assert main(["predict", str(run_dir), "--data", f"hf:{files}:test", "--json"]) == 0
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [a["text"] for a in answers] == sample_columns(260, 265)["text"]
    assert all(a["label"] in ("ham", "spam") for a in answers)

    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet")
    assert main(["eval", "-q", str(run_dir), "--data", str(broken), "--cache-dir", str(cache)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "is not a readable Parquet file" in err[0]
    assert not (run_dir / "evals" / "broken.json").exists()
