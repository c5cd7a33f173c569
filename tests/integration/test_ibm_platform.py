"""The local IBM Quantum Platform (tests/support/ibm_platform.py) driven by the unmodified
qiskit-ibm-runtime client over real HTTP: IAM and service construction, backends, executor
Estimator jobs in job / Batch / Session mode and their billing, the Open plan's rules, the fault
switches, the ledger, a restart, and the `python -m` entry point."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.support.ibm_platform import (FAILED_JOB_BILLED_S, JOB_OVERHEAD_S, OPERATIONAL_FAMILIES, OpenPlanLimits,
                                        PlatformFiles, restore_environment, seconds_between, start_platform)

REPO = Path(__file__).resolve().parents[2]
PARAMETER_SETS = np.array([[0.1, 0.2], [1.0, 2.0], [0.5, 0.5]])
SHOTS = 100


# --- fixtures and helpers ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def paid(tmp_path_factory):
    with start_platform(tmp_path_factory.mktemp("paid-platform"), plan="paid") as platform:
        yield platform


@pytest.fixture(scope="module")
def service(paid):
    return paid.service()


@pytest.fixture(scope="module")
def fez(service):
    return service.backend("ibm_fez")


@pytest.fixture(scope="module")
def pub(fez):
    """A 2-qubit circuit transpiled for ibm_fez, two observables, three parameter sets."""
    from qiskit import QuantumCircuit
    from qiskit.circuit import ParameterVector
    from qiskit.quantum_info import SparsePauliOp
    from qiskit.transpiler import generate_preset_pass_manager

    theta = ParameterVector("t", 2)
    circuit = QuantumCircuit(2)
    circuit.ry(theta[0], 0)
    circuit.ry(theta[1], 1)
    circuit.cx(0, 1)
    isa = generate_preset_pass_manager(optimization_level=1, backend=fez, seed_transpiler=7).run(circuit)
    observables = [SparsePauliOp("ZZ").apply_layout(isa.layout), SparsePauliOp("XI").apply_layout(isa.layout)]
    return isa, [[observable] for observable in observables], PARAMETER_SETS


def exact_values() -> np.ndarray:
    """<ZZ>, <XI> (qubit 1's X) of ry(a) x ry(b) then CX, noise-free: (2, rows)."""
    a, b = PARAMETER_SETS[:, 0], PARAMETER_SETS[:, 1]
    return np.array([np.cos(b), np.sin(a) * np.sin(b)])


@pytest.fixture(autouse=True)
def no_faults(request):
    """Every test starts and ends with no faults switched on in the platforms it uses."""
    platforms = [request.getfixturevalue(name) for name in ("paid",) if name in request.fixturenames]
    for platform in platforms:
        platform.set_faults({})
    yield
    for platform in platforms:
        platform.set_faults({})


def estimator(mode, tag=None, shots=SHOTS, **options):
    from qiskit_ibm_runtime.executor_estimator import Estimator

    est = Estimator(mode=mode)
    est.options.default_shots = shots
    est.options.resilience_level = 0
    est.options.environment.job_tags = [tag] if tag else []
    est.options.update(**options)
    return est


def model_seconds(pub, est, backend) -> float:
    """The written billing model, from the program the client's own Estimator builds for `pub`."""
    from qiskit_ibm_runtime.executor_estimator.prepare import prepare

    program, _ = prepare([pub], est.options, None, backend=backend)
    target, rep_delay = backend.target, backend.configuration().default_rep_delay
    seconds = JOB_OVERHEAD_S + sum(item.size() * program.shots
                                   * (rep_delay + item.circuit.estimate_duration(target, unit="s"))
                                   for item in program.items)
    return round(seconds, 3)


def record_of(platform, job_id: str) -> dict:
    return next(record for record in platform.ledger() if record["job_id"] == job_id)


def bearer(platform) -> dict:
    grant = {"grant_type": "urn:ibm:params:oauth:grant-type:apikey", "apikey": platform.token}
    token = requests.post(platform.iam_url + "/identity/token", data=grant).json()
    return {"Authorization": f"Bearer {token['access_token']}", "Service-CRN": platform.crn}


def raw(platform, method: str, path: str, headers=None, **kwargs) -> requests.Response:
    """A request to the runtime API by hand (requests, no client), authenticated unless told otherwise."""
    return requests.request(method, platform.url + path, headers=headers or bearer(platform), timeout=30, **kwargs)


def calls(platform) -> list[str]:
    """The requests the platform served, "METHOD path status" without their query strings."""
    split = [line.split() for line in platform.requests()]
    return [f"{method} {path.split('?')[0]} {status}" for method, path, status in split]


def error_code(response: requests.Response) -> int:
    return response.json()["errors"][0]["code"]


# --- IAM, the instance, the service ------------------------------------------------------------

def test_iam_exchanges_the_api_key_for_a_bearer_token_and_refuses_a_wrong_one(paid):
    grant = "urn:ibm:params:oauth:grant-type:apikey"
    good = requests.post(paid.iam_url + "/identity/token", data={"grant_type": grant, "apikey": paid.token})
    assert good.status_code == 200
    assert {"access_token", "refresh_token", "token_type", "expires_in", "expiration"} <= set(good.json())
    wrong = requests.post(paid.iam_url + "/identity/token", data={"grant_type": grant, "apikey": "not-the-key"})
    assert wrong.status_code == 400
    assert (wrong.json()["errorCode"], wrong.json()["errorMessage"]) == \
           ("BXNIM0415E", "Provided API key could not be found.")


def test_a_wrong_token_is_refused_at_service_construction(paid):
    from qiskit_ibm_runtime.accounts.exceptions import InvalidAccountError

    with pytest.raises(InvalidAccountError, match="valid API token"):
        paid.service(token="not-the-key")
    unauthenticated = raw(paid, "GET", "/backends", headers={"Authorization": "Bearer forged", "Service-CRN": paid.crn})
    assert unauthenticated.status_code == 401


def test_the_service_is_built_on_the_instance_by_its_crn(paid, service):
    assert service.active_instance() == paid.crn
    assert [(i["crn"], i["plan"]) for i in service.instances()] == [(paid.crn, "premium")]
    called = calls(paid)
    for expected in ("POST /identity/token 200", "POST /global-search/v3/resources/search 200",
                     "GET /global-catalog/api/v1/local-plan-paid 200", "GET /experimental/api/v1/backends 200"):
        assert expected in called


def test_a_crn_of_another_region_or_an_unknown_one_is_refused(paid):
    from qiskit_ibm_runtime.exceptions import IBMInputValueError

    other_region = paid.crn.replace(":us-east:", ":eu-de:")
    with pytest.raises(IBMInputValueError, match="does not have access to the instance"):
        paid.service(instance=other_region)
    for crn in (other_region, paid.crn.replace(paid.crn.split(":")[7], "00000000-0000-0000-0000-000000000000")):
        refused = raw(paid, "GET", "/backends", headers={**bearer(paid), "Service-CRN": crn})
        assert (refused.status_code, error_code(refused)) == (404, 1279)
        assert crn in refused.json()["errors"][0]["message"]


def test_the_projects_own_connection_lands_on_the_platform_from_the_environment(paid, monkeypatch):
    from orchestrator.config import load_config
    from orchestrator.quantum.backends.ibm import connect_service, describe_backends

    for name, value in {**paid.environment, **paid.account_environment}.items():
        monkeypatch.setenv(name, value)
    service = connect_service(load_config().runtime)
    assert service.active_instance() == paid.crn
    rows = {row["name"]: row for row in describe_backends(service)}
    assert rows["ibm_fez"]["qubits"] == 156 and rows["ibm_fez"]["status"] == "online"


# --- backends ----------------------------------------------------------------------------------

def operational_device_names() -> set[str]:
    """ibm_<device> of every Heron / Nighthawk device of the fake provider, read from its conf file."""
    from orchestrator.quantum.backends.devices import fake_device_names, resolve_fake_device

    names = set()
    for fake_name in fake_device_names():
        device = resolve_fake_device(fake_name)
        conf = json.loads((Path(device.dirname) / device.conf_filename).read_text())
        if (conf.get("processor_type") or {}).get("family") in OPERATIONAL_FAMILIES and \
                conf["backend_name"].startswith("ibm_"):
            names.add(conf["backend_name"])
    return names


def test_the_backends_are_the_operational_devices_and_retired_ones_are_not_found(paid, service):
    from qiskit.providers.exceptions import QiskitBackendNotFoundError

    names = {backend.name for backend in service.backends()}
    assert names == operational_device_names()
    assert {"ibm_fez", "ibm_kingston", "ibm_torino", "ibm_miami", "ibm_berlin"} <= names
    assert not names & {"ibm_brisbane", "ibm_sherbrooke", "ibm_manila", "ibm_kyiv"}
    with pytest.raises(QiskitBackendNotFoundError, match="No backend matches"):
        service.backend("ibm_brisbane")
    assert service.least_busy(min_num_qubits=150).name in names
    retired = raw(paid, "GET", "/backends/ibm_brisbane/configuration")
    assert (retired.status_code, error_code(retired)) == (404, 1007)


def test_a_backend_becomes_a_target_and_reports_its_status_and_properties(paid, fez):
    from datetime import datetime, timedelta

    assert fez.target.num_qubits == 156 and "cz" in fez.target.operation_names
    status = fez.status()
    assert status.operational and status.status_msg == "active" and status.pending_jobs == 0
    assert fez.properties(datetime=datetime.now() - timedelta(hours=1)) is not None
    assert any("/backends/ibm_fez/properties?updated_before=" in line for line in paid.requests())


# --- jobs --------------------------------------------------------------------------------------

def test_an_estimator_job_runs_in_job_mode_and_is_billed_by_the_written_model(paid, fez, pub):
    est = estimator(fez, tag="job-mode-1")
    job = est.run([pub])
    values = np.asarray(job.result()[0].data.evs)
    assert values.shape == (2, 3)
    assert np.abs(values - exact_values()).max() < 0.35      # 100 shots of a noisy device
    record = record_of(paid, job.job_id())
    assert (record["status"], record["mode"], record["tags"], record["backend"]) == \
           ("Completed", "job", ["job-mode-1"], "ibm_fez")
    assert job.usage() == record["billed_seconds"] == model_seconds(pub, est, fez)
    metrics = job.metrics()
    assert metrics["usage"] == {"qpu_charge_time_seconds": record["billed_seconds"], "status": "complete"}
    stamps = metrics["timestamps"]
    assert stamps["created"] <= stamps["running"] <= stamps["finished"]
    assert (stamps["created"], stamps["finished"]) == (record["created_at"], record["finished_at"])


def test_a_job_at_the_default_resilience_level_runs_with_measurement_twirling_and_trex(paid, fez, pub):
    est = estimator(fez, tag="resilience-1", resilience_level=1)
    job = est.run([pub])
    assert np.abs(np.asarray(job.result()[0].data.evs) - exact_values()).max() < 0.35
    assert job.usage() == record_of(paid, job.job_id())["billed_seconds"] == model_seconds(pub, est, fez)


def test_the_same_tagged_job_gives_the_same_values(fez, pub):
    first = np.asarray(estimator(fez, tag="replayed").run([pub]).result()[0].data.evs)
    again = np.asarray(estimator(fez, tag="replayed").run([pub]).result()[0].data.evs)
    assert np.array_equal(first, again)


def test_the_ledger_holds_the_newest_record_of_every_job(paid, fez, pub):
    job = estimator(fez, tag="ledgered").run([pub])
    job.result()
    lines = [json.loads(line) for line in (paid.state_dir / "ledger.jsonl").read_text().splitlines()]
    statuses = [line["status"] for line in lines if line["job_id"] == job.job_id()]
    assert statuses[0] == "Queued" and statuses[-1] == "Completed" and "Running" in statuses
    newest = paid.ledger()
    assert len(newest) == len({line["job_id"] for line in lines})
    assert [r["number"] for r in newest] == list(range(1, len(newest) + 1))
    fields = {"job_id", "backend", "tags", "created_at", "status", "billed_seconds", "session_id", "mode"}
    assert all(fields <= set(record) for record in newest)
    assert paid.jobs_with_tag("ledgered") == [record_of(paid, job.job_id())]
    assert PlatformFiles(paid.state_dir).ledger() == newest       # readable from any process


# --- execution modes, finding jobs again, cancelling, usage ---------------------------------

def session_record(platform, session_id: str) -> dict:
    return next(record for record in platform.sessions() if record["session_id"] == session_id)


def charged_seconds(platform) -> float:
    """What the instance is charged, from the ledger and the sessions: job and batch jobs' billed
    seconds, and dedicated sessions' elapsed time."""
    jobs = sum(r["billed_seconds"] for r in platform.ledger() if r["billed_to"] == "job" and r["finished_at"])
    sessions = [s for s in platform.sessions() if s["mode"] == "dedicated"]
    return round(jobs + sum(session_elapsed(platform, s) for s in sessions), 3)


def session_elapsed(platform, session: dict) -> float:
    """The written model: created -> closed or the last job's end, each job holding the QPU for its
    billed seconds (the simulator ran it faster)."""
    jobs = [r for r in platform.ledger() if r["session_id"] == session["session_id"]]
    end = max([session["closed_at"]] + [r["finished_at"] for r in jobs if r["finished_at"]])
    held = sum(max(0.0, r["billed_seconds"] - seconds_between(r["running_at"], r["finished_at"]))
               for r in jobs if r["running_at"] and r["finished_at"])
    return round(seconds_between(session["created_at"], end) + held, 3)


def test_jobs_run_in_a_batch_which_reports_their_qpu_seconds(paid, fez, pub):
    from qiskit_ibm_runtime import Batch

    with Batch(backend=fez) as batch:
        est = estimator(batch, tag="batched")
        jobs = [est.run([pub]), est.run([pub])]
        assert all(np.asarray(job.result()[0].data.evs).shape == (2, 3) for job in jobs)
    records = [record_of(paid, job.job_id()) for job in jobs]
    assert all((r["session_id"], r["mode"], r["billed_to"]) == (batch.session_id, "batch", "job") for r in records)
    assert all(job.session_id == batch.session_id for job in jobs)
    details = batch.details()
    assert (details["mode"], details["state"], details["accepting_jobs"]) == ("batch", "closed", False)
    assert details["usage_time"] == batch.usage() == round(sum(r["billed_seconds"] for r in records), 3)
    assert batch.status() == "Closed"


def test_a_cancelled_batch_cancels_its_queued_jobs(paid, fez, pub):
    from qiskit_ibm_runtime import Batch

    paid.set_faults({"queue_seconds": 60})
    batch = Batch(backend=fez)
    job = estimator(batch, tag="in-a-cancelled-batch").run([pub])
    batch.cancel()
    assert record_of(paid, job.job_id())["status"] == "Cancelled"
    assert (batch.details()["state"], job.status()) == ("closed", "CANCELLED")


def test_a_dedicated_session_on_the_paid_plan_is_billed_its_elapsed_time(paid, service, fez, pub):
    from qiskit_ibm_runtime import Session

    with Session(backend=fez) as session:
        job = estimator(session, tag="in-a-session").run([pub])
        job.result()
        assert session.status() == "In progress, accepting new jobs"
    record, kept = record_of(paid, job.job_id()), session_record(paid, session.session_id)
    assert (record["mode"], record["billed_to"], kept["state"]) == ("dedicated", "session", "closed")
    assert job.usage() == record["billed_seconds"] > 0            # its own QPU seconds, still reported
    elapsed = session_elapsed(paid, kept)       # created -> closed, which came after its job's end
    assert elapsed >= round(seconds_between(kept["created_at"], record["finished_at"]), 3) > 0
    assert elapsed >= record["billed_seconds"]       # never less than the QPU time its job held
    details = session.details()
    assert (details["mode"], details["state"]) == ("dedicated", "closed")
    assert details["usage_time"] == session.usage() == elapsed
    usage = service.usage()
    assert usage["usage_consumed_seconds"] == charged_seconds(paid)
    assert "usage_limit_seconds" not in usage and "usage_remaining_seconds" not in usage


def test_a_job_is_found_by_its_tag_newest_first_and_reattached_by_its_id(service, fez, pub):
    older, newer = (estimator(fez, tag="found-by-tag").run([pub]) for _ in range(2))
    values = np.asarray(newer.result()[0].data.evs)
    older.result()
    assert [job.job_id() for job in service.jobs(job_tags=["found-by-tag"], limit=1)] == [newer.job_id()]
    assert [job.job_id() for job in service.jobs(job_tags=["found-by-tag"])] == [newer.job_id(), older.job_id()]
    assert service.jobs(job_tags=["found-by-tag", "and-another"]) == []
    again = service.job(newer.job_id())
    assert (again.status(), again.tags, again.primitive_id) == ("DONE", ["found-by-tag"], "executor")
    assert np.array_equal(np.asarray(again.result()[0].data.evs), values)
    assert again.usage() == newer.usage()
    assert sorted(again.update_tags(["found-by-tag", "retagged"])) == ["found-by-tag", "retagged"]
    assert [job.job_id() for job in service.jobs(job_tags=["retagged"])] == [newer.job_id()]
    service.delete_job(older.job_id())
    assert [job.job_id() for job in service.jobs(job_tags=["found-by-tag"])] == [newer.job_id()]


def test_an_unknown_job_id_is_not_found(paid, service):
    from qiskit_ibm_runtime.exceptions import RuntimeJobNotFound

    with pytest.raises(RuntimeJobNotFound, match="Job not found"):
        service.job("d0000000000000000000")
    missing = raw(paid, "GET", "/jobs/d0000000000000000000")
    assert (missing.status_code, error_code(missing)) == (404, 3250)


def test_a_queued_job_is_cancelled_and_bills_nothing(paid, service, fez, pub):
    from qiskit_ibm_runtime.exceptions import RuntimeInvalidStateError

    paid.set_faults({"queue_seconds": 60})
    job = estimator(fez, tag="cancelled").run([pub])
    assert job.status() == "QUEUED"
    assert fez.status().pending_jobs >= 1
    job.cancel()
    assert service.job(job.job_id()).status() == "CANCELLED"
    record = record_of(paid, job.job_id())
    assert (record["status"], record["billed_seconds"]) == ("Cancelled", 0.0)
    with pytest.raises(RuntimeInvalidStateError, match="cannot be cancelled"):
        service.job(job.job_id()).cancel()


# --- the Open plan -----------------------------------------------------------------------------

@pytest.fixture
def open_plan(tmp_path):
    """start(**limits) -> (platform, service, ibm_fez) of an Open-plan platform, stopped after the test."""
    platforms = []

    def start(**limits):
        platform = start_platform(tmp_path / f"open-{len(platforms)}", plan="open",
                                  open_limits=OpenPlanLimits(**limits))
        platforms.append(platform)
        service = platform.service()
        return platform, service, service.backend("ibm_fez")

    yield start
    for platform in reversed(platforms):
        platform.stop()


def test_the_open_plan_refuses_a_dedicated_session_and_allows_a_batch(open_plan, pub):
    from qiskit_ibm_runtime import Batch, Session
    from qiskit_ibm_runtime.api.exceptions import RequestsApiError

    from orchestrator.quantum.backends.runtime import is_mode_refusal

    platform, service, fez = open_plan()
    assert service.instances()[0]["plan"] == "open"
    with pytest.raises(RequestsApiError) as refused:
        Session(backend=fez)
    message = str(refused.value)
    assert "403 Client Error" in message and '"code": 1352' in message
    assert "You are not authorized to run a session when using the open plan." in message
    assert is_mode_refusal(refused.value)          # what the project's execution_mode auto falls back on
    assert platform.sessions() == []
    with Batch(backend=fez) as batch:
        job = estimator(batch, tag="open-batch").run([pub])
        assert np.asarray(job.result()[0].data.evs).shape == (2, 3)
    assert record_of(platform, job.job_id())["mode"] == "batch"


def test_the_open_plan_refuses_a_job_beyond_its_pending_jobs(open_plan, pub):
    from qiskit_ibm_runtime.exceptions import IBMRuntimeError

    platform, service, fez = open_plan()
    platform.set_faults({"queue_seconds": 60})
    est = estimator(fez, tag="pending")
    jobs = [est.run([pub]) for _ in range(3)]
    with pytest.raises(IBMRuntimeError, match="429 Client Error") as refused:
        est.run([pub])
    assert '"code": 1012' in str(refused.value) and "maximum number of pending jobs (3)" in str(refused.value)
    assert len(platform.jobs_with_tag("pending")) == 3
    jobs[0].cancel()
    est.run([pub]).cancel()                      # a pending slot freed: accepted again
    for job in jobs[1:]:
        job.cancel()


def test_the_open_plan_refuses_jobs_once_its_600_seconds_in_28_days_are_used(open_plan, pub):
    from qiskit_ibm_runtime.exceptions import IBMRuntimeError

    platform, service, fez = open_plan()
    platform.add_past_usage(598.0, days_ago=3)
    platform.add_past_usage(500.0, days_ago=30)              # outside the rolling window
    usage = service.usage()
    assert (usage["usage_consumed_seconds"], usage["usage_limit_seconds"]) == (598.0, 600.0)
    assert (usage["usage_remaining_seconds"], usage["usage_limit_reached"]) == (2.0, False)
    est = estimator(fez, tag="last-seconds")
    job = est.run([pub])
    job.result()
    usage = service.usage()
    assert usage["usage_consumed_seconds"] == round(598.0 + job.usage(), 3)
    assert (usage["usage_remaining_seconds"], usage["usage_limit_reached"]) == (0, True)
    with pytest.warns(UserWarning, match="met its usage limit"), \
            pytest.raises(IBMRuntimeError, match="403 Client Error") as refused:
        est.run([pub])
    assert '"code": 1350' in str(refused.value) and "600 s of QPU time" in str(refused.value)


def test_the_open_plan_allows_five_job_creations_a_minute(open_plan, pub):
    from qiskit_ibm_runtime.exceptions import IBMRuntimeError

    platform, service, fez = open_plan(pending_jobs=50)
    est = estimator(fez, tag="rate")
    first = est.run([pub])
    params = raw(platform, "GET", f"/jobs/{first.job_id()}").json()["params"]   # as sent (the client decodes them)
    request = {"program_id": "executor", "backend": "ibm_fez", "params": params, "tags": ["rate"]}
    accepted = [raw(platform, "POST", "/jobs", json=request) for _ in range(4)]
    assert [response.status_code for response in accepted] == [200] * 4
    refused = raw(platform, "POST", "/jobs", json=request)
    assert (refused.status_code, error_code(refused)) == (429, 1202)
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    with pytest.raises(IBMRuntimeError, match="429 Client Error"):
        est.run([pub])
    assert len(platform.jobs_with_tag("rate")) == 5
    platform.wait_idle()


# --- fault switches ----------------------------------------------------------------------------

def count(platform, line: str) -> int:
    return calls(platform).count(line)


def test_a_503_on_job_creation_is_retried_by_the_client_and_makes_one_job(paid, fez, pub):
    before = count(paid, "POST /experimental/api/v1/jobs 503")
    paid.set_faults({"http_error": {"method": "POST", "path": "/jobs", "status": 503, "times": 2}})
    job = estimator(fez, tag="after-503s").run([pub])
    assert count(paid, "POST /experimental/api/v1/jobs 503") - before == 2
    assert [r["job_id"] for r in paid.jobs_with_tag("after-503s")] == [job.job_id()]
    assert paid.faults() == {}                          # the rule was used up and removed
    job.result()


def test_a_502_while_polling_is_retried_by_the_client(paid, fez, pub):
    job = estimator(fez, tag="after-a-502").run([pub])
    paid.set_faults({"http_error": {"method": "GET", "path": "/jobs/*", "status": 502, "times": 1}})
    assert np.asarray(job.result()[0].data.evs).shape == (2, 3)
    assert any(line.startswith(f"GET /experimental/api/v1/jobs/{job.job_id()}") and line.endswith(" 502")
               for line in calls(paid))


def test_a_429_on_job_creation_reaches_the_client_with_its_retry_after(paid, fez, pub):
    from qiskit_ibm_runtime.exceptions import IBMRuntimeError

    from orchestrator.quantum.backends.runtime import is_transient

    paid.set_faults({"http_error": {"method": "POST", "path": "/jobs", "status": 429, "retry_after": 7, "times": 2}})
    with pytest.raises(IBMRuntimeError, match="429 Client Error") as refused:
        estimator(fez, tag="after-a-429").run([pub])
    assert is_transient(refused.value)
    limited = raw(paid, "POST", "/jobs", json={})
    assert (limited.status_code, limited.headers["Retry-After"], error_code(limited)) == (429, "7", 1202)
    assert paid.jobs_with_tag("after-a-429") == []


def test_a_connection_dropped_mid_response_is_seen_by_the_client(paid, fez, pub):
    from qiskit_ibm_runtime.exceptions import IBMRuntimeError

    job = estimator(fez, tag="dropped").run([pub])
    job.result()
    paid.set_faults({"drop_connection": {"method": "GET", "path": "/jobs/*/metrics", "times": 1}})
    with pytest.raises(IBMRuntimeError, match="Failed to get job metadata"):
        job.metrics()
    assert job.metrics()["usage"]["status"] == "complete"
    # dropped before a byte of the answer, a GET is retried by the client's HTTP layer unseen
    paid.set_faults({"drop_connection": {"method": "GET", "path": "/jobs/*/metrics", "times": 1,
                                         "when": "before_response"}})
    assert job.usage() == record_of(paid, job.job_id())["billed_seconds"]
    assert f"GET /experimental/api/v1/jobs/{job.job_id()}/metrics dropped" in calls(paid)


def test_a_lost_job_creation_response_leaves_a_job_the_client_finds_by_its_tag(paid, service, fez, pub):
    from qiskit_ibm_runtime.exceptions import IBMRuntimeError

    paid.set_faults({"lose_job_creation_response": {"times": 1}})
    with pytest.raises(IBMRuntimeError, match="Failed to run program"):
        estimator(fez, tag="lost-response").run([pub])
    [record] = paid.jobs_with_tag("lost-response")
    [found] = service.jobs(job_tags=["lost-response"], limit=1)
    assert found.job_id() == record["job_id"]
    assert np.asarray(found.result()[0].data.evs).shape == (2, 3)


def test_slow_responses_and_queued_jobs(paid, fez, pub):
    paid.set_faults({"slow_seconds": 0.4})
    started = time.monotonic()
    fez.status()
    assert time.monotonic() - started >= 0.4
    paid.set_faults({"queue_seconds": 1.5})
    job = estimator(fez, tag="queued-a-while").run([pub])
    assert job.status() == "QUEUED"
    job.result()
    stamps = job.metrics()["timestamps"]
    assert seconds_between(stamps["created"], stamps["running"]) >= 1.5


def test_a_job_that_fails_on_the_device_is_failed_for_the_client(paid, service, fez, pub):
    from qiskit_ibm_runtime.exceptions import RuntimeJobFailureError

    number = 1 + sum(1 for record in paid.ledger() if not record["synthetic"])
    paid.set_faults({"fail_jobs": [number]})
    job = estimator(fez, tag="fails").run([pub])
    with pytest.raises(RuntimeJobFailureError, match="Error code 5203; The job failed on the device"):
        job.result()
    assert job.status() == "ERROR"
    record = record_of(paid, job.job_id())
    assert (record["number"], record["status"], record["billed_seconds"]) == (number, "Failed", FAILED_JOB_BILLED_S)
    assert job.usage() == FAILED_JOB_BILLED_S
    assert "The job failed on the device" in raw(paid, "GET", f"/jobs/{job.job_id()}/results").text
    paid.set_faults({"fail_all": True})
    with pytest.raises(RuntimeJobFailureError):
        estimator(fez, tag="fails-too").run([pub]).result()


def test_a_job_beyond_its_max_execution_time_is_cancelled_as_ran_too_long(paid, fez, pub):
    from qiskit_ibm_runtime.exceptions import RuntimeJobMaxTimeoutError

    est = estimator(fez, tag="too-long")
    est.options.max_execution_time = 1
    job = est.run([pub])
    with pytest.raises(RuntimeJobMaxTimeoutError):
        job.result()
    record = record_of(paid, job.job_id())
    assert (record["status"], record["reason_code"], record["billed_seconds"], record["cost"]) == \
           ("Cancelled", 1305, 1.0, 1)


# --- across processes and restarts -------------------------------------------------------------

CLIENT_SCRIPT = """
import sys, time
import numpy as np
from qiskit import QuantumCircuit
from qiskit.transpiler import generate_preset_pass_manager
from qiskit.quantum_info import SparsePauliOp
from qiskit_ibm_runtime import QiskitRuntimeService
from qiskit_ibm_runtime.executor_estimator import Estimator

url, token, crn, tag = sys.argv[1:]
backend = QiskitRuntimeService(channel="ibm_quantum_platform", token=token, instance=crn, url=url).backend("ibm_fez")
circuit = QuantumCircuit(2)
circuit.h(0)
circuit.cx(0, 1)
isa = generate_preset_pass_manager(optimization_level=1, backend=backend, seed_transpiler=7).run(circuit)
estimator = Estimator(mode=backend)
estimator.options.default_shots = 100
estimator.options.resilience_level = 0
estimator.options.environment.job_tags = [tag]
job = estimator.run([(isa, SparsePauliOp("ZZ").apply_layout(isa.layout))])
print(job.job_id(), flush=True)
time.sleep(120)
"""


def test_a_killed_client_leaves_its_job_on_the_platform_for_the_next_client(paid, service, tmp_path):
    script = tmp_path / "client.py"
    script.write_text(CLIENT_SCRIPT)
    client = subprocess.Popen([sys.executable, str(script), paid.url, paid.token, paid.crn, "killed-client"],
                              stdout=subprocess.PIPE, text=True, cwd=REPO,
                              env={**os.environ, **paid.environment})
    try:
        job_id = client.stdout.readline().strip()
    finally:
        client.kill()                                     # SIGKILL
        client.wait(timeout=30)
    assert client.returncode == -9 and job_id
    [found] = service.jobs(job_tags=["killed-client"])
    assert found.job_id() == job_id
    assert np.asarray(found.result()[0].data.evs).shape == ()


def test_a_restarted_platform_continues_from_its_state(tmp_path, fez, pub):
    state = tmp_path / "restarted"
    with start_platform(state, plan="paid") as first:
        service = first.service()
        backend = service.backend("ibm_fez")
        done = estimator(backend, tag="before-restart").run([pub])
        values = np.asarray(done.result()[0].data.evs)
        first.set_faults({"queue_seconds": 1.0})
        waiting = estimator(backend, tag="queued-at-restart").run([pub])
        identity = (first.token, first.crn)
    with start_platform(state, plan="paid") as second:
        assert (second.token, second.crn) == identity
        service = second.service()
        assert np.array_equal(np.asarray(service.job(done.job_id()).result()[0].data.evs), values)
        assert service.job(waiting.job_id()).result() is not None      # it ran after the restart
        assert [r["status"] for r in second.ledger()] == ["Completed", "Completed"]


def test_the_command_line_serves_until_terminated_and_shares_its_state_folder(tmp_path):
    from qiskit_ibm_runtime import QiskitRuntimeService
    from qiskit_ibm_runtime.api.exceptions import RequestsApiError

    state = tmp_path / "served"
    server = subprocess.Popen([sys.executable, "-m", "tests.support.ibm_platform", "--port", "0", "--plan", "open",
                               "--state", str(state)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        lines = {}
        while "STATE" not in lines:
            name, _, value = server.stdout.readline().strip().partition("=")
            lines[name] = value
        assert lines["URL"].startswith("http://127.0.0.1:") and lines["URL"].endswith("/experimental/api/v1")
        assert lines["QISKIT_IBM_URL"] == lines["URL"] and lines["PLAN"] == "open"
        environment = {name: lines[name] for name in ("IAM_URL", "GLOBAL_SEARCH_URL", "GLOBAL_CATALOG_URL")}
        saved = {name: os.environ.get(name) for name in environment}
        os.environ.update(environment)
        try:
            service = QiskitRuntimeService(channel="ibm_quantum_platform", token=lines["QISKIT_IBM_TOKEN"],
                                           instance=lines["QISKIT_IBM_INSTANCE"], url=lines["URL"])
        finally:
            restore_environment(saved)
        assert service.instances()[0]["plan"] == "open"
        assert service.usage()["usage_limit_seconds"] == 600
        PlatformFiles(state).set_faults({"http_error": {"path": "/instances/usage", "status": 400, "times": 1}})
        with pytest.raises(RequestsApiError, match="400 Client Error"):
            service.usage()
        assert service.usage()["usage_consumed_seconds"] == 0
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
    assert json.loads((state / "platform.json").read_text())["url"] == lines["URL"]
