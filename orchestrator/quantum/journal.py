"""The job journal of a run on a remote backend: `jobs.jsonl` and `jobs/` in the run dir.

    {"event": "intent",    "request": 12, "index": 0, "digest": "...", "rows": 912, "shots": 1024,
                           "estimated_seconds": 2.9, ...}
    {"event": "submitted", "request": 12, "index": 0, "job_id": "d1k...", "session_id": null}
    {"event": "result",    "request": 12, "index": 0, "job_id": "d1k...", "file": "jobs/r000012-0.npy",
                           "billed_seconds": 3.1, "estimated_seconds": 2.9, "queue_seconds": 41.0}
    {"event": "failed",    "request": 12, "index": 0, "job_id": "d1k...", "error": "..."}
    {"event": "session",   "session_id": "...", "elapsed_seconds": 75.2}

A job also carries its digest as a tag on the service (runner.job_tag): a client killed after
the service took a job but before its id reached the journal finds the job by that tag on resume.

Every line is appended and fsynced before the runner goes on, and a result's values are
written (atomically) before its line. A resumed run replays its requests from the last
checkpoint with the same request numbers and the same parameter rows, so the runner asks the
journal first: a finished job's values come from `jobs/`, an in-flight job is re-attached by its
id, and only a job that was never submitted is submitted. A torn last line (a kill mid-write)
is ignored. Result files of requests older than the last checkpoint are deleted: no resume can
ask for them again.

The journal also keeps the QPU budget, counted as IBM bills (`spent_seconds`):
    job and batch mode   each job's billed seconds (job.usage()), or its estimate until billed
                         (and where nothing is billed, as in local testing mode)
    a dedicated session  its elapsed active time, client time between jobs included (asked of the
                         service through `session_seconds`), and never less than its jobs' seconds
The spent seconds plus the next job's estimate may not pass `runtime.max_qpu_seconds`, and every
job is submitted with what is left as its `max_execution_time`, so the service enforces the cap too.
"""
from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from orchestrator.core.errors import first_line
from orchestrator.core.files import write_bytes_atomically
from orchestrator.quantum.runner import JobHook, JobIntent, JobUsage, RecordedJob
from orchestrator.run_dir import RunDir


log = logging.getLogger(__name__)

SessionSeconds = Callable[[list], dict]
"""session ids -> {session id: elapsed active seconds as the service reports them}"""


class QpuBudgetExceeded(RuntimeError):
    """The next job would take the run past runtime.max_qpu_seconds."""


class JobJournal(JobHook):
    def __init__(self, run_dir: Path, max_qpu_seconds: Optional[float] = None,
                 session_seconds: Optional[SessionSeconds] = None) -> None:
        self.path = Path(run_dir) / RunDir.JOURNAL
        self.results = Path(run_dir) / RunDir.JOB_RESULTS
        self.max_qpu_seconds = max_qpu_seconds
        self.session_seconds = session_seconds
        self.jobs: dict[tuple[int, int], dict] = {}   # (request, index) -> what is known of that job
        self.sessions: dict[str, float] = {}           # dedicated session id -> elapsed seconds last heard
        end_torn_line(self.path)
        for event in read_events(self.path):
            self.replay(event)

    def replay(self, event: dict) -> None:
        if event["event"] == "session":
            self.sessions[event["session_id"]] = float(event.get("elapsed_seconds") or 0.0)
            return
        key = (event["request"], event["index"])
        if event["event"] == "intent":
            self.jobs[key] = job_entry(event["digest"], event.get("rows", 0), event.get("estimated_seconds", 0.0))
        elif key in self.jobs and event["event"] == "submitted":
            self.jobs[key].update(job_id=event["job_id"], session_id=event.get("session_id"))
        elif key in self.jobs and event["event"] == "result":
            billed = event.get("billed_seconds", event.get("quantum_seconds"))   # the older name
            self.jobs[key].update(file=event["file"], billed_seconds=billed, queue_seconds=event.get("queue_seconds"))

    # --- what the runner calls ---------------------------------------------------------------

    def recorded(self, intent: JobIntent) -> Optional[RecordedJob]:
        job = self.jobs.get((intent.request, intent.index))
        if job is None or job["digest"] != intent.digest:
            return None   # never meant (or another job under that number): submit
        if not job["job_id"]:
            return RecordedJob(None)   # meant, perhaps submitted by a process killed before it journaled the id
        if job["file"]:
            try:
                return RecordedJob(job["job_id"], np.load(self.results.parent / job["file"]))
            except (OSError, ValueError):
                pass      # result file gone or torn: fetch the job again by id
        return RecordedJob(job["job_id"])

    def before_submit(self, intent: JobIntent) -> None:
        estimate = intent.estimated_seconds
        rate = self.billed_seconds_per_row()
        if rate is not None:   # the device's own billing so far beats the model when it is higher
            estimate = max(estimate, rate * intent.rows)
        self.refresh_sessions()
        spent = self.spent_seconds()
        if self.max_qpu_seconds is not None and spent + estimate > self.max_qpu_seconds:
            raise QpuBudgetExceeded(
                f"the next job (about {estimate:.1f} QPU s) would take the run past runtime.max_qpu_seconds "
                f"({spent:.1f} of {self.max_qpu_seconds:g} s spent)")
        self.jobs[(intent.request, intent.index)] = job_entry(intent.digest, intent.rows, estimate)
        self.append({"event": "intent", "request": intent.request, "index": intent.index, "n_jobs": intent.n_jobs,
                     "backend": intent.backend, "rows": intent.rows, "shots": intent.shots,
                     "digest": intent.digest, "estimated_seconds": estimate})

    def seconds_left(self) -> Optional[float]:
        """What the budget leaves once the jobs submitted so far are counted (the next job's cap)."""
        if self.max_qpu_seconds is None:
            return None
        return max(0.0, self.max_qpu_seconds - self.spent_seconds())

    def after_submit(self, intent: JobIntent, job_id: str, session_id: Optional[str] = None) -> None:
        self.jobs[(intent.request, intent.index)].update(job_id=job_id, session_id=session_id)
        if session_id is not None and session_id not in self.sessions:
            self.sessions[session_id] = 0.0
            self.append({"event": "session", "session_id": session_id, "elapsed_seconds": 0.0})
        self.append({"event": "submitted", "request": intent.request, "index": intent.index, "job_id": job_id,
                     "session_id": session_id})

    def after_result(self, intent: JobIntent, job_id: str, expectations: np.ndarray,
                     usage: JobUsage = JobUsage()) -> None:
        name = f"{RunDir.JOB_RESULTS}/r{intent.request:07d}-{intent.index}.npy"
        self.results.mkdir(exist_ok=True)
        buffer = io.BytesIO()
        np.save(buffer, expectations)
        write_bytes_atomically(self.results.parent / name, buffer.getvalue())
        job = self.jobs.setdefault((intent.request, intent.index), job_entry(intent.digest, intent.rows, 0.0))
        job.update(job_id=job_id, file=name, billed_seconds=usage.billed_seconds, queue_seconds=usage.queue_seconds)
        self.append({"event": "result", "request": intent.request, "index": intent.index, "job_id": job_id,
                     "file": name, "billed_seconds": usage.billed_seconds,
                     "estimated_seconds": job.get("estimated_seconds", 0.0), "queue_seconds": usage.queue_seconds})
        if usage.billed_seconds is not None or usage.queue_seconds is not None:
            log.info(f"job {job_id}: {describe_seconds(usage.queue_seconds)} in the queue, "
                     f"{describe_seconds(usage.billed_seconds)} QPU time billed "
                     f"(estimated {job.get('estimated_seconds', 0.0):.1f} s)")

    def job_failed(self, intent: JobIntent, job_id: str, problem: BaseException) -> None:
        self.append({"event": "failed", "request": intent.request, "index": intent.index, "job_id": job_id,
                     "error": first_line(problem, 500)})

    # --- bookkeeping ------------------------------------------------------------------------------

    def refresh_sessions(self) -> None:
        """Ask the service how long each dedicated session of the run has been active; journal changes."""
        if not self.sessions or self.session_seconds is None:
            return
        try:
            heard = self.session_seconds(list(self.sessions))
        except Exception as problem:   # the budget then counts the jobs' seconds: never less than that
            log.warning(f"could not ask the service for the sessions' elapsed time: {first_line(problem)}")
            return
        for session_id, elapsed in heard.items():
            if elapsed is not None and float(elapsed) > self.sessions.get(session_id, 0.0):
                self.sessions[session_id] = float(elapsed)
                self.append({"event": "session", "session_id": session_id, "elapsed_seconds": float(elapsed)})

    def usage(self) -> dict:
        # qpu_seconds None: the backend billed nothing (local testing mode)
        self.refresh_sessions()
        queued = [job["queue_seconds"] for job in self.jobs.values() if job.get("queue_seconds") is not None]
        return {"qpu_seconds": self.billed_seconds(), "qpu_seconds_estimated": self.estimated_seconds(),
                "qpu_seconds_counted": self.spent_seconds(),
                "queue_seconds": float(sum(queued)) if queued else None,
                "sessions": [{"session_id": s, "elapsed_seconds": e} for s, e in self.sessions.items()],
                "per_job": [{"job_id": job["job_id"], "rows": job["rows"], "billed_seconds": job.get("billed_seconds"),
                             "estimated_seconds": job["estimated_seconds"], "queue_seconds": job.get("queue_seconds")}
                            for job in self.jobs.values() if job.get("job_id")]}

    def job_seconds(self, job: dict) -> float:
        billed = job.get("billed_seconds")
        return float(billed) if billed is not None else float(job.get("estimated_seconds", 0.0))

    def spent_seconds(self) -> float:
        """QPU seconds the run is charged for the jobs submitted so far, by the rules in the module
        docstring (a job not yet billed counts as estimated)."""
        submitted = [job for job in self.jobs.values() if job.get("job_id")]
        in_sessions: dict[str, float] = {}
        spent = 0.0
        for job in submitted:
            if job.get("session_id") in self.sessions:
                in_sessions[job["session_id"]] = in_sessions.get(job["session_id"], 0.0) + self.job_seconds(job)
            else:
                spent += self.job_seconds(job)
        return spent + sum(max(self.sessions[s], in_sessions.get(s, 0.0)) for s in self.sessions)

    def estimated_seconds(self) -> float:
        return float(sum(job.get("estimated_seconds", 0.0) for job in self.jobs.values() if job.get("job_id")))

    def billed_seconds(self) -> Optional[float]:
        """QPU seconds the service billed: each job's usage, a dedicated session's elapsed time instead
        of its jobs'; None when it billed nothing (local mode)."""
        billed = [job for job in self.jobs.values() if job.get("billed_seconds") is not None]
        if not billed and not any(self.sessions.values()):
            return None
        outside = sum(job["billed_seconds"] for job in billed if job.get("session_id") not in self.sessions)
        return float(outside + sum(self.sessions.values()))

    def billed_seconds_per_row(self) -> Optional[float]:
        billed = [(job["billed_seconds"], job.get("rows", 0)) for job in self.jobs.values()
                  if job.get("billed_seconds") is not None]
        rows = sum(r for _, r in billed)
        return sum(s for s, _ in billed) / rows if rows else None

    def prune(self, up_to_request: int) -> None:
        """Delete the result files of requests up to `up_to_request`: a checkpoint covers them."""
        for (request, _), job in self.jobs.items():
            if request <= up_to_request and job.get("file"):
                try:
                    os.unlink(self.results.parent / job["file"])
                except FileNotFoundError:
                    pass
                job["file"] = None

    def append(self, event: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as journal:
            journal.write(json.dumps(event) + "\n")
            journal.flush()
            os.fsync(journal.fileno())


def describe_seconds(seconds: Optional[float]) -> str:
    return "?" if seconds is None else f"{seconds:.1f} s"


def job_entry(digest: str, rows: int, estimated_seconds: float) -> dict:
    """What the journal knows of a job it has just seen the intent of."""
    return {"digest": digest, "rows": rows, "estimated_seconds": estimated_seconds, "job_id": None, "file": None,
            "billed_seconds": None, "queue_seconds": None, "session_id": None}


def end_torn_line(path: Path) -> None:
    """Terminate a last line a kill cut short, so the next event starts on a line of its own."""
    if path.is_file() and path.stat().st_size:
        with open(path, "rb+") as journal:
            journal.seek(-1, os.SEEK_END)
            if journal.read(1) != b"\n":
                journal.write(b"\n")


def read_events(path: Path) -> list[dict]:
    """The journal's events in order; a torn or unreadable line (a kill mid-write) is skipped."""
    if not path.is_file():
        return []
    events = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict) and ({"event", "request", "index"} <= set(event)
                                        or (event.get("event") == "session" and "session_id" in event)):
            events.append(event)
    return events
