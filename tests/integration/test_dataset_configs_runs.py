"""A shipped run config end to end: disaster_tweets.yaml on a Kaggle-shaped file (that each config loads
and reads its kind of file: tests/unit/test_dataset_configs.py)."""
import json
from pathlib import Path

from orchestrator.cli import main

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parents[1] / "data"


def test_disaster_tweets_config_runs_on_a_kaggle_shaped_file(ray_session, tmp_path):
    run_dir = tmp_path / "run"
    code = main(["run", "-q", "--config", str(ROOT / "configs" / "disaster_tweets.yaml"),
                 "--data", str(DATA / "disaster_tweets_sample.csv"), "--epochs", "1",
                 "--set", "quantum.n_qubits=2", "--set", "quantum.depth=1", "--set", "data.split.val=0.25",
                 "--set", "data.split.test=0.25", "--set", "data.split.train=0.5",
                 "--cache-dir", str(tmp_path / "cache"), "--run-dir", str(run_dir)])
    assert code == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["dataset"] == "disaster_tweets" and summary["labels"] == ["0", "1"]
    assert summary["positive_label"] == "1" and sum(map(sum, summary["test"]["confusion"])) == summary["split"]["test"]
