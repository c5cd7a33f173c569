"""The shipped run configs: each one loads and reads its kind of file (one of them runs end to end in
tests/integration/test_dataset_configs_runs.py)."""
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.config import load_config
from orchestrator.data.datasets import load_dataset

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.mark.parametrize("name", ["quickstart", "sms_spam", "disaster_tweets", "imdb"])
def test_every_shipped_config_is_valid(name):
    config = load_config(str(ROOT / "configs" / f"{name}.yaml"))
    assert config.embedding.model == "all-MiniLM-L6-v2"


@pytest.mark.parametrize("config_name, file, rows, labels, positive, first_text", [
    ("disaster_tweets", "disaster_tweets_sample.csv", 24, ["0", "1"], "1",
     "Magnitude 6.1 earthquake shakes buildings downtown, people evacuated"),
    ("imdb", "imdb_sample.csv", 20, ["negative", "positive"], "positive",
     "One of the best films I have seen in years."),
])
def test_config_reads_its_file_format(config_name, file, rows, labels, positive, first_text):
    config = load_config(str(ROOT / "configs" / f"{config_name}.yaml"))
    dataset = load_dataset(config.data.model_copy(update={"path": str(DATA / file)}))
    assert len(dataset) == rows and dataset.label_names == labels and dataset.positive_label == positive
    assert dataset.texts[0].startswith(first_text)
    assert sorted(set(dataset.labels.tolist())) == [0, 1]


def test_a_config_without_a_dataset_asks_for_data(capsys, tmp_path):
    code = main(["run", "-q", "--config", str(ROOT / "configs" / "imdb.yaml"), "--run-dir", str(tmp_path / "run")])
    assert code == 2 and "no dataset given: pass --data PATH" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
