"""train.trackers without a run: an unknown tracker is one line, and where the MLflow store is (real
runs' TensorBoard and MLflow logs: tests/integration/test_trackers.py)."""
from orchestrator.cli import main


def test_an_unknown_tracker_is_one_line(capsys, tmp_path):
    assert main(["run", "--limit", "100", "--set", "train.trackers=[wandb]", "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "train.trackers" in err and "wandb" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_mlflow_store_is_the_config_s_then_the_environment_s_then_mlruns_here(tmp_path, monkeypatch):
    from orchestrator.training.trackers import mlflow_tracking_uri

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert mlflow_tracking_uri(None) == (tmp_path / "mlruns").as_uri()   # absolute: a sweep's trials run elsewhere
    assert mlflow_tracking_uri("store") == (tmp_path / "store").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert mlflow_tracking_uri(None) == "http://mlflow.example:5000"
    assert mlflow_tracking_uri("sqlite:///runs.db") == "sqlite:///runs.db"
