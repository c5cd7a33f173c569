"""train.trackers: TensorBoard event files and an MLflow run, written by a real run and read back
with TensorBoard's and MLflow's own readers; a killed and resumed run continues both."""
import json

import pytest

from orchestrator.cli import main
from tests.support.runs import SMALL, kill_after_checkpoint

TRACKED = [*SMALL, "--set", "train.trackers=[tensorboard, mlflow]"]


def scalars(run_dir, tag):
    """(step, value) of one tag, as TensorBoard loads the run's event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return [(event.step, event.value) for event in events.Scalars(tag)]


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")   # MLflow 3 keeps the folder store behind this flag
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


@pytest.fixture
def tracked_run(ray_session, tmp_path, mlflow_store):
    run_dir = tmp_path / "run"
    assert main(["run", *TRACKED, "--cache-dir", str(tmp_path / "cache"), "--run-dir", str(run_dir)]) == 0
    return run_dir


def epochs(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_tensorboard_has_every_step_and_epoch(tracked_run):
    summary = json.loads((tracked_run / "summary.json").read_text())
    steps = summary["timing"]["steps"]
    loss = scalars(tracked_run, "train/loss")
    assert [step for step, _ in loss] == list(range(1, steps + 1))
    jobs = scalars(tracked_run, "quantum/jobs")
    # one job per step, and the validation jobs of the epochs before: steps <= jobs < all the run's jobs
    assert jobs[0][1] == 1 and steps <= jobs[-1][1] < summary["quantum"]["jobs"]
    assert all(later > earlier for (_, earlier), (_, later) in zip(jobs, jobs[1:]))
    assert [value for _, value in scalars(tracked_run, "quantum/circuits")][-1] > 0
    assert len(scalars(tracked_run, "quantum/shots")) == steps and len(scalars(tracked_run, "train/lr")) == steps
    rows = epochs(tracked_run)
    assert [(step, pytest.approx(value)) for step, value in scalars(tracked_run, "val/f1")] == \
        [(row["step"], pytest.approx(row["val_f1"])) for row in rows]
    assert scalars(tracked_run, "test/f1")[0][1] == pytest.approx(summary["test"]["f1_positive"])


def test_mlflow_run_holds_params_metrics_and_artifacts(tracked_run, mlflow_store):
    run_id = json.loads((tracked_run / "mlflow.json").read_text())["run_id"]
    run = mlflow_store.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == tracked_run.name
    assert run.data.params["train.epochs"] == "2" and run.data.params["quantum.n_qubits"] == "2"
    summary = json.loads((tracked_run / "summary.json").read_text())
    loss = mlflow_store.get_metric_history(run_id, "train/loss")
    assert sorted(m.step for m in loss) == list(range(1, summary["timing"]["steps"] + 1))
    val_f1 = sorted(mlflow_store.get_metric_history(run_id, "val/f1"), key=lambda m: m.step)
    assert [m.value for m in val_f1] == pytest.approx([row["val_f1"] for row in epochs(tracked_run)])
    assert run.data.metrics["test/f1"] == pytest.approx(summary["test"]["f1_positive"])
    artifacts = {a.path for a in mlflow_store.list_artifacts(run_id)}
    assert {"config.yaml", "summary.json", "metrics.jsonl"} <= artifacts
    experiment = mlflow_store.get_experiment(run.info.experiment_id)
    assert experiment.name == "sms_spam_sample"


def test_a_resumed_run_continues_its_tensorboard_and_mlflow_logs(ray_session, tmp_path, mlflow_store):
    run_dir, cache = tmp_path / "killed", tmp_path / "cache"
    assert main(["embed", "--limit", "200", "-q", "--cache-dir", str(cache)]) == 0
    args = [*TRACKED, "--set", "train.checkpoint_every=2", "--cache-dir", str(cache)]
    kill_after_checkpoint(args, run_dir, target=2, total_steps=10)
    run_id = json.loads((run_dir / "mlflow.json").read_text())["run_id"]
    assert main(["resume", "-q", str(run_dir)]) == 0

    steps = json.loads((run_dir / "summary.json").read_text())["timing"]["steps"]
    # the killed run's steps past its checkpoint are hidden: each step once, in order
    assert [step for step, _ in scalars(run_dir, "train/loss")] == list(range(1, steps + 1))
    runs = mlflow_store.search_runs([mlflow_store.get_run(run_id).info.experiment_id])
    assert [r.info.run_id for r in runs] == [run_id], "the resumed run logs into the run it started"
    assert runs[0].info.status == "FINISHED"
    assert {m.step for m in mlflow_store.get_metric_history(run_id, "train/loss")} == set(range(1, steps + 1))


def test_no_trackers_writes_no_tracker_files(ray_session, tmp_path):
    run_dir = tmp_path / "plain"
    assert main(["run", *SMALL, "--set", "train.trackers=[]", "--cache-dir", str(tmp_path / "cache"),
                 "--run-dir", str(run_dir)]) == 0
    assert not (run_dir / "tensorboard").exists() and not (run_dir / "mlflow.json").exists()


