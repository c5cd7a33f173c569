"""IBM Quantum backends: fake devices in qiskit-ibm-runtime's local testing mode, and `ibm_<device>`
against a stand-in for IBM's cloud service (tests/support/fake_cloud.py) that replaces only the service
object; Session, Batch and EstimatorV2 are the real ones (what needs no run:
tests/unit/test_ibm_backends_local.py).

The runs are tiny (2 qubits, depth 1, 60 SMS messages) because every job is a noisy simulation
of a real device. The vectors are embedded once, in-process; subprocess runs hit that cache and
never start Ray.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from orchestrator.cli import main
from tests.support.fake_cloud import install, submissions
from tests.support.ibm import TOKEN, one_error_line

REPO = Path(__file__).resolve().parents[2]
TINY = ["--limit", "60", "--epochs", "1", "-q", "--set", "quantum.n_qubits=2", "--set", "quantum.depth=1",
        "--set", "train.batch_size=8", "--set", "quantum.shots=200", "--set", "quantum.seed=5",
        "--set", "runtime.retry_backoff_seconds=0",
        "--set", "hardware.plan=false"]   # every step on the device: the journal's mechanics (tests/integration/test_planned_run.py: phases)


@pytest.fixture(scope="module")
def cache(ray_session, tmp_path_factory):
    """The tiny runs' vectors, embedded once on the shared Ray session."""
    cache_dir = tmp_path_factory.mktemp("ibm-cache")
    assert main(["embed", "-q", "--limit", "60", "--cache-dir", str(cache_dir)]) == 0
    return cache_dir


def read_journal(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "jobs.jsonl").read_text().splitlines()]


def cloud_command(cloud_root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "tests.support.fake_cloud", str(cloud_root), "--", *args]


def run_cloud(cloud_root: Path, *args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(cloud_command(cloud_root, *args), cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)


# --- fake devices, locally ----------------------------------------------------------------------

def test_fake_device_run_goes_through_a_session_and_the_estimator(cache, tmp_path, monkeypatch):
    from orchestrator.quantum import runner
    from orchestrator.quantum.circuits import TranspileCache

    # a cache of its own: another test (an estimate, a plan) may have transpiled this template already
    monkeypatch.setattr(runner, "DEFAULT_TRANSPILE_CACHE", TranspileCache())
    run_dir = tmp_path / "run"
    assert main(["run", *TINY, "--backend", "fake_manila", "--cache-dir", str(cache), "--run-dir", str(run_dir)]) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    quantum, steps = summary["quantum"], summary["timing"]["steps"]
    assert summary["backend"] == "fake_manila" and quantum["execution_mode"] == "session"
    assert quantum["jobs"] == steps + 2 and quantum["shots"] == 200 * quantum["circuits"]
    assert quantum["qpu_seconds"] is None and quantum["qpu_seconds_estimated"] > 0   # local mode bills nothing
    assert quantum["transpilations"] == 1      # once per backend, never per step
    events = read_journal(run_dir)
    assert [e["event"] for e in events] == ["intent", "submitted", "result"] * quantum["jobs"]
    assert len({e["job_id"] for e in events if e["event"] == "submitted"}) == quantum["jobs"]
    recorded = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert recorded["quantum"]["backend"] == "fake_manila" and recorded["runtime"]["execution_mode"] == "auto"


# --- ibm_<device>: credentials, names, listing ---------------------------------------------------

def test_ibm_backend_without_credentials_is_one_line(cache, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("QISKIT_IBM_TOKEN", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))     # no saved account either
    run_dir = tmp_path / "run"
    assert main(["run", *TINY, "--backend", "ibm_fez", "--cache-dir", str(cache), "--run-dir", str(run_dir)]) == 2
    line = one_error_line(capsys)
    assert "no IBM Quantum credentials" in line and "QISKIT_IBM_TOKEN" in line
    assert not run_dir.exists()
    assert main(["backends"]) == 0
    captured = capsys.readouterr()
    assert "fake_fez" in captured.out and "156" in captured.out and "no IBM Quantum credentials" in captured.err


def test_the_retired_ibm_quantum_channel_is_one_line_naming_the_channels_offered(cache, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("QISKIT_IBM_TOKEN", "not-a-real-token")
    monkeypatch.setenv("QISKIT_IBM_CHANNEL", "ibm_quantum")
    run_dir = tmp_path / "run"
    assert main(["run", *TINY, "--backend", "ibm_fez", "--cache-dir", str(cache), "--run-dir", str(run_dir)]) == 2
    line = one_error_line(capsys)
    assert "'ibm_quantum' was retired by IBM" in line and "ibm_quantum_platform" in line
    assert "not-a-real-token" not in line and not run_dir.exists()


def test_a_retired_device_is_named_with_the_devices_that_exist(cache, tmp_path, capsys, monkeypatch):
    install(tmp_path / "cloud", monkeypatch.setattr)
    run_dir = tmp_path / "run"
    assert main(["run", *TINY, "--backend", "ibm_brisbane", "--cache-dir", str(cache), "--run-dir", str(run_dir)]) == 2
    line = one_error_line(capsys)
    assert "'ibm_brisbane' is not available to this account (retired or unknown" in line
    assert "operational backends: ibm_fez, ibm_kingston, ibm_manila, ibm_torino" in line
    assert not run_dir.exists()


@pytest.mark.parametrize("behaviour, message, exit_code", [
    ({"fail_all": True}, "failed 1 time; last:", 75),
    ({"interrupt_on_submission": 2}, "interrupted; continue the run with: orchestrate resume", 130),
])
def test_the_session_is_closed_when_a_run_fails_or_is_interrupted(cache, tmp_path, capsys, monkeypatch,
                                                                  behaviour, message, exit_code):
    from qiskit_ibm_runtime import Session

    closed = []
    real_close = Session.close
    monkeypatch.setattr(Session, "close", lambda self: (closed.append(self), real_close(self)))
    cloud = install(tmp_path / "cloud", monkeypatch.setattr)
    (cloud.root / "behaviour.json").write_text(json.dumps(behaviour))
    run_dir = tmp_path / "run"
    code = main(["run", *TINY, "--backend", "ibm_manila", "--set", "runtime.retries=0",
                 "--cache-dir", str(cache), "--run-dir", str(run_dir)])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert code == exit_code and len(errors) == 1
    assert message in errors[0] and f"orchestrate resume {run_dir}" in errors[0]
    assert len(closed) == 1 and (run_dir / "checkpoint.pt").is_file()


# --- Open plan: no sessions ----------------------------------------------------------------------

def test_an_open_plan_account_runs_in_batch_mode_with_one_warning(cache, tmp_path, capsys, monkeypatch):
    """execution_mode auto (the default): the service refuses the session with its real error; the
    run goes on in batch mode, says so once, and pays for no job twice."""
    cloud = install(tmp_path / "cloud", monkeypatch.setattr)
    (cloud.root / "behaviour.json").write_text(json.dumps({"refuse_sessions": True}))
    run_dir = tmp_path / "run"
    assert main(["run", *TINY, "--backend", "ibm_manila", "--cache-dir", str(cache), "--run-dir", str(run_dir)]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")]
    assert warnings == ["warning: ibm_manila: this account may not open a session (IBM's Open plan allows none); "
                        "running in batch mode instead"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["quantum"]["execution_mode"] == "batch"
    journal = read_journal(run_dir)
    submitted = [event for event in journal if event["event"] == "submitted"]
    assert len(submitted) == summary["quantum"]["jobs"] == submissions(cloud.root) - 1   # the refused one
    assert not [event for event in journal if event["event"] == "failed"]


def test_a_session_asked_for_explicitly_and_refused_is_one_line(cache, tmp_path, capsys, monkeypatch):
    cloud = install(tmp_path / "cloud", monkeypatch.setattr)
    (cloud.root / "behaviour.json").write_text(json.dumps({"refuse_sessions": True}))
    code = main(["run", *TINY, "--backend", "ibm_manila", "--set", "runtime.execution_mode=session",
                 "--cache-dir", str(cache), "--run-dir", str(tmp_path / "run")])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1
    assert "ibm_manila refused session mode" in errors[0] and "execution_mode: auto" in errors[0]
    assert submissions(cloud.root) == 1, "a refusal is not retried"


# --- the job journal: kill -9 with a job in flight, resume re-attaches ----------------------------

def start_killable_run(cloud_root: Path, run_dir: Path, cache: Path, hang_on: int, extra=(), args=TINY,
                       journal_dir: str = ".") -> None:
    """Start a run whose `hang_on`-th job never answers the client; kill -9 the client once that
    job's id is in the journal (the job is then in flight)."""
    (cloud_root).mkdir(parents=True, exist_ok=True)
    (cloud_root / "behaviour.json").write_text(json.dumps({"hang_on_submission": hang_on}))
    process = subprocess.Popen(cloud_command(cloud_root, "run", *args, "--backend", "ibm_manila", *extra,
                                             "--cache-dir", str(cache), "--run-dir", str(run_dir)),
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while True:
        assert process.poll() is None, "the run ended before the hanging job"
        assert time.monotonic() < deadline
        journal = run_dir / journal_dir / "jobs.jsonl"
        if journal.is_file() and sum('"submitted"' in line for line in journal.read_text().splitlines()) >= hang_on:
            break
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    (cloud_root / "behaviour.json").unlink()


@pytest.fixture(scope="module")
def reference_cloud_run(cache, tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    done = run_cloud(root / "cloud", "run", *TINY, "--backend", "ibm_manila", "--set", "train.checkpoint_every=4",
                     "--cache-dir", str(cache), "--run-dir", str(root / "run"))
    assert done.returncode == 0, done.stderr
    return root


def test_resume_reattaches_to_the_job_in_flight_and_never_pays_twice(cache, reference_cloud_run, tmp_path):
    reference = json.loads((reference_cloud_run / "run" / "summary.json").read_text())
    paid_for = submissions(reference_cloud_run / "cloud")
    assert paid_for == reference["quantum"]["jobs"]

    cloud, run_dir = tmp_path / "cloud", tmp_path / "run"
    # checkpoints at steps 0 and 4: jobs 1-2 finish (their values in the run dir), job 3 is in flight
    start_killable_run(cloud, run_dir, cache, hang_on=3, extra=["--set", "train.checkpoint_every=4"])
    assert submissions(cloud) == 3 and not (run_dir / "summary.json").exists()
    done = run_cloud(cloud, "resume", "-q", str(run_dir))
    assert done.returncode == 0, done.stderr

    assert submissions(cloud) == paid_for          # zero duplicate submissions
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["quantum"]["jobs_reattached"] == 1 and summary["quantum"]["jobs_from_journal"] == 2
    for key in ("test", "classical_baseline", "best", "epochs_run"):
        assert summary[key] == reference[key], key
    assert {k: summary["quantum"][k] for k in ("jobs", "circuits", "shots")} == \
        {k: reference["quantum"][k] for k in ("jobs", "circuits", "shots")}


def test_a_damaged_checkpoint_falls_back_to_the_one_before_and_the_journal_covers_the_steps_between(
        cache, reference_cloud_run, tmp_path):
    """Checkpoints at steps 2 and 4, job 5 in flight, then checkpoint.pt damaged: resume starts at
    step 2 with one warning, takes jobs 3-4 from the journal, re-attaches job 5, pays nothing twice."""
    reference = json.loads((reference_cloud_run / "run" / "summary.json").read_text())
    cloud, run_dir = tmp_path / "cloud", tmp_path / "run"
    start_killable_run(cloud, run_dir, cache, hang_on=5, extra=["--set", "train.checkpoint_every=2"])
    assert torch.load(run_dir / "checkpoint.pt", weights_only=False)["step"] == 4
    (run_dir / "checkpoint.pt").write_bytes((run_dir / "checkpoint.pt").read_bytes()[:1000])
    done = run_cloud(cloud, "resume", "-q", str(run_dir))
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "checkpoint.pt is damaged" in warnings[0] and \
        "resuming from checkpoint.previous.pt (step 2)" in warnings[0], done.stderr
    assert submissions(cloud) == submissions(reference_cloud_run / "cloud")      # zero duplicate submissions
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["quantum"]["jobs_from_journal"] == 2 and summary["quantum"]["jobs_reattached"] == 1
    for key in ("test", "classical_baseline", "best", "epochs_run"):
        assert summary[key] == reference[key], key


def test_a_kill_between_submission_and_journaling_finds_the_job_by_its_tag(cache, reference_cloud_run, tmp_path):
    """The client dies after the cloud took its 3rd job and before the job's id reached the journal:
    resume finds that job by the digest tag it was submitted with, and pays for nothing twice."""
    reference = json.loads((reference_cloud_run / "run" / "summary.json").read_text())
    cloud, run_dir = tmp_path / "cloud", tmp_path / "run"
    cloud.mkdir()
    (cloud / "behaviour.json").write_text(json.dumps({"kill_after_submission": 3}))
    died = run_cloud(cloud, "run", *TINY, "--backend", "ibm_manila", "--set", "train.checkpoint_every=4",
                     "--cache-dir", str(cache), "--run-dir", str(run_dir))
    assert died.returncode == -signal.SIGKILL and submissions(cloud) == 3
    journal = read_journal(run_dir)
    assert sum(e["event"] == "intent" for e in journal) == 3 and sum(e["event"] == "submitted" for e in journal) == 2
    (cloud / "behaviour.json").unlink()

    done = run_cloud(cloud, "resume", "-q", str(run_dir))
    assert done.returncode == 0, done.stderr
    assert submissions(cloud) == submissions(reference_cloud_run / "cloud")      # zero duplicate submissions
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["quantum"]["jobs_reattached"] == 1
    for key in ("test", "classical_baseline", "best", "epochs_run"):
        assert summary[key] == reference[key], key


def test_a_planned_run_killed_with_a_device_job_in_flight_resumes_without_paying_twice(cache, tmp_path):
    """The plan's device phase keeps the journal: kill -9 with its 2nd job in flight, resume
    re-attaches to it, the budget counts on from the journal, the numbers equal an uninterrupted run's."""
    planned = TINY[:-2] + [                                   # TINY without hardware.plan=false
        "--set", "hardware.steps=3", "--set", "hardware.batch_size=4", "--set", "hardware.eval_shots=100",
        "--set", "runtime.max_qpu_seconds=100000"]
    reference = run_cloud(tmp_path / "reference-cloud", "run", *planned, "--backend", "ibm_manila",
                          "--cache-dir", str(cache), "--run-dir", str(tmp_path / "reference"))
    assert reference.returncode == 0, reference.stderr
    expected = json.loads((tmp_path / "reference" / "summary.json").read_text())
    paid_for = submissions(tmp_path / "reference-cloud")
    assert paid_for == expected["quantum"]["jobs"] == 1 + 3 + 1 + 1   # validation, 3 steps, validation, test

    cloud, run_dir = tmp_path / "cloud", tmp_path / "run"
    start_killable_run(cloud, run_dir, cache, hang_on=2, args=planned, journal_dir="phases/3-hardware")
    done = run_cloud(cloud, "resume", "-q", str(run_dir))
    assert done.returncode == 0, done.stderr
    assert submissions(cloud) == paid_for                                      # zero duplicate submissions
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["quantum"]["jobs_reattached"] == 1
    assert summary["quantum"]["qpu_seconds_estimated"] == pytest.approx(expected["quantum"]["qpu_seconds_estimated"])
    for key in ("test", "classical_baseline", "best"):
        assert summary[key] == expected[key], key
    assert [p["test"] for p in summary["phases"]] == [p["test"] for p in expected["phases"]]


def test_failed_jobs_are_journaled_and_submitted_again(cache, reference_cloud_run, tmp_path):
    cloud, run_dir = tmp_path / "cloud", tmp_path / "run"
    cloud.mkdir()
    (cloud / "behaviour.json").write_text(json.dumps({"fail_results": [2]}))
    done = run_cloud(cloud, "run", *TINY, "--backend", "ibm_manila", "--set", "train.checkpoint_every=4",
                     "--cache-dir", str(cache), "--run-dir", str(run_dir))
    assert done.returncode == 0, done.stderr
    failed = [e for e in read_journal(run_dir) if e["event"] == "failed"]
    assert len(failed) == 1 and "failed" in failed[0]["error"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["quantum"]["jobs_resubmitted"] == 1
    assert submissions(cloud) == submissions(reference_cloud_run / "cloud") + 1


def test_a_backend_that_keeps_failing_stops_resumably(cache, tmp_path):
    cloud, run_dir = tmp_path / "cloud", tmp_path / "run"
    cloud.mkdir()
    (cloud / "behaviour.json").write_text(json.dumps({"fail_all": True}))
    failing = run_cloud(cloud, "run", *TINY, "--backend", "ibm_manila", "--set", "runtime.retries=1",
                        "--cache-dir", str(cache), "--run-dir", str(run_dir))
    errors = [line for line in failing.stderr.splitlines() if line.startswith("error: ")]
    assert failing.returncode == 75 and len(errors) == 1      # a resumable stop, not bad input
    assert "failed 2 times" in errors[0] and f"orchestrate resume {run_dir}" in errors[0]
    assert (run_dir / "checkpoint.pt").is_file() and not (run_dir / "summary.json").exists()
    (cloud / "behaviour.json").unlink()          # the device is back
    resumed = run_cloud(cloud, "resume", "-q", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    assert (run_dir / "summary.json").is_file()


def test_the_qpu_budget_stops_the_run_before_it_is_exceeded(cache, tmp_path):
    cloud, run_dir = tmp_path / "cloud", tmp_path / "run"
    cloud.mkdir()
    # a training job (72 parameter sets) bills 36 s: jobs 1 and 2 fit in 100 s, job 3 would not
    (cloud / "behaviour.json").write_text(json.dumps({"usage_seconds_per_row": 0.5}))
    stopped = run_cloud(cloud, "run", *TINY, "--backend", "ibm_manila", "--set", "runtime.max_qpu_seconds=100",
                        "--cache-dir", str(cache), "--run-dir", str(run_dir))
    errors = [line for line in stopped.stderr.splitlines() if line.startswith("error: ")]
    assert stopped.returncode == 75 and len(errors) == 1 and "runtime.max_qpu_seconds" in errors[0]
    journal = read_journal(run_dir)
    spent = sum(e["quantum_seconds"] for e in journal if e["event"] == "result")
    assert spent == pytest.approx(72) and submissions(cloud) == 2 == sum(e["event"] == "submitted" for e in journal)
    resumed = run_cloud(cloud, "resume", "-q", str(run_dir), "--set", "runtime.max_qpu_seconds=100000")
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    billed = sum(e["quantum_seconds"] for e in read_journal(run_dir) if e["event"] == "result")
    assert summary["quantum"]["qpu_seconds"] == pytest.approx(billed) and billed > 100
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["runtime"]["max_qpu_seconds"] == 100000


def test_resume_refuses_to_change_anything_but_runtime_settings(reference_cloud_run, capsys):
    assert main(["resume", str(reference_cloud_run / "run"), "--set", "train.lr=0.5"]) == 2
    assert "changes runtime settings only" in one_error_line(capsys)


def test_the_token_is_never_written(cache, tmp_path):
    cloud, run_dir = tmp_path / "cloud", tmp_path / "run"
    done = run_cloud(cloud, "run", *TINY, "--backend", "ibm_manila", "--cache-dir", str(cache),
                     "--run-dir", str(run_dir), env_extra={"QISKIT_IBM_TOKEN": TOKEN})
    assert done.returncode == 0, done.stderr
    assert TOKEN not in done.stdout and TOKEN not in done.stderr
    written = [p for folder in (run_dir, cache) for p in folder.rglob("*") if p.is_file()]
    assert any(p.name == "checkpoint.pt" for p in written) and any(p.suffix == ".h5" for p in written)
    for path in written:
        assert TOKEN.encode() not in path.read_bytes(), path


# --- estimate -----------------------------------------------------------------------------------

def test_estimate_counts_what_a_run_then_submits(cache, reference_cloud_run, capsys):
    reference = json.loads((reference_cloud_run / "run" / "summary.json").read_text())
    assert main(["estimate", *TINY, "--backend", "fake_manila", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    whole = next(line for line in out.splitlines() if line.startswith("whole run"))
    jobs, circuits, shots = (int(v.replace(",", "")) for v in whole.split()[-3:])
    assert (jobs, circuits, shots) == (reference["quantum"]["jobs"], reference["quantum"]["circuits"],
                                       reference["quantum"]["shots"])
    assert "QPU time" in out and "whole run" in out.split("QPU time")[1]


@pytest.mark.parametrize("errors, code, submissions_made", [
    ({"1": 503, "2": 429}, 0, 3),     # transient: retried (with jittered backoff) until it goes through
    ({"1": 400}, 75, 1),              # permanent: no retry, the service's message, a resumable stop
])
def test_only_transient_errors_are_retried(cache, tmp_path, capsys, monkeypatch, errors, code, submissions_made):
    cloud = install(tmp_path / "cloud", monkeypatch.setattr)
    (cloud.root / "behaviour.json").write_text(json.dumps({"http_errors": errors}))
    run_dir = tmp_path / "run"
    assert main(["run", *TINY, "--backend", "ibm_manila", "--set", "runtime.retries=3",
                 "--cache-dir", str(cache), "--run-dir", str(run_dir)]) == code
    err = capsys.readouterr().err
    if code:
        [line] = [line for line in err.splitlines() if line.startswith("error: ")]
        assert "400 Client Error" in line and "not retried" in line and f"orchestrate resume {run_dir}" in line
        assert submissions(cloud.root) == submissions_made
    else:
        assert submissions(cloud.root) >= submissions_made
