"""A run on a device is a plan: exact Aer, then the device's noise on Aer, then steps and the
evaluation on the device, within the QPU budget; resumable in any phase (fake_manila in
qiskit-ibm-runtime's local testing mode stands for the device)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from orchestrator.cli import main

REPO = Path(__file__).resolve().parents[2]
PLANNED = ["--limit", "80", "--epochs", "2", "-q", "--backend", "fake_manila", "--set", "quantum.n_qubits=2",
           "--set", "quantum.depth=1", "--set", "train.batch_size=8", "--set", "hardware.noisy_steps=2",
           "--set", "hardware.shots=200", "--set", "hardware.eval_shots=100", "--set", "hardware.batch_size=4",
           "--set", "runtime.max_qpu_seconds=60"]


@pytest.fixture(scope="module")
def cache(ray_session, tmp_path_factory):
    cache_dir = tmp_path_factory.mktemp("planned-cache")
    assert main(["embed", "-q", "--limit", "80", "--cache-dir", str(cache_dir)]) == 0
    return cache_dir


@pytest.fixture(scope="module")
def planned_run(cache, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("planned") / "run"
    assert main(["run", *PLANNED, "--cache-dir", str(cache), "--run-dir", str(run_dir)]) == 0
    return run_dir


def test_the_run_goes_through_its_phases_within_the_budget(planned_run):
    summary = json.loads((planned_run / "summary.json").read_text())
    phases = summary["phases"]
    assert [p["phase"] for p in phases] == ["simulator", "noisy-simulator", "hardware"]
    assert [p["backend"] for p in phases] == ["aer_simulator", "aer_simulator", "fake_manila"]
    assert phases[1]["noise_model"] == "fake_manila" and phases[1]["steps_run"] == 2
    hardware = phases[2]
    assert hardware["steps"] >= 1 and hardware["steps_run"] == hardware["steps"]
    assert 0 < hardware["estimate"]["qpu_seconds"] <= 60
    assert 0 < hardware["quantum"]["qpu_seconds_estimated"] <= 60          # what the journal counted as spent
    assert summary["test"] == hardware["test"] and summary["backend"] == "fake_manila"
    for phase in phases:
        assert set(phase["test"]) >= {"accuracy", "f1_positive", "confusion"}
    plan = json.loads((planned_run / "plan.json").read_text())
    assert [p["estimate"]["qpu_seconds"] for p in plan["phases"]][:2] == [0.0, 0.0]
    journal = [json.loads(line) for line in (planned_run / "phases" / "3-hardware" / "jobs.jsonl").read_text().splitlines()]
    assert sum(e["event"] == "result" for e in journal) == hardware["quantum"]["jobs"]


def test_each_phase_starts_from_the_previous_best_and_keeps_it_unless_it_does_better(planned_run):
    noisy = torch.load(planned_run / "phases" / "2-noisy-simulator" / "best.pt", weights_only=False)
    simulator = torch.load(planned_run / "phases" / "1-simulator" / "best.pt", weights_only=False)
    metrics = (planned_run / "phases" / "2-noisy-simulator" / "metrics.jsonl").read_text().splitlines()
    first = json.loads(metrics[0])
    if noisy["epoch"] == 0:      # the steps did not beat the starting weights on validation: they are kept
        assert all(torch.equal(noisy["model"][k], simulator["model"][k]) for k in simulator["model"])
    else:
        assert noisy["value"] >= first["val_f1"] - 1e-12
    # eval and predict load the run's best.pt: the device phase's
    assert (planned_run / "best.pt").read_bytes() == (planned_run / "phases" / "3-hardware" / "best.pt").read_bytes()


def test_the_runs_table_shows_every_phase_and_eval_uses_the_device_model(planned_run, capsys):
    assert main(["eval", "-q", str(planned_run), "--backend", "aer_simulator"]) == 0
    assert "accuracy" in capsys.readouterr().out


def test_estimate_prints_the_plan_before_anything_is_submitted(cache, capsys):
    assert main(["estimate", *PLANNED, "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "plan of the run (runtime.max_qpu_seconds = 60 s)" in out
    assert "1-simulator" in out and "2-noisy-simulator" in out and "3-hardware" in out


def test_a_budget_that_cannot_pay_for_the_evaluation_is_refused_before_anything_is_written(cache, tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = main(["run", *PLANNED, "--set", "runtime.max_qpu_seconds=1", "--cache-dir", str(tmp_path / "cache"),
                 "--run-dir", str(run_dir)])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1 and "more than runtime.max_qpu_seconds = 1" in errors[0]
    assert not run_dir.exists() and not (tmp_path / "cache").exists()


def test_a_run_killed_in_the_device_phase_resumes_to_the_same_numbers(cache, planned_run, tmp_path):
    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", *PLANNED, "--cache-dir", str(cache),
                                "--run-dir", str(killed)], cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    checkpoint = killed / "phases" / "3-hardware" / "checkpoint.pt"
    deadline = time.monotonic() + 300
    while True:
        assert process.poll() is None, "the run ended before its device phase stepped"
        assert time.monotonic() < deadline
        try:
            if torch.load(checkpoint, weights_only=False)["step"] >= 1:
                break
        except (FileNotFoundError, EOFError, RuntimeError):
            pass
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "summary.json").exists()
    assert main(["resume", "-q", str(killed)]) == 0
    expected, resumed = (json.loads((d / "summary.json").read_text()) for d in (planned_run, killed))
    for key in ("test", "classical_baseline", "best"):
        assert resumed[key] == expected[key], key
    assert [p["test"] for p in resumed["phases"]] == [p["test"] for p in expected["phases"]]
