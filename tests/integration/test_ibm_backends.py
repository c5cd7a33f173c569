"""IBM Quantum backends: fake devices in qiskit-ibm-runtime's local testing mode, and `ibm_<device>`
through the real qiskit-ibm-runtime client against a local IBM Quantum Platform over HTTP
(tests/support/ibm_platform.py: IAM, backends, jobs, sessions, usage, the Open plan's rules, faults,
and a ledger of every job it accepted). Nothing but the network's far end is replaced (what needs no
run: tests/unit/test_ibm_backends_local.py, tests/unit/test_billing.py).

The runs are tiny (2 qubits, depth 1, 60 SMS messages) because every job is a noisy simulation
of a real device. The vectors are embedded once, in-process; subprocess runs hit that cache and
never start Ray. The platform runs in this process (its simulations on one thread of their own);
subprocess clients talk to it over loopback HTTP, so a client can be killed while the service
keeps its jobs.
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
from tests.support.ibm import TOKEN, one_error_line
from tests.support.ibm_platform import OpenPlanLimits, start_platform

REPO = Path(__file__).resolve().parents[2]
TINY = ["--limit", "60", "--epochs", "1", "-q", "--set", "quantum.n_qubits=2", "--set", "quantum.depth=1",
        "--set", "train.batch_size=8", "--set", "quantum.shots=200", "--set", "quantum.seed=5",
        "--set", "runtime.retry_backoff_seconds=0",
        "--set", "hardware.plan=false"]   # every step on the device: the journal's mechanics (tests/integration/test_planned_run.py: phases)
DEVICE = "ibm_fez"
NO_RATE_LIMIT = OpenPlanLimits(jobs_per_minute=10_000)   # the 5-a-minute rule has its own test


@pytest.fixture(scope="module")
def cache(ray_session, tmp_path_factory):
    """The tiny runs' vectors, embedded once on the shared Ray session."""
    cache_dir = tmp_path_factory.mktemp("ibm-cache")
    assert main(["embed", "-q", "--limit", "60", "--cache-dir", str(cache_dir)]) == 0
    return cache_dir


def client_environment(platform) -> dict:
    """What a user's shell would export to reach the platform: the account and where the client's
    IAM and instance lookups go."""
    return {**platform.environment, **platform.account_environment}


@pytest.fixture
def platform(tmp_path, monkeypatch):
    """A paid-plan platform of this test's own (its ledger counts this test's jobs only), with the
    environment pointing this process's client at it."""
    with start_platform(tmp_path / "platform", plan="paid", token=TOKEN, set_environment=False) as served:
        for name, value in client_environment(served).items():
            monkeypatch.setenv(name, value)
        yield served


@pytest.fixture
def open_plan(tmp_path, monkeypatch):
    with start_platform(tmp_path / "platform", plan="open", token=TOKEN, open_limits=NO_RATE_LIMIT,
                        set_environment=False) as served:
        for name, value in client_environment(served).items():
            monkeypatch.setenv(name, value)
        yield served


def jobs(platform) -> list[dict]:
    return [job for job in platform.ledger() if not job.get("synthetic")]


def duplicates(platform) -> int:
    """Jobs the service ran (and billed) more than once for the same work: the same digest tag."""
    tags = [tuple(job["tags"]) for job in jobs(platform)]
    return len(tags) - len(set(tags))


def read_journal(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "jobs.jsonl").read_text().splitlines()]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from orchestrator.cli import main; sys.exit(main(sys.argv[1:]))", *args]


def run_cli(platform, *args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **client_environment(platform), **(env_extra or {})}
    return subprocess.run(cli(*args), cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def tiny_run(platform, cache: Path, run_dir: Path, *extra: str, args=TINY) -> subprocess.CompletedProcess:
    return run_cli(platform, "run", *args, "--backend", DEVICE, *extra, "--cache-dir", str(cache),
                   "--run-dir", str(run_dir))


def summary_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def same_numbers(summary: dict, reference: dict, keys=("test", "classical_baseline", "best", "epochs_run")) -> None:
    for key in keys:
        assert summary[key] == reference[key], key


# --- fake devices, locally ----------------------------------------------------------------------

def test_fake_device_run_goes_through_a_session_and_the_estimator(cache, tmp_path, monkeypatch):
    from orchestrator.quantum import runner
    from orchestrator.quantum.circuits import TranspileCache

    # a cache of its own: another test (an estimate, a plan) may have transpiled this template already
    monkeypatch.setattr(runner, "DEFAULT_TRANSPILE_CACHE", TranspileCache())
    run_dir = tmp_path / "run"
    assert main(["run", *TINY, "--backend", "fake_manila", "--cache-dir", str(cache), "--run-dir", str(run_dir)]) == 0
    summary = summary_of(run_dir)
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


@pytest.mark.parametrize("device", ["fake_miami", "fake_pittsburgh"])   # Nighthawk's square lattice, Heron r3
def test_the_newest_fake_devices_run(cache, tmp_path, device):
    run_dir = tmp_path / "run"
    assert main(["run", *TINY, "--backend", device, "--cache-dir", str(cache), "--run-dir", str(run_dir)]) == 0
    summary = summary_of(run_dir)
    assert summary["backend"] == device and summary["quantum"]["transpilations"] == 1
    assert 0 <= summary["test"]["accuracy"] <= 1


# --- ibm_<device>: credentials, names, listing, the service's address ----------------------------

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


def test_a_retired_device_is_named_with_the_devices_that_exist(cache, platform, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["run", *TINY, "--backend", "ibm_brisbane", "--cache-dir", str(cache), "--run-dir", str(run_dir)]) == 2
    line = one_error_line(capsys)
    assert "'ibm_brisbane' is not available to this account (retired or unknown" in line
    assert "operational backends: ibm_aachen, ibm_berlin, ibm_boston, ibm_fez" in line and "ibm_miami" in line
    assert not run_dir.exists() and not jobs(platform)


def test_backends_lists_the_accounts_devices_with_their_processor_and_queue(platform, capsys):
    assert main(["backends"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["ibm_fez"][1:5] == ["156", "Heron", "r2", "0"] and "online" in rows["ibm_fez"]
    assert rows["ibm_pittsburgh"][1:4] == ["156", "Heron", "r3"] and rows["ibm_miami"][1:4] == ["120", "Nighthawk", "r1"]
    assert "ibm_brisbane" not in rows and rows["fake_brisbane"][1] == "127"     # retired, but still a fake device


def test_resilience_is_the_services_default_on_a_device(platform):
    from orchestrator.config import load_config
    from orchestrator.quantum.backends import make_backend
    from orchestrator.quantum.backends.runtime import estimator_options

    on_device = make_backend(load_config(overrides=[f"quantum.backend={DEVICE}"]))
    assert "resilience_level" not in estimator_options(on_device.runtime, on_device.shots)   # the Estimator's own default
    assert on_device.estimator().options.resilience_level == 1
    on_device.close()


@pytest.mark.parametrize("change, expected", [
    ("url", "could not connect to IBM Quantum at http://127.0.0.1:9/"),
    ("token", "could not connect to IBM Quantum"),
    ("region", "could not connect to IBM Quantum"),
])
def test_a_wrong_url_token_or_region_is_one_line(cache, platform, tmp_path, capsys, monkeypatch, change, expected):
    if change == "url":
        monkeypatch.setenv("QISKIT_IBM_URL", "http://127.0.0.1:9/experimental/api/v1")   # nothing listens there
    elif change == "token":
        monkeypatch.setenv("QISKIT_IBM_TOKEN", "tok-not-the-accounts")
    else:
        monkeypatch.setenv("QISKIT_IBM_INSTANCE", platform.crn.replace(":us-east:", ":eu-de:"))
    run_dir = tmp_path / "run"
    assert main(["run", *TINY, "--backend", DEVICE, "--cache-dir", str(cache), "--run-dir", str(run_dir)]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: {expected}") and TOKEN not in line and "tok-not-the-accounts" not in line
    assert not run_dir.exists() and not jobs(platform)


def test_runtime_url_points_the_client_at_the_service(cache, platform, tmp_path, monkeypatch):
    monkeypatch.delenv("QISKIT_IBM_URL")
    run_dir = tmp_path / "run"
    assert main(["run", *TINY, "--backend", DEVICE, "--set", f"runtime.url={platform.url}", "--set", "train.max_steps=1",
                 "--cache-dir", str(cache), "--run-dir", str(run_dir)]) == 0
    assert len(jobs(platform)) == summary_of(run_dir)["quantum"]["jobs"]
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["runtime"]["url"] == platform.url


def test_least_busy_picks_the_device_with_the_shortest_queue_and_the_run_records_it(cache, platform, tmp_path):
    run_dir = tmp_path / "run"
    assert main(["run", *TINY, "--backend", "ibm_least_busy", "--set", "train.max_steps=1", "--cache-dir", str(cache),
                 "--run-dir", str(run_dir)]) == 0
    picked = yaml.safe_load((run_dir / "config.yaml").read_text())["quantum"]["backend"]
    assert picked.startswith("ibm_") and picked != "ibm_least_busy" and summary_of(run_dir)["backend"] == picked
    assert {job["backend"] for job in jobs(platform)} == {picked}


# --- sessions, the Open plan ------------------------------------------------------------------------

def test_the_session_is_closed_when_a_run_fails(cache, platform, tmp_path, capsys):
    platform.set_faults({"fail_all": True})
    run_dir = tmp_path / "run"
    code = main(["run", *TINY, "--backend", DEVICE, "--set", "runtime.retries=0", "--cache-dir", str(cache),
                 "--run-dir", str(run_dir)])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert code == 75 and len(errors) == 1
    assert "failed 1 time; last:" in errors[0] and f"orchestrate resume {run_dir}" in errors[0]
    [session] = platform.sessions()
    assert session["mode"] == "dedicated" and session["accepting_jobs"] is False and session["closed_at"]
    assert (run_dir / "checkpoint.pt").is_file()


def test_the_session_is_closed_when_a_run_is_interrupted(cache, platform, tmp_path):
    platform.set_faults({"run_only_jobs_up_to": 1})       # the 2nd job stays in the queue
    run_dir = tmp_path / "run"
    process = subprocess.Popen(cli("run", *TINY, "--backend", DEVICE, "--cache-dir", str(cache), "--run-dir",
                                   str(run_dir)), cwd=REPO, env={**os.environ, **client_environment(platform)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_journal(process, run_dir, submitted=2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130 and "orchestrate resume" in err
    [session] = platform.sessions()
    assert session["accepting_jobs"] is False and session["closed_at"]


def test_an_open_plan_account_runs_in_batch_mode_with_one_warning(cache, open_plan, tmp_path, capsys):
    """execution_mode auto (the default): the service refuses the session with its real error; the
    run goes on in batch mode, says so once, and pays for no job twice."""
    run_dir = tmp_path / "run"
    assert main(["run", *TINY, "--backend", DEVICE, "--cache-dir", str(cache), "--run-dir", str(run_dir)]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")]
    assert warnings == [f"warning: {DEVICE}: this account may not open a session (IBM's Open plan allows none); "
                        "running in batch mode instead"]
    summary = summary_of(run_dir)
    assert summary["quantum"]["execution_mode"] == "batch"
    assert len(jobs(open_plan)) == summary["quantum"]["jobs"] and duplicates(open_plan) == 0
    assert {job["mode"] for job in jobs(open_plan)} == {"batch"}
    assert not [event for event in read_journal(run_dir) if event["event"] == "failed"]


def test_a_session_asked_for_explicitly_and_refused_is_one_line(cache, open_plan, tmp_path, capsys):
    code = main(["run", *TINY, "--backend", DEVICE, "--set", "runtime.execution_mode=session",
                 "--cache-dir", str(cache), "--run-dir", str(tmp_path / "run")])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1
    assert f"{DEVICE} refused session mode" in errors[0] and "execution_mode: auto" in errors[0]
    assert not jobs(open_plan) and sum("POST /experimental/api/v1/sessions " in r for r in open_plan.requests()) == 1


def pending_at_most(platform) -> int:
    """The most jobs that were queued or running at once, from the ledger's timestamps."""
    moments = []
    for job in jobs(platform):
        moments += [(job["created_at"], 1), (job["finished_at"], -1)]
    pending = most = 0
    for _, change in sorted(moments, key=lambda m: (m[0], m[1])):
        pending += change
        most = max(most, pending)
    return most


def test_the_open_plans_pending_jobs_limit_is_never_passed(cache, open_plan, tmp_path):
    """A training step split into 5 jobs: the runner keeps 3 pending at once (the plan's limit), so the
    service never refuses one, and the values are those of an unlimited account."""
    open_plan.set_faults({"queue_seconds": 2})       # each job waits in the queue: jobs pile up unless held back
    run_dir = tmp_path / "run"
    split = ["--set", "quantum.max_parameter_sets_per_job=15", "--set", "train.max_steps=2"]
    assert tiny_run(open_plan, cache, run_dir, *split).returncode == 0
    assert pending_at_most(open_plan) == 3 and not any(" 429" in r for r in open_plan.requests())
    assert summary_of(run_dir)["quantum"]["jobs"] == len(jobs(open_plan)) > 3


def test_429_and_the_five_a_minute_rule_are_waited_out_without_failing(cache, tmp_path, monkeypatch):
    with start_platform(tmp_path / "platform", plan="open", token=TOKEN, set_environment=False,
                        open_limits=OpenPlanLimits(jobs_per_minute=3, rate_window_seconds=8)) as served:
        served.set_faults({"http_error": {"method": "POST", "path": "/jobs", "status": 429, "retry_after": 1, "times": 1}})
        run_dir = tmp_path / "run"
        done = tiny_run(served, cache, run_dir, "--set", "runtime.retries=0", "--set", "train.max_steps=3")
        assert done.returncode == 0, done.stderr          # retries=0: a wait the service asks for is no failure
        refused = [r for r in served.requests() if r.startswith("POST /experimental/api/v1/jobs 429")]
        assert len(refused) >= 2 and duplicates(served) == 0    # the fault's, and the 4th creation in the window
        assert len(jobs(served)) == summary_of(run_dir)["quantum"]["jobs"]


def test_usage_prints_the_window_and_what_is_left(open_plan, capsys):
    open_plan.add_past_usage(412.5, days_ago=3)
    assert main(["usage", "--backend", DEVICE, "--json"]) == 0
    usage = json.loads(capsys.readouterr().out)
    assert usage["window"]["consumed_seconds"] == pytest.approx(412.5)
    assert usage["window"]["limit_seconds"] == 600 and usage["window"]["remaining_seconds"] == pytest.approx(187.5)
    assert usage["backend"]["name"] == DEVICE and usage["backend"]["pending_jobs"] == 0
    assert main(["usage"]) == 0
    assert "412.5 s used of 600 s, 187.5 s left" in capsys.readouterr().out


def test_a_plan_needing_more_than_the_window_leaves_is_refused_before_anything_is_written(
        cache, open_plan, tmp_path, capsys):
    open_plan.add_past_usage(598, days_ago=1)
    run_dir = tmp_path / "run"
    planned = TINY[:-2] + ["--set", "hardware.steps=3", "--set", "hardware.batch_size=4"]
    assert main(["run", *planned, "--backend", DEVICE, "--cache-dir", str(cache), "--run-dir", str(run_dir)]) == 2
    [line] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert "the device run needs about" in line and "only 2 s are left in this instance's usage window" in line
    assert not run_dir.exists() and not jobs(open_plan)


def test_an_open_plan_runs_default_budget_is_what_is_left_of_the_window(cache, open_plan, tmp_path):
    open_plan.add_past_usage(585, days_ago=1)
    run_dir = tmp_path / "run"
    assert tiny_run(open_plan, cache, run_dir).returncode == 75          # 15 s: a few jobs, then a resumable stop
    recorded = yaml.safe_load((run_dir / "config.yaml").read_text())["runtime"]["max_qpu_seconds"]
    assert recorded == pytest.approx(15, abs=0.01)
    assert 0 < sum(job["billed_seconds"] for job in jobs(open_plan)) <= 15


# --- billing as IBM bills ----------------------------------------------------------------------------

def test_billed_seconds_are_the_services_and_each_job_is_capped_at_what_the_budget_leaves(cache, platform, tmp_path):
    run_dir = tmp_path / "run"
    stopped = tiny_run(platform, cache, run_dir, "--set", "runtime.max_qpu_seconds=12",
                       "--set", "runtime.execution_mode=batch")
    errors = [line for line in stopped.stderr.splitlines() if line.startswith("error: ")]
    assert stopped.returncode == 75 and len(errors) == 1 and "runtime.max_qpu_seconds" in errors[0]
    served = sorted(jobs(platform), key=lambda job: job["number"])
    results = [e for e in read_journal(run_dir) if e["event"] == "result"]
    assert [e["billed_seconds"] for e in results] == [job["billed_seconds"] for job in served]
    spent = 0.0
    for job in served:                      # the service's own cap: what was left when it was submitted
        assert job["cost"] == int(12 - spent)
        spent += job["billed_seconds"]
    assert spent <= 12
    resumed = run_cli(platform, "resume", "-q", str(run_dir), "--set", "runtime.max_qpu_seconds=100000")
    assert resumed.returncode == 0, resumed.stderr
    summary = summary_of(run_dir)
    assert summary["quantum"]["qpu_seconds"] == pytest.approx(sum(job["billed_seconds"] for job in jobs(platform)))
    per_job = summary["quantum"]["per_job"]
    assert len(per_job) == len(jobs(platform)) and all(j["estimated_seconds"] > 0 for j in per_job)
    assert all(j["queue_seconds"] is not None for j in per_job)


def test_a_dedicated_session_is_billed_its_elapsed_time(cache, platform, tmp_path):
    run_dir = tmp_path / "run"
    assert tiny_run(platform, cache, run_dir, "--set", "runtime.execution_mode=session").returncode == 0
    [session] = platform.sessions()
    summary = summary_of(run_dir)
    job_seconds = sum(job["billed_seconds"] for job in jobs(platform))
    assert {job["billed_to"] for job in jobs(platform)} == {"session"}
    # the session was active between the jobs too: IBM bills that, and so does the budget
    assert summary["quantum"]["qpu_seconds"] > job_seconds
    assert summary["quantum"]["sessions"][0]["session_id"] == session["session_id"]


def test_estimate_is_within_20_percent_of_what_the_run_is_billed(cache, platform, tmp_path, capsys):
    """Resilience level 0: at level 1 the Estimator twirls measurements in randomizations of 64 shots,
    so 200 shots execute as 256 (README: what the estimate leaves out)."""
    run_dir = tmp_path / "run"
    plain = ["--set", "runtime.resilience_level=0", "--set", "runtime.execution_mode=batch"]
    assert main(["estimate", *TINY, *plain, "--backend", DEVICE, "--cache-dir", str(cache), "--json"]) == 0
    estimate = json.loads(capsys.readouterr().out)
    assert main(["run", *TINY, *plain, "--backend", DEVICE, "--cache-dir", str(cache), "--run-dir", str(run_dir)]) == 0
    summary = summary_of(run_dir)
    assert (estimate["run"]["jobs"], estimate["run"]["circuits"], estimate["run"]["shots"]) == \
        (summary["quantum"]["jobs"], summary["quantum"]["circuits"], summary["quantum"]["shots"])
    billed = summary["quantum"]["qpu_seconds"]
    assert billed == pytest.approx(estimate["qpu_seconds"]["run"], rel=0.2), (billed, estimate["qpu_seconds"]["run"])


# --- the job journal: kill -9 with a job in flight, resume re-attaches ----------------------------

def wait_for_journal(process, run_dir: Path, submitted: int, journal_dir: str = ".") -> None:
    deadline = time.monotonic() + 300
    journal = run_dir / journal_dir / "jobs.jsonl"
    while not (journal.is_file() and sum('"submitted"' in line for line in journal.read_text().splitlines()) >= submitted):
        assert process.poll() is None, "the run ended before its job was in flight"
        assert time.monotonic() < deadline
        time.sleep(0.05)


def kill_with_job_in_flight(platform, cache: Path, run_dir: Path, job: int, extra=(), args=TINY,
                            journal_dir: str = ".") -> None:
    """Start a run whose `job`-th job stays in the service's queue; kill -9 the client once that
    job's id is in the journal; then let the service run it."""
    platform.set_faults({"run_only_jobs_up_to": job - 1})
    process = subprocess.Popen(cli("run", *args, "--backend", DEVICE, *extra, "--cache-dir", str(cache),
                                   "--run-dir", str(run_dir)),
                               cwd=REPO, env={**os.environ, **client_environment(platform)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_journal(process, run_dir, job, journal_dir)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    platform.set_faults({})


@pytest.fixture(scope="module")
def reference_run(cache, tmp_path_factory):
    """The undisturbed run the killed ones must equal (the service's noise is seeded by each job's tag)."""
    root = tmp_path_factory.mktemp("reference")
    with start_platform(root / "platform", plan="paid", token=TOKEN, set_environment=False) as served:
        done = tiny_run(served, cache, root / "run", "--set", "train.checkpoint_every=4")
        assert done.returncode == 0, done.stderr
        return {"summary": summary_of(root / "run"), "jobs": len(jobs(served)), "run_dir": root / "run"}


def test_resume_reattaches_to_the_job_in_flight_and_never_pays_twice(cache, reference_run, platform, tmp_path):
    run_dir = tmp_path / "run"
    # checkpoints at steps 0 and 4: jobs 1-2 finish (their values in the run dir), job 3 is in flight
    kill_with_job_in_flight(platform, cache, run_dir, job=3, extra=["--set", "train.checkpoint_every=4"])
    assert len(jobs(platform)) == 3 and not (run_dir / "summary.json").exists()
    done = run_cli(platform, "resume", "-q", str(run_dir))
    assert done.returncode == 0, done.stderr
    assert len(jobs(platform)) == reference_run["jobs"] and duplicates(platform) == 0
    summary = summary_of(run_dir)
    assert summary["quantum"]["jobs_reattached"] == 1 and summary["quantum"]["jobs_from_journal"] == 2
    same_numbers(summary, reference_run["summary"])


def test_a_damaged_checkpoint_falls_back_to_the_one_before_and_the_journal_covers_the_steps_between(
        cache, reference_run, platform, tmp_path):
    """Checkpoints at steps 2 and 4, job 5 in flight, then checkpoint.pt damaged: resume starts at
    step 2 with one warning, takes jobs 3-4 from the journal, re-attaches job 5, pays nothing twice."""
    run_dir = tmp_path / "run"
    kill_with_job_in_flight(platform, cache, run_dir, job=5, extra=["--set", "train.checkpoint_every=2"])
    assert torch.load(run_dir / "checkpoint.pt", weights_only=False)["step"] == 4
    (run_dir / "checkpoint.pt").write_bytes((run_dir / "checkpoint.pt").read_bytes()[:1000])
    done = run_cli(platform, "resume", "-q", str(run_dir))
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "checkpoint.pt is damaged" in warnings[0] and \
        "resuming from checkpoint.previous.pt (step 2)" in warnings[0], done.stderr
    assert len(jobs(platform)) == reference_run["jobs"] and duplicates(platform) == 0
    summary = summary_of(run_dir)
    assert summary["quantum"]["jobs_from_journal"] == 2 and summary["quantum"]["jobs_reattached"] == 1
    same_numbers(summary, reference_run["summary"])


def test_a_kill_between_acceptance_and_journaling_finds_the_job_by_its_tag(cache, reference_run, platform, tmp_path):
    """The client dies after the service accepted its 3rd job and before the job's id reached it:
    resume finds that job by the digest tag it was submitted with, and pays for nothing twice."""
    run_dir = tmp_path / "run"
    platform.set_faults({"hold_job_creation_response": {"seconds": 600, "after_jobs": 2}})
    process = subprocess.Popen(cli("run", *TINY, "--backend", DEVICE, "--set", "train.checkpoint_every=4",
                                   "--cache-dir", str(cache), "--run-dir", str(run_dir)),
                               cwd=REPO, env={**os.environ, **client_environment(platform)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while len(jobs(platform)) < 3:
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    platform.set_faults({})
    journal = read_journal(run_dir)
    assert sum(e["event"] == "intent" for e in journal) == 3 and sum(e["event"] == "submitted" for e in journal) == 2

    done = run_cli(platform, "resume", "-q", str(run_dir))
    assert done.returncode == 0, done.stderr
    assert len(jobs(platform)) == reference_run["jobs"] and duplicates(platform) == 0
    summary = summary_of(run_dir)
    assert summary["quantum"]["jobs_reattached"] == 1
    same_numbers(summary, reference_run["summary"])


def test_a_lost_answer_to_a_job_creation_is_not_submitted_twice(cache, reference_run, platform, tmp_path):
    """The service accepted the job, the connection dropped before its id came back: the client looks
    the job up by its tag instead of submitting it again."""
    run_dir = tmp_path / "run"
    platform.set_faults({"lose_job_creation_response": {"times": 2},
                         "drop_connection": {"method": "GET", "path": "/jobs/*/results", "times": 1}})
    done = tiny_run(platform, cache, run_dir, "--set", "train.checkpoint_every=4")
    assert done.returncode == 0, done.stderr
    assert len(jobs(platform)) == reference_run["jobs"] and duplicates(platform) == 0
    same_numbers(summary_of(run_dir), reference_run["summary"])


def test_a_planned_run_killed_with_a_device_job_in_flight_resumes_without_paying_twice(cache, platform, tmp_path):
    """The plan's device phase keeps the journal: kill -9 with its 2nd job in flight, resume
    re-attaches to it, the budget counts on from the journal, the numbers equal an uninterrupted run's."""
    planned = TINY[:-2] + [                                   # TINY without hardware.plan=false
        "--set", "hardware.steps=3", "--set", "hardware.batch_size=4", "--set", "hardware.eval_shots=100",
        "--set", "runtime.max_qpu_seconds=100000"]
    with start_platform(tmp_path / "reference-platform", plan="paid", token=TOKEN, set_environment=False) as other:
        reference = tiny_run(other, cache, tmp_path / "reference", args=planned)
        assert reference.returncode == 0, reference.stderr
        paid_for = len(jobs(other))
    expected = summary_of(tmp_path / "reference")
    assert paid_for == expected["quantum"]["jobs"] == 1 + 3 + 1 + 1   # validation, 3 steps, validation, test

    run_dir = tmp_path / "run"
    kill_with_job_in_flight(platform, cache, run_dir, job=2, args=planned, journal_dir="phases/3-hardware")
    done = run_cli(platform, "resume", "-q", str(run_dir))
    assert done.returncode == 0, done.stderr
    assert len(jobs(platform)) == paid_for and duplicates(platform) == 0
    summary = summary_of(run_dir)
    assert summary["quantum"]["jobs_reattached"] == 1
    # the killed client's session stayed open until the resume: it billed on, as IBM's does
    assert summary["quantum"]["qpu_seconds"] >= expected["quantum"]["qpu_seconds"]
    same_numbers(summary, expected, keys=("test", "classical_baseline", "best"))
    assert [p["test"] for p in summary["phases"]] == [p["test"] for p in expected["phases"]]


# --- failures -----------------------------------------------------------------------------------

def test_failed_jobs_are_journaled_and_submitted_again(cache, reference_run, platform, tmp_path):
    platform.set_faults({"fail_jobs": [2]})
    run_dir = tmp_path / "run"
    done = tiny_run(platform, cache, run_dir, "--set", "train.checkpoint_every=4")
    assert done.returncode == 0, done.stderr
    failed = [e for e in read_journal(run_dir) if e["event"] == "failed"]
    assert len(failed) == 1 and "failed" in failed[0]["error"]
    assert summary_of(run_dir)["quantum"]["jobs_resubmitted"] == 1
    assert len(jobs(platform)) == reference_run["jobs"] + 1
    assert [job["status"] for job in jobs(platform)].count("Failed") == 1


def test_a_backend_that_keeps_failing_stops_resumably(cache, platform, tmp_path):
    platform.set_faults({"fail_all": True})
    run_dir = tmp_path / "run"
    failing = tiny_run(platform, cache, run_dir, "--set", "runtime.retries=1")
    errors = [line for line in failing.stderr.splitlines() if line.startswith("error: ")]
    assert failing.returncode == 75 and len(errors) == 1      # a resumable stop, not bad input
    assert "failed 2 times" in errors[0] and f"orchestrate resume {run_dir}" in errors[0]
    assert (run_dir / "checkpoint.pt").is_file() and not (run_dir / "summary.json").exists()
    platform.set_faults({})          # the device is back
    resumed = run_cli(platform, "resume", "-q", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    assert (run_dir / "summary.json").is_file()


@pytest.mark.parametrize("fault, code", [
    ([{"method": "POST", "path": "/jobs", "status": 503, "times": 1},
      {"method": "GET", "path": "/jobs/*", "status": 502, "times": 2}], 0),   # transient: retried
    ([{"method": "POST", "path": "/jobs", "status": 400, "times": 1}], 75),  # permanent: a resumable stop
])
def test_only_transient_errors_are_retried(cache, platform, tmp_path, capsys, fault, code):
    platform.set_faults({"http_error": fault})
    run_dir = tmp_path / "run"
    assert main(["run", *TINY, "--backend", DEVICE, "--set", "runtime.retries=3",
                 "--cache-dir", str(cache), "--run-dir", str(run_dir)]) == code
    err = capsys.readouterr().err
    posts = [r for r in platform.requests() if r.startswith("POST /experimental/api/v1/jobs ")]
    if code:
        [line] = [line for line in err.splitlines() if line.startswith("error: ")]
        assert "400 Client Error" in line and "not retried" in line and f"orchestrate resume {run_dir}" in line
        assert len(posts) == 1 and not jobs(platform)
    else:
        assert duplicates(platform) == 0 and len(jobs(platform)) == summary_of(run_dir)["quantum"]["jobs"]


# --- what a run keeps ----------------------------------------------------------------------------

def test_resume_refuses_to_change_anything_but_runtime_settings(reference_run, capsys):
    assert main(["resume", str(reference_run["run_dir"]), "--set", "train.lr=0.5"]) == 2
    assert "changes runtime settings only" in one_error_line(capsys)


def test_the_token_is_never_written(cache, platform, tmp_path):
    run_dir = tmp_path / "run"
    done = tiny_run(platform, cache, run_dir)
    assert done.returncode == 0, done.stderr
    assert TOKEN not in done.stdout and TOKEN not in done.stderr
    written = [p for folder in (run_dir, cache) for p in folder.rglob("*") if p.is_file()]
    assert any(p.name == "checkpoint.pt" for p in written) and any(p.suffix == ".h5" for p in written)
    for path in written:
        assert TOKEN.encode() not in path.read_bytes(), path
