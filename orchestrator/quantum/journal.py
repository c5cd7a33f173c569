"""The job journal of a run on a remote backend: `jobs.jsonl` and `jobs/` in the run dir.

    {"event": "intent",    "request": 12, "index": 0, "digest": "...", "rows": 912, "shots": 1024, ...}
    {"event": "submitted", "request": 12, "index": 0, "job_id": "d1k..."}
    {"event": "result",    "request": 12, "index": 0, "job_id": "d1k...", "file": "jobs/r000012-0.npy",
                           "quantum_seconds": 3.1, "estimated_seconds": 2.9}
    {"event": "failed",    "request": 12, "index": 0, "job_id": "d1k...", "error": "..."}

A job also carries its digest as a tag on the service (runner.job_tag): a client killed after
the service took a job but before its id reached the journal finds the job by that tag on resume.

Every line is appended and fsynced before the runner goes on, and a result's values are
written (atomically) before its line. A resumed run replays its requests from the last
checkpoint with the same request numbers and the same parameter rows, so the runner asks the
journal first: a finished job's values come from `jobs/`, an in-flight job is re-attached by its
id, and only a job that was never submitted is submitted. A torn last line (a kill mid-write)
is ignored. Result files of requests older than the last checkpoint are deleted: no resume can
ask for them again.

The journal also keeps the QPU budget: the seconds spent (as billed, or as estimated where the
backend reports nothing, as in local testing mode) plus the next job's estimate may not pass
`runtime.max_qpu_seconds`.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Optional

import numpy as np

from orchestrator.core.errors import first_line
from orchestrator.core.files import write_bytes_atomically
from orchestrator.quantum.runner import JobHook, JobIntent, RecordedJob
from orchestrator.run_dir import RunDir


class QpuBudgetExceeded(RuntimeError):
    """The next job would take the run past runtime.max_qpu_seconds."""


class JobJournal(JobHook):
    def __init__(self, run_dir: Path, max_qpu_seconds: Optional[float] = None) -> None:
        self.path = Path(run_dir) / RunDir.JOURNAL
        self.results = Path(run_dir) / RunDir.JOB_RESULTS
        self.max_qpu_seconds = max_qpu_seconds
        self.jobs: dict[tuple[int, int], dict] = {}   # (request, index) -> what is known of that job
        end_torn_line(self.path)
        for event in read_events(self.path):
            key = (event["request"], event["index"])
            if event["event"] == "intent":
                self.jobs[key] = job_entry(event["digest"], event.get("rows", 0), event.get("estimated_seconds", 0.0))
            elif key in self.jobs and event["event"] == "submitted":
                self.jobs[key]["job_id"] = event["job_id"]
            elif key in self.jobs and event["event"] == "result":
                self.jobs[key].update(file=event["file"], quantum_seconds=event.get("quantum_seconds"))

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
        if self.max_qpu_seconds is not None and self.spent_seconds() + estimate > self.max_qpu_seconds:
            raise QpuBudgetExceeded(
                f"the next job (about {estimate:.1f} QPU s) would take the run past runtime.max_qpu_seconds "
                f"({self.spent_seconds():.1f} of {self.max_qpu_seconds:g} s spent)")
        self.jobs[(intent.request, intent.index)] = job_entry(intent.digest, intent.rows, estimate)
        self.append({"event": "intent", "request": intent.request, "index": intent.index, "n_jobs": intent.n_jobs,
                     "backend": intent.backend, "rows": intent.rows, "shots": intent.shots,
                     "digest": intent.digest, "estimated_seconds": estimate})

    def after_submit(self, intent: JobIntent, job_id: str) -> None:
        self.jobs[(intent.request, intent.index)]["job_id"] = job_id
        self.append({"event": "submitted", "request": intent.request, "index": intent.index, "job_id": job_id})

    def after_result(self, intent: JobIntent, job_id: str, expectations: np.ndarray,
                     quantum_seconds: Optional[float] = None) -> None:
        name = f"{RunDir.JOB_RESULTS}/r{intent.request:07d}-{intent.index}.npy"
        self.results.mkdir(exist_ok=True)
        buffer = io.BytesIO()
        np.save(buffer, expectations)
        write_bytes_atomically(self.results.parent / name, buffer.getvalue())
        job = self.jobs.setdefault((intent.request, intent.index), job_entry(intent.digest, intent.rows, 0.0))
        job.update(job_id=job_id, file=name, quantum_seconds=quantum_seconds)
        self.append({"event": "result", "request": intent.request, "index": intent.index, "job_id": job_id,
                     "file": name, "quantum_seconds": quantum_seconds,
                     "estimated_seconds": job.get("estimated_seconds", 0.0)})

    def job_failed(self, intent: JobIntent, job_id: str, problem: BaseException) -> None:
        self.append({"event": "failed", "request": intent.request, "index": intent.index, "job_id": job_id,
                     "error": first_line(problem, 500)})

    # --- bookkeeping ------------------------------------------------------------------------------

    def usage(self) -> dict:
        # qpu_seconds None: the backend billed nothing (local testing mode)
        return {"qpu_seconds": self.billed_seconds(), "qpu_seconds_estimated": self.spent_seconds()}

    def spent_seconds(self) -> float:
        """QPU seconds of every job submitted so far: as billed, else as estimated."""
        return sum(job["quantum_seconds"] if job.get("quantum_seconds") is not None else job.get("estimated_seconds", 0.0)
                   for job in self.jobs.values() if job.get("job_id"))

    def billed_seconds(self) -> Optional[float]:
        """QPU seconds the backend reported for finished jobs; None when it reported none (local mode)."""
        billed = [job["quantum_seconds"] for job in self.jobs.values() if job.get("quantum_seconds") is not None]
        return float(sum(billed)) if billed else None

    def billed_seconds_per_row(self) -> Optional[float]:
        billed = [(job["quantum_seconds"], job.get("rows", 0)) for job in self.jobs.values()
                  if job.get("quantum_seconds") is not None]
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


def job_entry(digest: str, rows: int, estimated_seconds: float) -> dict:
    """What the journal knows of a job it has just seen the intent of."""
    return {"digest": digest, "rows": rows, "estimated_seconds": estimated_seconds, "job_id": None, "file": None,
            "quantum_seconds": None}


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
        if isinstance(event, dict) and {"event", "request", "index"} <= set(event):
            events.append(event)
    return events
