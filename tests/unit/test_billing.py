"""The QPU budget as IBM bills it (quantum/journal.py), the job caps it sets (max_execution_time),
and the client waiting out the service's throttling (backends/runtime.py): no service needed."""
import json

import numpy as np
import pytest
import requests

from orchestrator.quantum.backends.runtime import (DEFAULT_THROTTLE_SECONDS, max_execution_time, queue_seconds,
                                                   throttle_seconds)
from orchestrator.quantum.journal import JobJournal, QpuBudgetExceeded
from orchestrator.quantum.runner import JobIntent, JobUsage


def intent(request: int, estimate: float, rows: int = 10) -> JobIntent:
    return JobIntent(request=request, index=0, n_jobs=1, backend="ibm_fez", row_start=0, row_stop=rows, shots=100,
                     digest=f"d{request}", estimated_seconds=estimate)


def run_job(journal: JobJournal, request: int, estimate: float, billed=None, session=None, queue=None) -> None:
    job = intent(request, estimate)
    journal.before_submit(job)
    journal.after_submit(job, f"job-{request}", session)
    journal.after_result(job, f"job-{request}", np.zeros((10, 1)), JobUsage(billed, queue, session))


def test_job_and_batch_mode_count_each_jobs_billed_seconds_else_its_estimate(tmp_path):
    journal = JobJournal(tmp_path, max_qpu_seconds=20)
    run_job(journal, 1, estimate=4.0, billed=5.5, queue=12.0)
    assert journal.spent_seconds() == 5.5 and journal.seconds_left() == 14.5
    pending = intent(2, 3.0)
    journal.before_submit(pending)
    journal.after_submit(pending, "job-2")
    # billed 5.5 s for 10 rows: the next job's estimate rises to the device's own rate
    assert journal.spent_seconds() == pytest.approx(5.5 + 5.5)
    usage = journal.usage()
    assert usage["qpu_seconds"] == 5.5 and usage["queue_seconds"] == 12.0
    assert usage["per_job"][0] == {"job_id": "job-1", "rows": 10, "billed_seconds": 5.5, "estimated_seconds": 4.0,
                                   "queue_seconds": 12.0}
    with pytest.raises(QpuBudgetExceeded, match="past runtime.max_qpu_seconds"):
        journal.before_submit(intent(3, 9.5))


def test_a_dedicated_session_counts_its_elapsed_time_with_the_clients_gaps(tmp_path):
    heard = {"s-1": 30.0}
    journal = JobJournal(tmp_path, max_qpu_seconds=60, session_seconds=lambda ids: {i: heard[i] for i in ids})
    run_job(journal, 1, estimate=4.0, billed=5.0, session="s-1")
    run_job(journal, 2, estimate=4.0, billed=5.0, session="s-1")
    # the session was active 30 s though its jobs used 10 s of the QPU: IBM bills the 30
    assert journal.usage()["qpu_seconds"] == 30.0 and journal.spent_seconds() == 30.0
    heard["s-1"] = 58.0
    with pytest.raises(QpuBudgetExceeded, match="58.0 of 60 s spent"):
        journal.before_submit(intent(3, 4.0))
    # the elapsed time heard is in the journal: a resumed run counts it without asking
    reopened = JobJournal(tmp_path, max_qpu_seconds=60)
    assert reopened.spent_seconds() == 58.0
    events = [json.loads(line) for line in (tmp_path / "jobs.jsonl").read_text().splitlines()]
    assert [e["elapsed_seconds"] for e in events if e["event"] == "session"] == [0.0, 30.0, 58.0]


def test_a_session_never_counts_less_than_its_jobs(tmp_path):
    journal = JobJournal(tmp_path, max_qpu_seconds=100, session_seconds=lambda ids: {})   # the service says nothing
    run_job(journal, 1, estimate=4.0, billed=7.0, session="s-1")
    assert journal.spent_seconds() == 7.0


def test_an_older_journal_with_quantum_seconds_is_read(tmp_path):
    (tmp_path / "jobs.jsonl").write_text(
        json.dumps({"event": "intent", "request": 1, "index": 0, "digest": "d1", "rows": 10, "estimated_seconds": 2.0})
        + "\n" + json.dumps({"event": "submitted", "request": 1, "index": 0, "job_id": "j"}) + "\n"
        + json.dumps({"event": "result", "request": 1, "index": 0, "job_id": "j", "file": "jobs/x.npy",
                      "quantum_seconds": 3.0}) + "\n")
    assert JobJournal(tmp_path).billed_seconds() == 3.0


def test_max_execution_time_is_what_the_budget_leaves_in_whole_seconds():
    assert max_execution_time(None) is None
    assert max_execution_time(41.9) == 41 and max_execution_time(0.2) == 1
    assert max_execution_time(1e9) == 3 * 3600     # the service's own cap


def test_queue_seconds_from_the_jobs_timestamps():
    assert queue_seconds({"created": "2026-12-03T10:00:00Z", "running": "2026-12-03T10:01:30.5Z"}) == 90.5
    assert queue_seconds({"created": "2026-12-03T10:00:00Z"}) is None


def http_error(status: int, headers: dict, text: str = "") -> Exception:
    """An error as qiskit-ibm-runtime raises it: its RequestsApiError, from requests' HTTPError."""
    from qiskit_ibm_runtime.api.exceptions import RequestsApiError

    response = requests.Response()
    response.status_code, response.headers = status, requests.structures.CaseInsensitiveDict(headers)
    try:
        try:
            raise requests.HTTPError(f"{status} Client Error: for url: http://127.0.0.1/jobs", response=response)
        except requests.HTTPError as cause:
            raise RequestsApiError(f"{cause}. {text}", status) from cause
    except RequestsApiError as error:
        return error


def test_the_services_requests_to_wait_are_waited_out_for_as_long_as_it_says():
    assert throttle_seconds(http_error(429, {"Retry-After": "7"})) == 7.0
    assert throttle_seconds(http_error(429, {})) == DEFAULT_THROTTLE_SECONDS
    assert throttle_seconds(http_error(400, {}, "the instance has reached its limit of pending jobs")) \
        == DEFAULT_THROTTLE_SECONDS
    assert throttle_seconds(http_error(503, {"Retry-After": "7"})) is None     # an outage: retried with backoff
    assert throttle_seconds(http_error(403, {}, "not authorized")) is None
