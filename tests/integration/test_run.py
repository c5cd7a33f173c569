"""`orchestrate run` end to end, in-process on the shared Ray session: run dir, summary schema,
job accounting, cache hit on a second run, kill -9 and resume (the refusals that leave no run dir
behind, and the loop's pure pieces: tests/unit/test_run_checks.py)."""
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from orchestrator.cli import main
from tests.support.runs import SMALL, assert_same_run, checkpoint_step, kill_after_checkpoint
from tests.support.summary_schema import summary_problems

@pytest.fixture(scope="module")
def two_runs(ray_session, tmp_path_factory):
    """The same small run twice on one cache: the first computes the vectors, the second reuses them."""
    root = tmp_path_factory.mktemp("runs")
    cache = root / "cache"
    results = []
    for name in ("first", "second"):
        code = main(["run", *SMALL, "--cache-dir", str(cache), "--run-dir", str(root / name)])
        assert code == 0
        results.append(root / name)
    return results


def test_run_dir_holds_every_file(two_runs):
    run_dir = two_runs[0]
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "checkpoint.pt", "best.pt", "model.safetensors",
                 "head.json", "loss.png", "accuracy.png", "confusion.png"):
        assert (run_dir / name).is_file(), name
    assert not list(run_dir.glob(".*.tmp")), "no temporary files may be left behind"
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["quantum"] == {"backend": "aer_simulator", "n_qubits": 2, "depth": 1, "encoding": "hadamard-ry",
                                 "entangler": "cnot-ladder", "observables": "z", "shots": None, "seed": None,
                                 "optimization_level": 1, "max_parameter_sets_per_job": None,
                                 "circuit_workers": 0, "min_rows_for_workers": 4096, "noise_model": None,
                                 "gradient": "auto", "spsa_step": 0.1, "spsa_samples": 1,
                                 "eval_shots": None}
    assert config["train"]["epochs"] == 2 and config["data"]["limit"] == 200


def test_summary_schema_and_ranges(two_runs):
    summary = json.loads((two_runs[0] / "summary.json").read_text())
    assert summary_problems(summary) == []
    # the schema is strict enough to fail: a missing block, a stray key, a wrong type
    assert summary_problems({k: v for k, v in summary.items() if k != "run"})
    assert summary_problems(dict(summary, extra=1))
    assert summary_problems(dict(summary, test=dict(summary["test"], accuracy="0.9")))
    run = summary["run"]
    assert run["command"].startswith("orchestrate run") and run["finished_by"] is None
    assert run["started_at"] <= run["finished_at"] and run["version"]
    assert (summary["dataset"], summary["backend"], summary["n_qubits"], summary["depth"]) == \
        ("sms_spam_sample", "aer_simulator", 2, 1)
    for block in (summary["test"], summary["classical_baseline"],
                  summary["classical_baseline"]["logistic_regression"],
                  summary["classical_baseline"]["classical_head"]):
        for metric in ("accuracy", "f1_positive"):
            assert 0.0 <= block[metric] <= 1.0
    confusion = summary["test"]["confusion"]
    assert len(confusion) == 2 and sum(map(sum, confusion)) == summary["split"]["test"]
    assert summary["quantum"]["shots"] == 0 and summary["quantum"]["qpu_seconds"] == 0.0
    assert summary["timing"]["train_s"] > 0 and summary["timing"]["step_s_median"] > 0
    assert summary["cache"]["hit"] is False and len(summary["cache"]["key"]) == 64


def test_one_job_per_step_and_per_evaluation(two_runs):
    summary = json.loads((two_runs[0] / "summary.json").read_text())
    epochs = [json.loads(line) for line in (two_runs[0] / "metrics.jsonl").read_text().splitlines()]
    steps_per_epoch = math.ceil(summary["split"]["train"] / 32)
    assert [row["epoch"] for row in epochs] == [1, 2]
    assert summary["timing"]["steps"] == 2 * steps_per_epoch
    # each epoch: its training steps + one validation request; at the end: one test request
    assert [row["jobs"] for row in epochs] == [steps_per_epoch + 1, 2 * steps_per_epoch + 2]
    assert summary["quantum"]["jobs"] == summary["timing"]["steps"] + 2 + 1
    # exact Aer, quantum.gradient auto: backprop through the statevector, one circuit per sample
    n = summary["split"]
    assert summary["quantum"]["gradient"] == "backprop"
    assert summary["quantum"]["circuits"] == 2 * n["train"] + 2 * n["val"] + n["test"]
    for row in epochs:
        assert {"train_loss", "train_acc", "train_f1", "val_loss", "val_acc", "val_f1", "lr",
                "circuits", "seconds"} <= set(row)


def test_checkpoint_holds_the_whole_training_state(two_runs):
    state = torch.load(two_runs[0] / "checkpoint.pt", weights_only=False)
    assert {"model", "optimizer", "lr_scheduler", "rng", "step", "epoch", "data_order", "best"} <= set(state)
    assert set(state["rng"]) == {"torch", "numpy", "python"}
    assert state["epoch"] == 2 and state["step"] == json.loads((two_runs[0] / "summary.json").read_text())["timing"]["steps"]


def test_circuit_workers_give_the_same_run(two_runs, tmp_path):
    """Parameter-shift steps split over 2 Ray circuit workers (auto chooses parameter shift when workers
    are asked for): exact Aer, so the very numbers of the same run in one process."""
    cache = str(two_runs[0].parent / "cache")
    assert main(["run", *SMALL, "--cache-dir", cache, "--run-dir", str(tmp_path / "split"),
                 "--set", "quantum.circuit_workers=2", "--set", "quantum.min_rows_for_workers=100"]) == 0
    assert main(["run", *SMALL, "--cache-dir", cache, "--run-dir", str(tmp_path / "whole"),
                 "--set", "quantum.gradient=parameter-shift"]) == 0
    split, whole = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("split", "whole"))
    for key in ("test", "classical_baseline", "best"):
        assert split[key] == whole[key], key
    assert (split["quantum"].pop("circuit_workers"), whole["quantum"].pop("circuit_workers")) == (2, 0)
    assert split["quantum"] == whole["quantum"]     # the same jobs: a split job still counts once
    # 2 qubits, depth 1: 1 + 2 * (2 inputs + 2 weights) = 9 rows per training sample, 1 per evaluated one
    n = whole["split"]
    assert whole["quantum"]["gradient"] == "parameter-shift"
    assert whole["quantum"]["circuits"] == 2 * 9 * n["train"] + 2 * n["val"] + n["test"]


def test_second_run_is_a_cache_hit_with_the_same_numbers(two_runs):
    first, second = (json.loads((d / "summary.json").read_text()) for d in two_runs)
    assert second["cache"]["hit"] is True and second["cache"]["key"] == first["cache"]["key"]
    assert second["test"] == first["test"]            # exact simulator, same seeds: same model
    assert second["classical_baseline"] == first["classical_baseline"]


# batches of 2: ~200 steps, so that a kill lands mid-run even when a step (backprop on exact Aer)
# takes milliseconds
RESUMABLE = ["--limit", "200", "--epochs", "3", "-q", "--set", "quantum.n_qubits=4", "--set", "quantum.depth=2",
             "--set", "train.batch_size=2", "--set", "train.checkpoint_every=2", "--set", "train.patience=5"]


@pytest.fixture(scope="module")
def reference_run(two_runs, tmp_path_factory):
    """The uninterrupted run that killed-and-resumed runs must reproduce."""
    reference = tmp_path_factory.mktemp("reference") / "run"
    cache = two_runs[0].parent / "cache"   # the vectors are cached already: no Ray needed below
    assert main(["run", *RESUMABLE, "--cache-dir", str(cache), "--run-dir", str(reference)]) == 0
    return reference


@pytest.mark.parametrize("kill_after", ["first checkpoint", "random step"])
def test_resume_after_sigkill_equals_an_uninterrupted_run(two_runs, reference_run, tmp_path, kill_after):
    reference, cache = reference_run, two_runs[0].parent / "cache"
    assert json.loads((reference / "summary.json").read_text())["quantum"]["gradient"] == "backprop"   # auto
    total_steps = json.loads((reference / "summary.json").read_text())["timing"]["steps"]
    # checkpoints come at step 0, every 2 steps and at epoch ends: kill after step 0 or a random later one
    target = 0 if kill_after == "first checkpoint" else random.Random().randrange(2, total_steps // 2)
    print(f"killing after checkpointed step {target} of {total_steps}")
    killed = tmp_path / "killed"
    kill_after_checkpoint([*RESUMABLE, "--cache-dir", str(cache)], killed, target, total_steps)
    assert main(["resume", "-q", str(killed)]) == 0
    assert_same_run(killed, reference)


def test_a_damaged_checkpoint_resumes_from_the_one_before_to_the_same_numbers(two_runs, reference_run, tmp_path,
                                                                             capsys):
    run_dir = tmp_path / "killed"
    total_steps = json.loads((reference_run / "summary.json").read_text())["timing"]["steps"]
    kill_after_checkpoint([*RESUMABLE, "--cache-dir", str(two_runs[0].parent / "cache")], run_dir, target=6,
                          total_steps=total_steps)
    previous_step = torch.load(run_dir / "checkpoint.previous.pt", weights_only=False)["step"]
    (run_dir / "checkpoint.pt").write_bytes(b"")                 # damaged after the fact
    assert main(["resume", "-q", str(run_dir)]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and warnings[0].startswith("warning: checkpoint.pt is damaged (")
    assert warnings[0].endswith(f"resuming from checkpoint.previous.pt (step {previous_step}), the checkpoint before it")
    assert_same_run(run_dir, reference_run)


def test_two_damaged_checkpoints_are_one_line(two_runs, reference_run, tmp_path, capsys):
    run_dir = tmp_path / "killed"
    total_steps = json.loads((reference_run / "summary.json").read_text())["timing"]["steps"]
    kill_after_checkpoint([*RESUMABLE, "--cache-dir", str(two_runs[0].parent / "cache")], run_dir, target=4,
                          total_steps=total_steps)
    for name in ("checkpoint.pt", "checkpoint.previous.pt"):
        (run_dir / name).write_bytes(b"not a checkpoint")
    assert main(["resume", "-q", str(run_dir)]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith(("error", "warning", "Trace"))]
    assert len(lines) == 1 and lines[0].startswith(f"error: no checkpoint of {run_dir} can be read: checkpoint.pt "
                                                   f"is damaged"), lines


def test_sigterm_stops_a_run_resumably_with_exit_75(two_runs, reference_run, tmp_path):
    """A scheduler's SIGTERM: one line that says how to continue, exit 75; resumed, the same run."""
    cache, run_dir = two_runs[0].parent / "cache", tmp_path / "terminated"
    process = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", *RESUMABLE, "--cache-dir", str(cache),
                                "--run-dir", str(run_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while checkpoint_step(run_dir) < 2:
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.005)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 75, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and f"orchestrate resume {run_dir}" in errors[0] and "SIGTERM" in errors[0]
    assert not (run_dir / "summary.json").exists()
    assert main(["resume", "-q", str(run_dir)]) == 0
    assert_same_run(run_dir, reference_run)


def test_spsa_training_resumes_to_the_same_numbers(two_runs, tmp_path):
    """SPSA's random signs follow (seed, request): a killed and resumed run draws the same ones."""
    cache = two_runs[0].parent / "cache"
    spsa = [*RESUMABLE, "--set", "quantum.gradient=spsa", "--set", "quantum.spsa_samples=2", "--cache-dir", str(cache)]
    reference = tmp_path / "reference"
    assert main(["run", *spsa, "--run-dir", str(reference)]) == 0
    summary = json.loads((reference / "summary.json").read_text())
    steps, train_rows, validation_rows = summary["timing"]["steps"], summary["split"]["train"], summary["split"]["val"]
    # one job per step of 2 x (1 + 2 x 2) rows, whatever the parameter count (4 qubits, depth 2: 12)
    first_epoch = json.loads((reference / "metrics.jsonl").read_text().splitlines()[0])
    assert first_epoch["jobs"] == math.ceil(train_rows / 2) + 1
    assert first_epoch["circuits"] == 5 * train_rows + validation_rows
    killed = tmp_path / "killed"
    kill_after_checkpoint([*spsa], killed, random.Random().randrange(2, steps // 2), steps)
    assert main(["resume", "-q", str(killed)]) == 0
    assert_same_run(killed, reference)


def test_resume_refuses_a_finished_run(capsys, two_runs):
    assert main(["resume", "-q", str(two_runs[0])]) == 2
    assert "already finished" in capsys.readouterr().err


def test_runs_lists_finished_resumable_and_incomplete_run_dirs(two_runs, tmp_path, capsys):
    import shutil

    root = tmp_path / "runs"
    shutil.copytree(two_runs[0], root / "finished")
    shutil.copytree(two_runs[0], root / "stopped")
    (root / "stopped" / "summary.json").unlink()
    (root / "early").mkdir()
    shutil.copy(two_runs[0] / "config.yaml", root / "early" / "config.yaml")
    (root / "not-a-run").mkdir()
    assert main(["runs", str(root), "--json"]) == 0
    rows = {Path(row["run_dir"]).name: row for row in map(json.loads, capsys.readouterr().out.splitlines())}
    assert {name: row["state"] for name, row in rows.items()} == {
        "finished": "finished", "stopped": "resumable", "early": "incomplete"}
    finished = json.loads((two_runs[0] / "summary.json").read_text())
    assert rows["finished"]["test_f1"] == finished["test"]["f1_positive"] and rows["stopped"]["test_f1"] is None
    assert (rows["finished"]["dataset"], rows["finished"]["backend"]) == ("sms_spam_sample", "aer_simulator")
    assert main(["runs", str(root)]) == 0
    table = capsys.readouterr().out
    assert "resumable" in table and "incomplete" in table and "not-a-run" not in table
    assert main(["runs", str(tmp_path / "nowhere")]) == 2


def test_compare_shows_the_config_keys_that_differ_and_the_metrics(two_runs, reference_run, tmp_path, capsys):
    assert main(["compare", str(two_runs[0]), str(reference_run), "--json"]) == 0
    comparison = json.loads(capsys.readouterr().out)
    first, other = (json.loads((d / "summary.json").read_text()) for d in (two_runs[0], reference_run))
    differing = comparison["config_differences"]
    assert differing and all(len(values) == 2 and values[0] != values[1] for values in differing.values())
    assert "quantum.backend" not in differing                       # the same in both: not shown
    assert comparison["metrics"]["test F1"] == [first["test"]["f1_positive"], other["test"]["f1_positive"]]
    assert comparison["metrics"]["jobs"] == [first["quantum"]["jobs"], other["quantum"]["jobs"]]
    assert main(["compare", str(two_runs[0]), str(two_runs[0])]) == 0
    assert "the same in every run" in capsys.readouterr().out
    assert main(["compare", str(two_runs[0])]) == 2
    assert main(["compare", str(two_runs[0]), str(tmp_path)]) == 2


def test_run_dir_and_cache_files_are_readable_by_others_as_the_umask_allows(two_runs):
    """0644 files and 0755 folders under the usual umask 022: a shared /mnt/shared run dir and cache
    are readable by the other users of the cluster."""
    from orchestrator.core.files import process_umask

    allowed_file, allowed_dir = 0o666 & ~process_umask(), 0o777 & ~process_umask()
    run_dir, cache = two_runs[0], two_runs[0].parent / "cache"
    written = [p for p in [*run_dir.rglob("*"), *cache.rglob("*")]]
    assert any(p.suffix == ".h5" for p in written) and any(p.name == "summary.json" for p in written)
    for path in written:
        mode = path.stat().st_mode & 0o777
        assert mode == (allowed_dir if path.is_dir() else allowed_file), f"{path}: {oct(mode)}"


def test_json_output_of_run_eval_estimate_and_backends(two_runs, tmp_path, capsys):
    """--json: stdout is one JSON document a script can read (progress and notes go to stderr)."""
    cache = two_runs[0].parent / "cache"
    run_dir = tmp_path / "run"
    capsys.readouterr()
    assert main(["run", *SMALL, "--cache-dir", str(cache), "--run-dir", str(run_dir), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["run_dir"] == str(run_dir)
    assert printed["summary"] == json.loads((run_dir / "summary.json").read_text())

    assert main(["eval", "-q", str(run_dir), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["accuracy"] == printed["summary"]["test"]["accuracy"] and scores["rows"] == printed["summary"]["split"]["test"]

    assert main(["estimate", *SMALL[:4], "--set", "quantum.n_qubits=2", "--set", "quantum.depth=1",
                 "--set", "train.batch_size=32", "--json"]) == 0
    estimate = json.loads(capsys.readouterr().out)
    assert estimate["run"]["jobs"] >= printed["summary"]["quantum"]["jobs"] and estimate["qpu_seconds"] is None
    # quantum.gradient auto on exact Aer: backprop, one statevector row a sample
    assert estimate["step"]["circuits"] == 32 and estimate["plan"] is None

    assert main(["backends", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0]["name"] == "aer_simulator" and any(row["name"] == "fake_fez" and row["qubits"] == 156 for row in rows)


def test_progress_without_a_terminal_is_plain_lines(two_runs, tmp_path):
    """stderr to a pipe (ray job logs, CI): plain lines, no carriage-return redraws."""
    cache = two_runs[0].parent / "cache"
    done = subprocess.run([sys.executable, "-m", "orchestrator.cli", "run", *[a for a in SMALL if a != "-q"],
                           "--cache-dir", str(cache), "--run-dir", str(tmp_path / "run")],
                          env=dict(os.environ, ORCHESTRATOR_PROGRESS_S="0"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr
    steps = [line for line in done.stderr.splitlines() if line.startswith("epoch 1/2: ")]
    assert steps and steps[-1].startswith("epoch 1/2: 5/5 steps (100 %)") and "jobs=" in steps[-1]
