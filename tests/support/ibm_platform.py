"""A local IBM Quantum Platform over real HTTP, for the unmodified qiskit-ibm-runtime client.

    with start_platform(state_dir, plan="paid") as platform:      # or plan="open"; port=0: a free port
        service = platform.service()     # QiskitRuntimeService(channel="ibm_quantum_platform",
                                         #   token=platform.token, instance=platform.crn, url=platform.url)
                                         #   built with platform.environment set (see below)

    or, as the client is used by hand (start_platform has set GLOBAL_SEARCH_URL and GLOBAL_CATALOG_URL):
        os.environ["IAM_URL"] = platform.iam_url
        service = QiskitRuntimeService(channel="ibm_quantum_platform", token=platform.token,
                                       instance=platform.crn, url=platform.url)

    python -m tests.support.ibm_platform --port P --plan open|paid --state DIR
        prints KEY=value lines (the URL, the IAM URL, the CRN, the token, the environment) on stdout
        and serves until killed; everything it keeps is under DIR, so a server started again on DIR
        continues where the last one stopped (its jobs, results, sessions, ledger, identity).

PUBLIC API
    start_platform(state_dir, plan="paid", port=0, *, token=None, region=None, host="127.0.0.1",
                   open_limits=None, set_environment=True) -> Platform (started; `with` stops it)
        token   the API key (default: the state folder's, else a new one); region (default the
                state's, else us-east) goes into the CRN; open_limits: OpenPlanLimits(pending_jobs=3,
                window_seconds=600, window_days=28, jobs_per_minute=5)
    Platform    .url .iam_url .crn .token .port .plan .region .state_dir .environment (dict)
                .account_environment (QISKIT_IBM_TOKEN / _URL / _INSTANCE / _CHANNEL: with these and
                .environment set, QiskitRuntimeService() with no arguments lands here)
                .service(**overrides) .service_arguments() .client_environment() (context)
                .set_faults(dict) .faults() .ledger() .jobs_with_tag(tag) .sessions() .requests()
                .usage() .add_past_usage(seconds, days_ago=1.0, backend="ibm_fez") .wait_idle()
                .start() .stop()
    PlatformFiles(state_dir)   the same reads and set_faults for a server in another process
    JOB_OVERHEAD_S, FAILED_JOB_BILLED_S, DEFAULT_REP_DELAY_S, MAX_EXECUTION_TIME_S, OPERATIONAL_FAMILIES

THE CLIENT IS NOT PATCHED ANYWHERE. It is pointed here by what it reads itself:
    url            platform.url = http://127.0.0.1:<port>/experimental/api/v1. The client's
                   default_runtime_url_resolver rewrites any URL to https://[region.]quantum.<host>/api/v1
                   (dropping the port) unless it contains "experimental", which it then uses verbatim.
    IAM_URL        platform.iam_url = http://127.0.0.1:<port>: the API key -> bearer token exchange
                   (POST /identity/token, as ibm_cloud_sdk_core's IAMAuthenticator sends it).
    GLOBAL_SEARCH_URL, GLOBAL_CATALOG_URL
                   QiskitRuntimeService(instance=CRN) lists the account's instances at construction
                   (accounts/account.py list_instances: IBM Cloud's Global Search and Global Catalog),
                   at hosts it derives from `url` (api.global-search-tagging.<host>, dropping the port).
                   ibm_cloud_sdk_core's configure_service reads <SERVICE>_URL from the environment for
                   both, so these two variables point them here: the one place the client needs more
                   than a URL and IAM_URL. platform.environment holds all three; start_platform sets
                   them in os.environ while the platform runs (set_environment=False: not), and
                   platform.service() sets them around the construction it does.

What it serves (API paths after /experimental/api/v1; every one needs the bearer token and the
instance's Service-CRN header, as IBM's does):
    IAM            POST /identity/token: grant_type apikey -> access_token (a JWT), refresh_token,
                   token_type, expires_in, expiration; a wrong key -> 400 BXNIM0415E
    instances      POST /global-search/v3/resources/search (the one instance),
                   GET /global-catalog/api/v1/<plan id> (its plan: "open"/free or "premium"/paid)
    backends       GET /backends, /backends/<name>/configuration, /properties (?updated_before: the
                   one snapshot the fake device has), /status (length_queue: its queued + running
                   jobs). The fake provider's devices under their ibm_ names, operational families
                   only (Heron, Nighthawk); Eagle, Falcon, ... are retired: 404 code 1007
    jobs           POST /jobs (program "executor": a QuantumProgram, decoded with the client's own
                   converters and ibm-quantum-schemas models), GET /jobs (tags, backend, pending,
                   session_id, program, created_after/before, limit/skip, sort; newest first; "count"
                   as the client pages by it), GET /jobs/<id>, /results (the executor's result as
                   QuantumProgramResultModel v2.0 JSON, which job.result() decodes and post-processes;
                   a failed job's: 200 with its error text, which the client reads for its message;
                   before the end: 204),
                   /metrics (timestamps created/running/finished, usage.qpu_charge_time_seconds and
                   usage.status pending|complete: what RuntimeJobV2.usage() and metrics() read in 0.51),
                   /logs, POST /jobs/<id>/cancel, PUT /jobs/<id>/tags, DELETE /jobs/<id>
    sessions       POST /sessions (mode batch | dedicated, max_ttl), GET /sessions/<id> (what
                   Session.details() reads: state, accepting_jobs, mode, elapsed_time, timestamps...),
                   PATCH /sessions/<id> {"accepting_jobs": false} (close), DELETE /sessions/<id>/close
                   (cancel: its queued jobs are cancelled)
    usage          GET /instances/usage (service.usage()): usage_consumed_seconds in the current
                   window, usage_period, usage_limit_reached, and usage_limit_seconds on an Open plan
                   (the client adds usage_remaining_seconds itself)

Jobs run on a background worker, one at a time (queued -> running -> completed), in local testing
mode's way (its samplex sampling and Aer sampler) on the device's fake twin cut down to the qubits
that matter (orchestrator/quantum/backends/rehearsal.py's RehearsalDevice, built once per device and
qubits and kept for the process): the qubits of every multi-qubit gate and every qubit an
observable of the estimator acts on. A qubit outside those is only ever touched by one-qubit gates
and a measurement and shares no noise with the others, so leaving it out changes no expectation
value; its measured bits come back 0. The simulator is seeded from sha256 of the job's first tag
(else of its id): the same tagged job gives the same values, on any server, after any restart.

BILLING MODEL (deterministic; seconds, rounded to 0.001):
    a job's QPU seconds = JOB_OVERHEAD_S (2.5)
                          + sum over the program's items of  size x shots x (rep_delay + duration)
        size      the item's executed circuits: parameter sets x measurement bases (x twirling
                  randomizations, x TREX calibration circuits, as the Estimator built the program)
        shots     the program's shots per circuit
        rep_delay the job's execution.rep_delay, else the device's default_rep_delay (250 us)
        duration  circuit.estimate_duration(device.target, unit="s") of the item's circuit
    A job failed on the device bills FAILED_JOB_BILLED_S (the overhead); one cancelled before it
    ran bills 0; one whose QPU seconds exceed its max_execution_time (the request's "cost"; by
    default the plan's MAX_EXECUTION_TIME_S) is cancelled "RAN TOO LONG" (reason code 1305) and
    bills its max_execution_time.
    job and batch mode   the instance is charged each job's QPU seconds (ledger billed_to "job");
                         a batch's details report the sum as its elapsed_time (usage)
    dedicated session    the instance is charged the session's elapsed time instead: from its
                         creation to its close or its last job's end, whichever is later (to now
                         while it is open), each job counted as holding the QPU for its billed
                         seconds (the simulator runs faster than a device); its jobs still report
                         their own QPU seconds in metrics
                         (ledger billed_to "session")
    instance usage       the sum of those charges over the last OpenPlanLimits.window_days (28)

PLANS (IBM's own HTTP error shape: {"errors": [{"code", "message", "solution", "more_info"}], "trace"}):
    paid    no limits
    open    (OpenPlanLimits, each a field: start_platform(open_limits=OpenPlanLimits(...)))
            dedicated session           403 code 1352 "You are not authorized to run a session when
                                        using the open plan." (batch is allowed)
            job creations per minute    5 per API key; the 6th within 60 s: 429 code 1202 with
                                        Retry-After (seconds until a slot frees)
            QPU time                    600 s per rolling 28 days; once used up, job creation:
                                        403 code 1350
            pending jobs                3 queued + running per instance; the next: 429 code 1012
    Where the codes come from: IBM's error-code registry (quantum.cloud.ibm.com/docs/errors: 1007
    backend not found, 1202 too many requests), its older one (qiskit-ibm-runtime docs/errors.rst:
    1012 too many concurrent jobs, 3250 job not found, 4001 session closed, 3208 job not
    cancelled, 5203 failed to run job), replies others measured (1352 open-plan session, 1279
    instance not found for a CRN of another region, 1219 "Error authenticating user."), the
    client's code (1305 ran too long). Made up, IBM documents none: 1350 usage limit reached,
    1216 session not found. The HTTP statuses of the pending-jobs (429) and usage (403)
    refusals are this platform's choice too.

FAULTS: STATE/faults.json, read at every request (platform.set_faults(dict) writes it atomically;
any process may). Every key is optional:
    {"http_error": RULE | [RULE, ...],       RULE: {"method": "POST", "path": "/jobs", "times": 2,
                                                    "status": 503, "retry_after": 1, "code": ...,
                                                    "message": ...}
                                             answer matching requests with that status in IBM's
                                             error shape (429: Retry-After, default 1 s)
     "drop_connection": RULE | [RULE, ...],  RULE: {"method", "path", "times",
                                                    "when": "mid_body" | "before_response"}
                                             serve the request (a POST takes effect), then close
                                             the socket half-way through the answer's body
                                             (default); or close it before a byte of the answer,
                                             unserved
     "hold_job_creation_response": {"seconds": 30, "after_jobs": 2}
                                             accept and ledger every job after the 2nd, then answer
                                             only after that long (a client can be killed in between)
     "run_only_jobs_up_to": 2,               jobs after the 2nd accepted stay queued (in flight) until
                                             the switch is removed
     "lose_job_creation_response": {"times": 1}
                                             accept and ledger the job, then close the connection
                                             before the client hears its id
     "slow_seconds": 0.5,                    every request waits that long before it is answered
     "queue_seconds": 3,                     a job created now waits that long queued before it runs
     "fail_jobs": [2, 5],                    the 2nd and 5th jobs ever accepted (their ledger
                                             "number") fail on the device: status Failed, reason
                                             code 5203; job.result() raises RuntimeJobFailureError
     "fail_all": true}                       every job fails so
    "path" is a glob (fnmatch) on the path after /experimental/api/v1 (the full path for /identity
    and the global search and catalog), "method" any when left out, "times" unlimited when left
    out; a rule with times counts down in the file and is removed at 0.

LEDGER: STATE/ledger.jsonl, one JSON line per accepted job, APPENDED again (never rewritten) each
time the job changes: the last line of a job_id is its current record (platform.ledger() reads so).
Fields: job_id, number (1, 2, ... in acceptance order; 0 for synthetic records), backend,
program_id, tags, session_id, mode (job | batch | dedicated), instance, user_id, created_at,
running_at, finished_at (ISO 8601 UTC), status (Queued | Running | Completed | Failed |
Cancelled), reason, reason_code, billed_seconds, billed_to (job | session), estimated_seconds
(the model's seconds, known at creation), cost (max_execution_time), not_before (end of its
queue_seconds), seed, deleted, cancel_requested (a running job cancelled), synthetic (true for
platform.add_past_usage records: usage from before, no job to serve). A server started again
runs a job it left Running once more (same seed, same values).
Sessions: STATE/sessions.jsonl the same way. Job params and results: STATE/params/, STATE/results/.
Every request is logged to STATE/requests.log ("METHOD path status").

Not modelled: crosstalk (the fake devices have none), session interactive/max TTL expiry, queueing
behind other users, calibration ids (the one properties snapshot), the workloads and analytics
endpoints, programs other than executor (400 code 3211).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import copy
import fcntl
import fnmatch
import hashlib
import json
import math
import os
import re
import secrets
import signal
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator, Optional
from urllib.parse import parse_qs, urlsplit

# --- what the platform is --------------------------------------------------------------------

API_PREFIX = "/experimental/api/v1"
SEARCH_PREFIX = "/global-search"
CATALOG_PREFIX = "/global-catalog/api/v1"
IAM_TOKEN_PATH = "/identity/token"

JOB_OVERHEAD_S = 2.5                 # fixed QPU seconds a job costs (loading, compiling)
FAILED_JOB_BILLED_S = JOB_OVERHEAD_S
DEFAULT_REP_DELAY_S = 250e-6         # when the device does not say
BILLING_DECIMALS = 3
MAX_EXECUTION_TIME_S = {"open": 600, "paid": 10800}
TOKEN_LIFETIME_S = 3600
SESSION_MAX_TTL_S = 28800
SESSION_INTERACTIVE_TTL_S = 60
OPERATIONAL_FAMILIES = ("Heron", "Nighthawk")
PLANS = ("open", "paid")
PLAN_CATALOG = {"open": ("Open", "free"), "paid": ("Premium", "paid")}   # display name, pricing type
TERMINAL = ("Completed", "Failed", "Cancelled")
PENDING = ("Queued", "Running")
THREAD_STACK_BYTES = 256 * 1024 * 1024
MORE_INFO = "https://cloud.ibm.com/apidocs/quantum-computing#error-handling"
FAULT_STATUS_CODES = {429: 1202, 500: 1000, 502: 1000, 503: 1999, 504: 1000}


@dataclass(frozen=True)
class OpenPlanLimits:
    """What an Open-plan instance may do."""

    pending_jobs: int = 3             # queued + running jobs of the instance
    window_seconds: float = 600.0     # billed QPU seconds per window
    window_days: float = 28.0         # the rolling window
    jobs_per_minute: int = 5          # job creations per API key
    rate_window_seconds: float = 60.0  # the "minute" of that rule (a test may shorten it)


# --- errors in IBM's shapes ------------------------------------------------------------------

class ApiError(Exception):
    """An error answer of the runtime API: {"errors": [...], "trace": ...}."""

    def __init__(self, status: int, code: int, message: str, solution: Optional[str] = None,
                 headers: Optional[dict] = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.solution = status, code, message, solution
        self.headers = headers or {}

    def body(self) -> dict:
        error = {"code": self.code, "message": self.message, "more_info": MORE_INFO}
        if self.solution:
            error["solution"] = self.solution
        return {"errors": [error], "trace": str(uuid.uuid4())}


class IamError(ApiError):
    """An error answer of IBM Cloud IAM: {"errorCode", "errorMessage", "context"}."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(status, 0, message)
        self.error_code = error_code

    def body(self) -> dict:
        return {"errorCode": self.error_code, "errorMessage": self.message,
                "context": {"requestId": uuid.uuid4().hex, "requestType": "incoming.Identity_Token",
                            "url": "local IBM Quantum Platform", "locale": "en_US"}}


def not_authenticated() -> ApiError:
    return ApiError(401, 1219, "Error authenticating user.", "Check your API key, then try again.")


def instance_not_found(crn: str) -> ApiError:
    return ApiError(404, 1279, f"Instance {crn} not found.",
                    "Check the instance CRN, and that the API URL is of the instance's region.")


def backend_not_found(name: str) -> ApiError:
    return ApiError(404, 1007, f"Backend {name} not found.",
                    "Verify that the correct backend name was specified; QiskitRuntimeService.backends() "
                    "lists the backends you have access to.")


def job_not_found(job_id: str) -> ApiError:
    return ApiError(404, 3250, f"Job {job_id} not found.", "Check the job ID to query.")


def session_not_found(session_id: str) -> ApiError:
    return ApiError(404, 1216, f"Session {session_id} not found.", "Check the session ID.")


def invalid_job(message: str) -> ApiError:
    return ApiError(400, 3211, f"Job not valid: {message}", "Check the job sent.")


# --- time --------------------------------------------------------------------------------------

def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: Optional[datetime]) -> Optional[str]:
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_iso(text: Optional[str]) -> Optional[datetime]:
    if not text:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def seconds_between(start: Optional[str], end: Optional[str]) -> float:
    return (parse_iso(end) - parse_iso(start)).total_seconds()


# --- devices -----------------------------------------------------------------------------------

class DeviceCatalog:
    """The fake provider's devices under their service names (ibm_fez for FakeFez), operational
    families only; their raw configuration and properties JSON as the service sends them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._names: Optional[dict[str, str]] = None      # ibm name -> fake device name
        self._devices: dict[str, Any] = {}
        self._raw: dict[tuple[str, str], dict] = {}

    def names(self) -> dict[str, str]:
        with self._lock:
            if self._names is None:
                self._names = dict(sorted(self._operational().items()))
            return self._names

    @staticmethod
    def _operational() -> dict[str, str]:
        from orchestrator.quantum.backends.devices import fake_device_class, fake_device_names

        found = {}
        for fake_name in fake_device_names():
            device = fake_device_class(fake_name)     # its files, without building it
            conf = json.loads((Path(device.dirname) / device.conf_filename).read_text())
            family = (conf.get("processor_type") or {}).get("family")
            if family in OPERATIONAL_FAMILIES and conf.get("backend_name", "").startswith("ibm_"):
                found[conf["backend_name"]] = fake_name
        return found

    def require(self, name: Optional[str]) -> str:
        if not name or name not in self.names():
            raise backend_not_found(name or "")
        return name

    def device(self, name: str):
        """The fake twin of `name` (one per process: its target is built once)."""
        from orchestrator.quantum.backends.devices import resolve_fake_device

        fake_name = self.names()[self.require(name)]
        with self._lock:
            if name not in self._devices:
                self._devices[name] = resolve_fake_device(fake_name)
            return self._devices[name]

    def raw(self, name: str, kind: str) -> dict:
        """The device's conf_*.json ("configuration") or props_*.json ("properties"), read from the
        fake device's class (no device built: that is the qiskit thread's work)."""
        from orchestrator.quantum.backends.devices import fake_device_class

        device = fake_device_class(self.names()[self.require(name)])
        with self._lock:
            if (name, kind) not in self._raw:
                filename = device.conf_filename if kind == "configuration" else device.props_filename
                self._raw[(name, kind)] = json.loads((Path(device.dirname) / filename).read_text())
            return copy.deepcopy(self._raw[(name, kind)])

    def rep_delay(self, name: str) -> float:
        return float(getattr(self.device(name), "default_rep_delay", None) or DEFAULT_REP_DELAY_S)


DEVICES = DeviceCatalog()


# --- files under the state folder ------------------------------------------------------------

def write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def append_line(path: Path, record: dict) -> None:
    with open(path, "a") as file:        # one write per line: lines of concurrent writers never interleave
        file.write(json.dumps(record, sort_keys=True) + "\n")


def newest_records(path: Path, key: str) -> dict[str, dict]:
    """The last line of every `key` in a JSON-lines file, in the order the keys first appeared."""
    records: dict[str, dict] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                records[record[key]] = record
    return records


def fault_rules(value: Any) -> list[dict]:
    if not value:
        return []
    return [dict(rule) for rule in (value if isinstance(value, list) else [value])]


def rule_matches(rule: dict, method: str, path: str) -> bool:
    wanted = rule.get("method")
    return (not wanted or wanted.upper() == method.upper()) and fnmatch.fnmatchcase(path, rule.get("path", "*"))


class PlatformFiles:
    """What a platform keeps under its state folder. Usable from any process: a test reads the
    ledger of, or sets the faults of, a server running in another process through it."""

    def __init__(self, state_dir: os.PathLike) -> None:
        self.root = Path(state_dir)
        for folder in (self.root, self.params_dir, self.results_dir):
            folder.mkdir(parents=True, exist_ok=True)

    identity_path = property(lambda self: self.root / "platform.json")
    ledger_path = property(lambda self: self.root / "ledger.jsonl")
    sessions_path = property(lambda self: self.root / "sessions.jsonl")
    faults_path = property(lambda self: self.root / "faults.json")
    requests_log = property(lambda self: self.root / "requests.log")
    params_dir = property(lambda self: self.root / "params")
    results_dir = property(lambda self: self.root / "results")

    # the ledger and the sessions

    def ledger(self) -> list[dict]:
        """The newest record of every job, in acceptance order."""
        return list(newest_records(self.ledger_path, "job_id").values())

    def jobs_with_tag(self, tag: str) -> list[dict]:
        return [record for record in self.ledger() if tag in (record.get("tags") or [])]

    def sessions(self) -> list[dict]:
        return list(newest_records(self.sessions_path, "session_id").values())

    def requests(self) -> list[str]:
        return self.requests_log.read_text().splitlines() if self.requests_log.is_file() else []

    # faults

    @contextlib.contextmanager
    def _faults_locked(self):
        with open(self.root / "faults.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def faults(self) -> dict:
        try:
            return json.loads(self.faults_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def set_faults(self, faults: dict) -> None:
        with self._faults_locked():
            write_atomically(self.faults_path, json.dumps(faults, indent=1))

    def take_fault(self, kind: str, method: str, path: str) -> Optional[dict]:
        """The first `kind` rule matching the request, counted down (and removed at 0); None if none."""
        if not self.faults().get(kind):
            return None
        with self._faults_locked():
            faults = self.faults()
            rules = fault_rules(faults.get(kind))
            for index, rule in enumerate(rules):
                if rule_matches(rule, method, path):
                    if "times" in rule:
                        rule["times"] = int(rule["times"]) - 1
                        if rule["times"] <= 0:
                            rules.pop(index)
                        faults[kind] = rules
                        if not rules:
                            faults.pop(kind)
                        write_atomically(self.faults_path, json.dumps(faults, indent=1))
                    return rule
        return None

    # identity: the same API key, CRN and signing secret after a restart

    def identity(self, plan: str, region: Optional[str], token: Optional[str]) -> dict:
        known = json.loads(self.identity_path.read_text()) if self.identity_path.is_file() else {}
        identity = {"api_key": token or known.get("api_key") or f"local-{secrets.token_hex(16)}",
                    "account_id": known.get("account_id") or secrets.token_hex(16),
                    "instance_id": known.get("instance_id") or str(uuid.uuid4()),
                    "user_id": known.get("user_id") or f"IBMid-{secrets.token_hex(5).upper()}",
                    "secret": known.get("secret") or secrets.token_hex(32),
                    "region": region or known.get("region") or "us-east", "plan": plan}
        identity["crn"] = (f"crn:v1:bluemix:public:quantum-computing:{identity['region']}:"
                           f"a/{identity['account_id']}:{identity['instance_id']}::")
        identity["plan_id"] = f"local-plan-{plan}"
        return identity

    def save_identity(self, identity: dict, addresses: dict) -> None:
        write_atomically(self.identity_path, json.dumps({**identity, **addresses}, indent=1))


# --- tokens ------------------------------------------------------------------------------------

def issue_access_token(identity: dict) -> dict:
    """What IAM answers a valid API key: a JWT the runtime API verifies, signed with the platform's secret."""
    import jwt

    issued = int(time.time())
    claims = {"iam_id": identity["user_id"], "sub": identity["user_id"], "account": {"bss": identity["account_id"]},
              "iat": issued, "exp": issued + TOKEN_LIFETIME_S, "jti": uuid.uuid4().hex, "grant_type": "apikey"}
    token = jwt.encode(claims, identity["secret"], algorithm="HS256")
    return {"access_token": token, "refresh_token": secrets.token_urlsafe(24), "ims_user_id": 1,
            "token_type": "Bearer", "expires_in": TOKEN_LIFETIME_S, "expiration": issued + TOKEN_LIFETIME_S,
            "scope": "ibm openid"}


def verify_access_token(identity: dict, authorization: Optional[str]) -> dict:
    import jwt

    kind, _, token = (authorization or "").partition(" ")
    if kind.lower() != "bearer" or not token:
        raise not_authenticated()
    try:
        return jwt.decode(token, identity["secret"], algorithms=["HS256"])
    except jwt.PyJWTError:
        raise not_authenticated() from None


# --- running an executor program -------------------------------------------------------------

_REHEARSALS: dict[tuple[str, tuple[int, ...]], Any] = {}
_FULL_NOISE: dict[str, Any] = {}
_REHEARSAL_LOCK = threading.Lock()
_SIMULATION_LOCK = threading.Lock()


class _DeviceWithKnownNoise:
    """A fake device whose (slow to build: ~11 s on 156 qubits) noise model was built before:
    what RehearsalDevice reads of a device, so each (device, qubits) pair does not rebuild it."""

    def __init__(self, device, noise) -> None:
        self._device, self._noise = device, noise
        self.name, self.target = device.name, device.target

    def _get_noise_model_from_backend_v2(self):
        return self._noise


def rehearsal_device(backend: str, qubits: tuple[int, ...]):
    """RehearsalDevice of `backend`'s fake twin on `qubits`, built once per process."""
    from orchestrator.quantum.backends.rehearsal import RehearsalDevice

    with _REHEARSAL_LOCK:
        if (backend, qubits) not in _REHEARSALS:
            device = DEVICES.device(backend)
            if backend not in _FULL_NOISE:
                _FULL_NOISE[backend] = device._get_noise_model_from_backend_v2()
            _REHEARSALS[(backend, qubits)] = RehearsalDevice(_DeviceWithKnownNoise(device, _FULL_NOISE[backend]),
                                                              qubits)
        return _REHEARSALS[(backend, qubits)]


# Every qiskit object of the platform is made and used on one long-lived thread: qiskit's native
# code crashed (segfaults in qpy.load, in Aer's compile) when the HTTP server's short-lived
# per-request threads decoded programs and built devices, while a job ran on the worker.
_QISKIT_THREAD = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="ibm-platform-qiskit")


def on_qiskit_thread(function: Callable, *args):
    return _QISKIT_THREAD.submit(function, *args).result()


def estimated_seconds(backend: str, params: dict) -> float:
    """A job's QPU seconds by the billing model, from its params (ValueError: not a program we run)."""
    _, program, options = decode_params(params)
    return qpu_seconds(backend, program, options)


def simulated_and_billed(backend: str, params: dict, seed: int) -> tuple[str, float]:
    """(the result JSON, the billed QPU seconds) of a job's params run on `backend`'s rehearsal device."""
    model, program, options = decode_params(params)
    return run_program(backend, model, program, seed), qpu_seconds(backend, program, options)


def decode_params(params: dict):
    """(params model, QuantumProgram, ExecutorOptions) of an executor job's params, decoded with
    the client's own converters; ValueError if they are not a v2.0 program."""
    from qiskit_ibm_runtime.quantum_program.params_converters import QUANTUM_PROGRAM_PARAMS_CONVERTERS

    if not isinstance(params, dict) or params.get("schema_version") != "v2.0":
        raise ValueError("the local platform runs executor programs of schema version v2.0")
    converter = QUANTUM_PROGRAM_PARAMS_CONVERTERS["v2.0"]
    model = converter.model.model_validate(params)
    program, options = converter.decoder(model)
    return model, program, options


def pauli_labels(tree: Any, width: int) -> Iterator[str]:
    """Every Pauli label ("IIZZ...") of `width` qubits anywhere in a passthrough-data tree."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from pauli_labels(key, width)
            yield from pauli_labels(value, width)
    elif isinstance(tree, (list, tuple)):
        for value in tree:
            yield from pauli_labels(value, width)
    elif isinstance(tree, str) and len(tree) == width and re.fullmatch("[IXYZ]+", tree):
        yield tree


def program_qubits(program) -> tuple[int, ...]:
    """The qubits that can change an estimator's values: those of every multi-qubit instruction
    and those its observables act on (read from the estimator's passthrough data). For any other
    program: every qubit an instruction touches."""
    width = program.items[0].circuit.num_qubits
    qubits: set[int] = set()
    for item in program.items:
        circuit = item.circuit
        for instruction in circuit.data:
            if instruction.operation.name == "barrier":
                continue
            if len(instruction.qubits) > 1 or program._semantic_role != "estimator_v2":
                qubits |= {circuit.find_bit(q).index for q in instruction.qubits}
    if program._semantic_role == "estimator_v2":
        for label in pauli_labels(program.passthrough_data, width):
            qubits |= {width - 1 - position for position, pauli in enumerate(label) if pauli != "I"}
    return tuple(sorted(qubits)) or (0,)


def compact_template(circuit, qubits: tuple[int, ...]):
    """`circuit` on `qubits` only (physical qubit qubits[i] becoming qubit i), its classical
    registers kept whole; instructions on other qubits are left out (their clbits stay 0).
    rehearsal.compact_circuit would refuse those and renames the registers."""
    from qiskit import QuantumCircuit, QuantumRegister
    from qiskit.circuit import Barrier

    index = {q: i for i, q in enumerate(qubits)}
    compact = QuantumCircuit(QuantumRegister(len(qubits), "q"), *circuit.cregs, global_phase=circuit.global_phase)
    for instruction in circuit.data:
        positions = [circuit.find_bit(q).index for q in instruction.qubits]
        kept = [p for p in positions if p in index]
        if not kept:
            continue
        if instruction.operation.name == "barrier":
            compact.append(Barrier(len(kept)), [compact.qubits[index[p]] for p in kept])
        elif len(kept) != len(positions):
            raise ValueError(f"{instruction.operation.name} acts on qubits inside and outside {list(qubits)}")
        else:
            compact.append(instruction.operation, [compact.qubits[index[p]] for p in kept], list(instruction.clbits))
    return compact


def item_parameter_values(item, rng):
    """(parameter values of the item's circuit, other samplex outputs) as local testing mode draws them."""
    from qiskit_ibm_runtime.fake_provider.executor.broadcast_sample import broadcast_sample
    from samplomatic.quantum_program import SamplexItem

    if not isinstance(item, SamplexItem):
        return item.circuit_arguments, {}
    if not item.samplex._finalized:      # decoded from JSON, the samplex is not finalized yet
        item.samplex.finalize()
    outputs = broadcast_sample(item.samplex, item.samplex_arguments, item.shape, rng)
    return outputs.pop("parameter_values"), outputs


def run_item(item, qubits: tuple[int, ...], sampler, shots: int, rng) -> dict:
    """One program item on the rehearsal device: its result arrays, as the service returns them."""
    import numpy as np
    from qiskit.primitives.containers.bindings_array import BindingsArray
    from qiskit.primitives.containers.sampler_pub import SamplerPub

    values, outputs = item_parameter_values(item, rng)
    circuit = compact_template(item.circuit, qubits)
    bindings = None
    if circuit.num_parameters:
        position = {parameter: i for i, parameter in enumerate(item.circuit.parameters)}
        columns = [position[parameter] for parameter in circuit.parameters]
        bindings = BindingsArray({tuple(circuit.parameters): np.asarray(values)[..., columns]})
    result = sampler.run([SamplerPub(circuit=circuit, parameter_values=bindings, shots=shots)]).result()
    bits = {name: array.to_bool_array(order="little") for name, array in dict(result[0].data).items()}
    return {**outputs, **bits}


def run_program(backend: str, model, program, seed: int) -> str:
    """The program on `backend`'s rehearsal device: the result JSON the service returns
    (QuantumProgramResultModel v2.0)."""
    import numpy as np
    from ibm_quantum_schemas.common import CompressedTensorModel
    from ibm_quantum_schemas.executor.version_2_0 import QuantumProgramResultModel
    from qiskit_aer.primitives import SamplerV2 as AerSamplerV2

    qubits = program_qubits(program)
    device = rehearsal_device(backend, qubits)
    rng = np.random.default_rng(seed)
    started = utc_now()
    with _SIMULATION_LOCK:
        sampler = AerSamplerV2.from_backend(device.simulator, seed=seed)
        items = [run_item(item, qubits, sampler, program.shots, rng) for item in program.items]
    parts = [{"idx_item": i, "size": int(item.size()), "permutation": list(range(len(item.shape))),
              "element_range": (0, int(item.size()), 1)} for i, item in enumerate(program.items)]
    result = QuantumProgramResultModel(
        data=[{"results": {name: CompressedTensorModel.from_numpy(np.asarray(array)) for name, array in item.items()},
               "metadata": {}} for item in items],
        metadata={"chunk_timing": [{"start": started, "stop": utc_now(), "parts": parts}]},
        passthrough_data=model.quantum_program.passthrough_data, semantic_role=model.quantum_program.semantic_role)
    return result.model_dump_json()


def qpu_seconds(backend: str, program, options) -> float:
    """The written billing model: see the module docstring."""
    target = DEVICES.device(backend).target
    rep_delay = options.execution.rep_delay if options.execution.rep_delay is not None else DEVICES.rep_delay(backend)
    seconds = JOB_OVERHEAD_S
    for item in program.items:
        duration = float(item.circuit.estimate_duration(target, unit="s"))
        seconds += int(item.size()) * program.shots * (float(rep_delay) + duration)
    return round(seconds, BILLING_DECIMALS)


def seed_of(tags: list, job_id: str) -> int:
    """The simulator seed of a job: sha256 of its first tag, else of its id."""
    return int(hashlib.sha256((tags[0] if tags else job_id).encode()).hexdigest()[:8], 16)


def new_job_id() -> str:
    alphabet = "0123456789abcdefghijklmnopqrstuv"      # IBM job ids: 20 characters of base32hex, lower case
    return "d" + "".join(secrets.choice(alphabet) for _ in range(19))


# --- the service: jobs, sessions, plans ------------------------------------------------------

class PlanRules:
    """What the plan refuses, in IBM's answers."""

    def __init__(self, plan: str, limits: OpenPlanLimits) -> None:
        self.plan, self.limits = plan, limits

    @property
    def is_open(self) -> bool:
        return self.plan == "open"

    def check_session_mode(self, mode: str) -> None:
        if self.is_open and mode == "dedicated":
            raise ApiError(403, 1352, "You are not authorized to run a session when using the open plan.",
                           "Create an instance of a different plan type or use a different execution mode.")

    def check_job_creation(self, book: "JobBook", user_id: str, now: datetime) -> None:
        if not self.is_open:
            return
        self._check_rate(book, user_id, now)
        if book.consumed_seconds(now, self.limits.window_days) >= self.limits.window_seconds:
            raise ApiError(403, 1350, f"This instance has used its {self.limits.window_seconds:g} s of QPU time "
                                      f"for the current {self.limits.window_days:g}-day window.",
                           "Wait until time is made available, or use an instance of another plan.")
        pending = sum(1 for job in book.jobs.values() if job["status"] in PENDING and not job.get("synthetic"))
        if pending >= self.limits.pending_jobs:
            raise ApiError(429, 1012, f"The user reached the maximum number of pending jobs "
                                      f"({self.limits.pending_jobs}) for this instance.",
                           "Wait until some previous jobs were finished. You can cancel pending jobs to run new jobs.")

    def _check_rate(self, book: "JobBook", user_id: str, now: datetime) -> None:
        recent = sorted(parse_iso(job["created_at"]) for job in book.jobs.values()
                        if job.get("user_id") == user_id and not job.get("synthetic")
                        and (now - parse_iso(job["created_at"])).total_seconds() < self.limits.rate_window_seconds)
        if len(recent) >= self.limits.jobs_per_minute:
            retry_after = max(1, math.ceil(self.limits.rate_window_seconds - (now - recent[0]).total_seconds()))
            raise ApiError(429, 1202, f"Too many POST /jobs requests received: limit is "
                                      f"{self.limits.jobs_per_minute} per minute.",
                           "Reduce your request rate and try again.", headers={"Retry-After": str(retry_after)})


class JobBook:
    """Jobs and sessions, as the ledger and the sessions file hold them."""

    def __init__(self, files: PlatformFiles) -> None:
        self.files = files
        self.jobs = newest_records(files.ledger_path, "job_id")
        self.sessions = newest_records(files.sessions_path, "session_id")

    def save_job(self, job: dict) -> dict:
        self.jobs[job["job_id"]] = job
        append_line(self.files.ledger_path, job)
        return job

    def save_session(self, session: dict) -> dict:
        self.sessions[session["session_id"]] = session
        append_line(self.files.sessions_path, session)
        return session

    def job(self, job_id: str) -> dict:
        job = self.jobs.get(job_id)
        if job is None or job.get("synthetic") or job.get("deleted"):
            raise job_not_found(job_id)
        return job

    def session(self, session_id: str) -> dict:
        if session_id not in self.sessions:
            raise session_not_found(session_id)
        return self.sessions[session_id]

    def session_jobs(self, session_id: str) -> list[dict]:
        return [job for job in self.jobs.values() if job.get("session_id") == session_id]

    def session_elapsed(self, session: dict, now: datetime) -> float:
        """A batch: its jobs' QPU seconds. A dedicated session: created -> closed or last job end."""
        jobs = self.session_jobs(session["session_id"])
        if session["mode"] == "batch":
            return round(sum(job.get("billed_seconds") or 0 for job in jobs), BILLING_DECIMALS)
        if session["state"] != "closed":
            end = now
        else:
            ends = [parse_iso(session["closed_at"])] + [parse_iso(job["finished_at"]) for job in jobs
                                                          if job.get("finished_at")]
            end = max(ends)
        # a job holds the QPU for its billed seconds, though the simulator ran it faster: the session
        # was active for that time too (so it never bills less than its jobs, as on a device)
        held = sum(max(0.0, (job.get("billed_seconds") or 0) - seconds_between(job["running_at"], job["finished_at"]))
                   for job in jobs if job.get("running_at") and job.get("finished_at"))
        return round((end - parse_iso(session["created_at"])).total_seconds() + held, BILLING_DECIMALS)

    def consumed_seconds(self, now: datetime, window_days: float) -> float:
        """QPU seconds charged to the instance in the window: job/batch jobs' billed seconds, and
        dedicated sessions' elapsed time."""
        start = now - timedelta(days=window_days)
        charged = sum(job.get("billed_seconds") or 0 for job in self.jobs.values()
                      if job.get("billed_to") == "job" and job.get("finished_at")
                      and parse_iso(job["finished_at"]) >= start)
        charged += sum(self.session_elapsed(session, now) for session in self.sessions.values()
                       if session["mode"] == "dedicated" and parse_iso(session["created_at"]) >= start)
        return round(charged, BILLING_DECIMALS)

    def pending_on(self, backend: str) -> int:
        return sum(1 for job in self.jobs.values() if job["backend"] == backend and job["status"] in PENDING
                   and not job.get("synthetic"))


class PlatformCore:
    """The service behind the HTTP routes: each method takes the request's parts and returns what
    the service answers, or raises ApiError."""

    def __init__(self, files: PlatformFiles, identity: dict, limits: OpenPlanLimits) -> None:
        self.files, self.identity = files, identity
        self.rules = PlanRules(identity["plan"], limits)
        self.lock = threading.RLock()
        self.book = JobBook(files)
        self.work = threading.Event()      # set when a job may have become runnable
        for job in list(self.book.jobs.values()):
            if job["status"] == "Running":   # the server stopped while it ran: it runs again (same seed)
                self.book.save_job({**job, "status": "Queued", "running_at": None})

    # --- identity and instances

    def iam_token(self, form: dict) -> dict:
        if form.get("grant_type") != "urn:ibm:params:oauth:grant-type:apikey":
            raise IamError(400, "BXNIM0309E", "Grant type is not supported.")
        if form.get("apikey") != self.identity["api_key"]:
            raise IamError(400, "BXNIM0415E", "Provided API key could not be found.")
        return issue_access_token(self.identity)

    def instance_search(self) -> dict:
        display_name, _ = PLAN_CATALOG[self.identity["plan"]]
        item = {"crn": self.identity["crn"], "name": f"local-{self.identity['plan']}-instance",
                "service_plan_unique_id": self.identity["plan_id"], "tags": [],
                "doc": {"extensions": {"virtual_private_endpoints": {}, "plan": display_name}}}
        return {"items": [item], "limit": 100, "search_cursor": None}

    def catalog_entry(self, entry_id: str) -> dict:
        if entry_id != self.identity["plan_id"]:
            raise ApiError(404, 404, f"Catalog entry {entry_id} not found.")
        display_name, pricing = PLAN_CATALOG[self.identity["plan"]]
        return {"id": entry_id, "name": self.identity["plan"], "kind": "plan",
                "overview_ui": {"en": {"display_name": display_name}}, "metadata": {"pricing": {"type": pricing}}}

    def check_instance(self, crn: Optional[str]) -> None:
        if crn != self.identity["crn"]:
            raise instance_not_found(crn or "")

    # --- backends

    def backends(self) -> dict:
        devices = []
        for name in DEVICES.names():
            configuration = DEVICES.raw(name, "configuration")
            devices.append({"name": name, "status": {"name": "online", "reason": "available"},
                            "queue_length": self.book.pending_on(name), "qubits": configuration["n_qubits"],
                            "is_simulator": False, "processor_type": configuration.get("processor_type"),
                            "physical_qubits": configuration["n_qubits"], "wait_time_seconds": None})
        return {"devices": devices}

    def backend_configuration(self, name: str) -> dict:
        return DEVICES.raw(DEVICES.require(name), "configuration")

    def backend_properties(self, name: str) -> dict:
        # the one calibration the fake device has, whatever `updated_before` asks for
        return DEVICES.raw(DEVICES.require(name), "properties")

    def backend_status(self, name: str) -> dict:
        configuration = DEVICES.raw(DEVICES.require(name), "configuration")
        with self.lock:
            queued = self.book.pending_on(name)
        return {"state": True, "status": "active", "message": "available", "length_queue": queued,
                "backend_version": configuration.get("backend_version", "1.0.0")}

    # --- jobs: creation

    def create_job(self, body: dict, claims: dict) -> dict:
        backend = DEVICES.require(body.get("backend"))
        if body.get("program_id") != "executor":
            raise invalid_job(f"program {body.get('program_id')!r}: the local platform runs the executor program")
        try:
            estimate = on_qiskit_thread(estimated_seconds, backend, body.get("params"))
        except Exception as problem:
            raise invalid_job(f"params: {str(problem).splitlines()[0]}") from None
        tags = [str(tag) for tag in body.get("tags") or []]
        with self.lock:
            now = utc_now()
            session = self._session_for_new_job(body, backend)
            self.rules.check_job_creation(self.book, claims.get("sub"), now)
            job = self._new_job_record(body, backend, tags, session, estimate, now)
            (self.files.params_dir / f"{job['job_id']}.json").write_text(json.dumps(body.get("params")))
            self.book.save_job(job)
        self.work.set()
        return {"id": job["job_id"], "backend": backend, **({"session_id": job["session_id"]} if session else {})}

    def _session_for_new_job(self, body: dict, backend: str) -> Optional[dict]:
        if body.get("start_session"):
            return self.create_session({"mode": "dedicated", "backend": backend,
                                        "max_ttl": body.get("session_time")}, as_record=True)
        if not body.get("session_id"):
            return None
        session = self.book.session(body["session_id"])
        if not session["accepting_jobs"] or session["state"] == "closed":
            raise ApiError(400, 4001, f"Job is part of a session that's been closed: {session['session_id']}.",
                           "Ensure the session is not closed before all jobs in the session have run.")
        if session["backend"] != backend:
            raise invalid_job(f"session {session['session_id']} runs on {session['backend']}, not {backend}")
        return session

    def _new_job_record(self, body: dict, backend: str, tags: list, session: Optional[dict], estimate: float,
                        now: datetime) -> dict:
        job_id = new_job_id()
        queue_seconds = float(self.files.faults().get("queue_seconds") or 0)
        mode = session["mode"] if session else "job"
        number = 1 + sum(1 for job in self.book.jobs.values() if not job.get("synthetic"))
        return {"job_id": job_id, "number": number, "backend": backend,
                "program_id": body["program_id"], "tags": tags,
                "session_id": session["session_id"] if session else None,
                "mode": mode, "billed_to": "session" if mode == "dedicated" else "job",
                "instance": self.identity["crn"], "user_id": self.identity["user_id"],
                "created_at": iso(now), "running_at": None, "finished_at": None, "status": "Queued",
                "reason": None, "reason_code": None, "billed_seconds": 0.0, "estimated_seconds": estimate,
                "cost": int(body.get("cost") or MAX_EXECUTION_TIME_S[self.identity["plan"]]),
                "not_before": iso(now + timedelta(seconds=queue_seconds)), "seed": seed_of(tags, job_id),
                "deleted": False, "synthetic": False}

    def add_past_usage(self, seconds: float, days_ago: float, backend: str) -> dict:
        """A ledger record of QPU time used before (no job to serve): to fill a usage window."""
        with self.lock:
            moment = iso(utc_now() - timedelta(days=days_ago))
            job = {"job_id": f"past-{uuid.uuid4().hex[:12]}", "number": 0, "backend": backend,
                   "program_id": "executor", "tags": [], "session_id": None, "mode": "job", "billed_to": "job",
                   "instance": self.identity["crn"], "user_id": self.identity["user_id"], "created_at": moment,
                   "running_at": moment, "finished_at": moment, "status": "Completed", "reason": None,
                   "reason_code": None, "billed_seconds": round(seconds, BILLING_DECIMALS),
                   "estimated_seconds": seconds, "cost": None, "not_before": moment, "seed": 0,
                   "deleted": False, "synthetic": True}
            return self.book.save_job(job)

    # --- jobs: what the client reads

    def job_view(self, job: dict, with_params: bool = False) -> dict:
        state = {"status": job["status"], "reason": job["reason"], "reason_code": job["reason_code"]}
        view = {"id": job["job_id"], "backend": job["backend"], "state": state, "status": job["status"],
                "program": {"id": job["program_id"]}, "created": job["created_at"], "tags": job["tags"],
                "session_id": job["session_id"], "runtime": "", "cost": job["cost"], "private": False,
                "user_id": job["user_id"], "estimated_running_time_seconds": job["estimated_seconds"]}
        if job["finished_at"]:
            view["ended"] = job["finished_at"]
        if with_params:
            view["params"] = json.loads((self.files.params_dir / f"{job['job_id']}.json").read_text())
        return view

    def job_details(self, job_id: str, query: dict) -> dict:
        with self.lock:
            job = self.book.job(job_id)
        return self.job_view(job, with_params=first(query, "exclude_params", "false") != "true")

    def list_jobs(self, query: dict) -> dict:
        with self.lock:
            jobs = [job for job in self.book.jobs.values() if self._listed(job, query)]
        jobs.sort(key=lambda job: (job["created_at"], job["number"]), reverse=first(query, "sort") != "ASC")
        skip, limit = int(first(query, "skip", "0")), int(first(query, "limit", "200"))
        page = jobs[skip:skip + limit]
        with_params = first(query, "exclude_params", "true") == "false"
        return {"jobs": [self.job_view(job, with_params) for job in page], "count": len(jobs), "limit": limit,
                "offset": skip}

    @staticmethod
    def _listed(job: dict, query: dict) -> bool:
        if job.get("synthetic") or job.get("deleted"):
            return False
        pending = first(query, "pending")
        checks = [set(query.get("tags", [])) <= set(job["tags"]),
                  first(query, "backend") in (None, job["backend"]),
                  first(query, "program") in (None, job["program_id"]),
                  first(query, "session_id") in (None, job["session_id"]),
                  pending is None or (job["status"] in PENDING) == (pending == "true")]
        after, before = parse_iso(first(query, "created_after")), parse_iso(first(query, "created_before"))
        created = parse_iso(job["created_at"])
        checks += [after is None or created >= after, before is None or created <= before]
        return all(checks)

    def job_results(self, job_id: str) -> tuple[int, str, str]:
        """(status, body, content type): the result JSON; a failed job's error; 204 before the end."""
        with self.lock:
            job = self.book.job(job_id)
        if job["status"] == "Completed":
            return 200, (self.files.results_dir / f"{job_id}.json").read_text(), "application/json"
        if job["status"] in ("Failed", "Cancelled") and job["reason"]:
            return 200, f"Error code {job['reason_code']}; {job['reason']}", "text/plain"
        return 204, "", "text/plain"

    def job_metrics(self, job_id: str) -> dict:
        with self.lock:
            job = self.book.job(job_id)
        final = job["status"] in TERMINAL
        return {"timestamps": {"created": job["created_at"], "running": job["running_at"],
                               "finished": job["finished_at"]},
                "usage": {"qpu_charge_time_seconds": job["billed_seconds"] if final else 0,
                          "status": "complete" if final else "pending"},
                "estimated_running_time_seconds": job["estimated_seconds"], "qiskit_version": qiskit_version()}

    def cancel_job(self, job_id: str) -> None:
        with self.lock:
            job = self.book.job(job_id)
            if job["status"] in TERMINAL:
                raise ApiError(409, 3208, f"Job {job_id} cannot be cancelled: it is {job['status']}.",
                               "Only queued and running jobs can be cancelled.")
            if job["status"] == "Queued":
                self._finish(job, "Cancelled", 0.0)
            else:
                self.book.save_job({**job, "cancel_requested": True})

    def job_logs(self, job_id: str) -> str:
        with self.lock:
            self.book.job(job_id)
        return ""                      # the executor logs nothing the client could read

    def delete_job(self, job_id: str) -> None:
        with self.lock:
            self.book.save_job({**self.book.job(job_id), "deleted": True})

    def update_tags(self, job_id: str, body: dict) -> None:
        with self.lock:
            self.book.save_job({**self.book.job(job_id), "tags": [str(t) for t in body.get("tags") or []]})

    # --- sessions

    def create_session(self, body: dict, as_record: bool = False) -> dict:
        mode = body.get("mode") or "dedicated"
        if mode not in ("dedicated", "batch"):
            raise ApiError(400, 3500, f"Session mode {mode!r} is not valid: use dedicated or batch.")
        backend = DEVICES.require(body.get("backend"))
        self.rules.check_session_mode(mode)
        now = iso(utc_now())
        with self.lock:
            session = self.book.save_session({
                "session_id": str(uuid.uuid4()), "mode": mode, "backend": backend, "instance": self.identity["crn"],
                "max_ttl": int(body.get("max_ttl") or SESSION_MAX_TTL_S), "created_at": now, "activated_at": None,
                "closed_at": None, "accepting_jobs": True, "state": "open", "last_job_started": None,
                "last_job_completed": None, "timestamps": [{"status": "open", "timestamp": now}]})
        return session if as_record else {"id": session["session_id"], "mode": mode, "backend_name": backend,
                                          "max_ttl": session["max_ttl"]}

    def session_details(self, session_id: str) -> dict:
        with self.lock:
            session = self.book.session(session_id)
            elapsed = self.book.session_elapsed(session, utc_now())
        return {"id": session_id, "backend_name": session["backend"], "interactive_ttl": SESSION_INTERACTIVE_TTL_S,
                "max_ttl": session["max_ttl"], "active_ttl": session["max_ttl"], "state": session["state"],
                "accepting_jobs": session["accepting_jobs"], "last_job_started": session["last_job_started"],
                "last_job_completed": session["last_job_completed"], "started_at": session["activated_at"],
                "closed_at": session["closed_at"], "activated_at": session["activated_at"], "mode": session["mode"],
                "elapsed_time": elapsed, "timestamps": session["timestamps"], "user_id": self.identity["user_id"]}

    def update_session(self, session_id: str, body: dict) -> None:
        with self.lock:
            session = self.book.session(session_id)
            if body.get("accepting_jobs") is False and session["accepting_jobs"]:
                session = {**session, "accepting_jobs": False, "closed_at": iso(utc_now())}
                self.book.save_session(self._settle_session(session))

    def cancel_session(self, session_id: str) -> None:
        with self.lock:
            session = self.book.session(session_id)
            for job in self.book.session_jobs(session_id):
                if job["status"] == "Queued":
                    self._finish(job, "Cancelled", 0.0)
            now = iso(utc_now())
            session = {**self.book.sessions[session_id], "accepting_jobs": False,
                       "closed_at": session["closed_at"] or now}
            self.book.save_session(self._settle_session(session))

    def _settle_session(self, session: dict) -> dict:
        """A session that takes no more jobs and has none pending is closed."""
        pending = any(job["status"] in PENDING for job in self.book.session_jobs(session["session_id"]))
        if not session["accepting_jobs"] and not pending and session["state"] != "closed":
            session = {**session, "state": "closed",
                       "timestamps": session["timestamps"] + [{"status": "closed", "timestamp": iso(utc_now())}]}
        return session

    # --- usage

    def instance_usage(self) -> dict:
        now = utc_now()
        limits = self.rules.limits
        with self.lock:
            consumed = self.book.consumed_seconds(now, limits.window_days)
        usage = {"instance_id": self.identity["crn"], "plan_id": self.identity["plan_id"],
                 "usage_consumed_seconds": consumed,
                 "usage_period": {"start_time": iso(now - timedelta(days=limits.window_days)), "end_time": iso(now)},
                 "usage_limit_reached": False}
        if self.rules.is_open:
            usage["usage_limit_seconds"] = limits.window_seconds
            usage["usage_limit_reached"] = consumed >= limits.window_seconds
        return usage

    # --- the worker's side

    def next_runnable(self) -> Optional[dict]:
        now = utc_now()
        with self.lock:
            held_after = self.files.faults().get("run_only_jobs_up_to")
            queued = [job for job in self.book.jobs.values() if job["status"] == "Queued" and not job.get("synthetic")
                      and parse_iso(job["not_before"]) <= now and (held_after is None or job["number"] <= held_after)]
            return min(queued, key=lambda job: job["number"]) if queued else None

    def seconds_to_next(self) -> float:
        now = utc_now()
        with self.lock:
            waits = [(parse_iso(job["not_before"]) - now).total_seconds() for job in self.book.jobs.values()
                     if job["status"] == "Queued" and not job.get("synthetic")]
        return max(0.05, min(waits)) if waits else 1.0

    def run_job(self, job_id: str) -> None:
        job = self._start(job_id)
        faults = self.files.faults()
        if faults.get("fail_all") or job["number"] in (faults.get("fail_jobs") or []):
            self._end(job_id, "Failed", FAILED_JOB_BILLED_S, "The job failed on the device.", 5203)
            return
        try:
            params = json.loads((self.files.params_dir / f"{job_id}.json").read_text())
            result, billed = on_qiskit_thread(simulated_and_billed, job["backend"], params, job["seed"])
        except Exception as problem:
            self._end(job_id, "Failed", FAILED_JOB_BILLED_S, f"Failed to run job: {problem}", 5203)
            return
        if billed > job["cost"]:
            self._end(job_id, "Cancelled", float(job["cost"]), "RAN TOO LONG", 1305)
            return
        (self.files.results_dir / f"{job_id}.json").write_text(result)
        self._end(job_id, "Completed", billed)

    def _start(self, job_id: str) -> dict:
        with self.lock:
            now = iso(utc_now())
            job = self.book.save_job({**self.book.jobs[job_id], "status": "Running", "running_at": now})
            if job["session_id"]:
                session = self.book.sessions[job["session_id"]]
                update = {"last_job_started": now}
                if session["state"] == "open":
                    update.update(state="active", activated_at=now,
                                  timestamps=session["timestamps"] + [{"status": "active", "timestamp": now}])
                self.book.save_session({**session, **update})
            return job

    def _end(self, job_id: str, status: str, billed: float, reason: Optional[str] = None,
             reason_code: Optional[int] = None) -> None:
        with self.lock:
            job = self.book.jobs[job_id]
            if job.get("cancel_requested") and status == "Completed":
                status = "Cancelled"
            self._finish(job, status, billed, reason, reason_code)

    def _finish(self, job: dict, status: str, billed: float, reason: Optional[str] = None,
                reason_code: Optional[int] = None) -> None:
        now = iso(utc_now())
        self.book.save_job({**job, "status": status, "finished_at": now, "billed_seconds": round(billed, 3),
                            "reason": reason, "reason_code": reason_code})
        if job["session_id"]:
            session = {**self.book.sessions[job["session_id"]], "last_job_completed": now}
            self.book.save_session(self._settle_session(session))


def first(query: dict, name: str, default: Optional[str] = None) -> Optional[str]:
    values = query.get(name)
    return values[0] if values else default


def qiskit_version() -> str:
    import qiskit

    return qiskit.__version__


class JobWorker(threading.Thread):
    """Runs queued jobs one at a time, each when its queue time is over."""

    def __init__(self, core: PlatformCore) -> None:
        super().__init__(name="ibm-platform-worker", daemon=True)
        self.core, self.stopping = core, threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            job = self.core.next_runnable()
            if job is None:
                self.core.work.wait(self.core.seconds_to_next())
                self.core.work.clear()
                continue
            self.core.run_job(job["job_id"])

    def stop(self) -> None:
        self.stopping.set()
        self.core.work.set()


# --- HTTP ------------------------------------------------------------------------------------

@dataclass
class Request:
    method: str
    path: str              # the path after API_PREFIX for the runtime API, else the whole path
    api: bool
    query: dict
    headers: Any
    body: bytes

    def json(self) -> dict:
        try:
            return json.loads(self.body or b"{}")
        except json.JSONDecodeError:
            raise ApiError(400, 3500, "Body is wrong: not JSON.") from None

    def form(self) -> dict:
        return {name: values[0] for name, values in parse_qs(self.body.decode()).items()}


def api_routes(core: PlatformCore) -> list[tuple[str, str, Callable]]:
    """(method, path pattern after API_PREFIX, handler(request, claims, **groups) -> response)."""
    J, S, B = r"/jobs/(?P<job_id>[^/]+)", r"/sessions/(?P<session_id>[^/]+)", r"/backends/(?P<name>[^/]+)"
    return [
        ("GET", r"/backends", lambda r, c: core.backends()),
        ("GET", B + "/configuration", lambda r, c, name: core.backend_configuration(name)),
        ("GET", B + "/properties", lambda r, c, name: core.backend_properties(name)),
        ("GET", B + "/status", lambda r, c, name: core.backend_status(name)),
        ("GET", r"/jobs", lambda r, c: core.list_jobs(r.query)),
        ("POST", r"/jobs", lambda r, c: core.create_job(r.json(), c)),
        ("GET", J, lambda r, c, job_id: core.job_details(job_id, r.query)),
        ("DELETE", J, lambda r, c, job_id: (204, core.delete_job(job_id))),
        ("GET", J + "/results", lambda r, c, job_id: core.job_results(job_id)),
        ("GET", J + "/metrics", lambda r, c, job_id: core.job_metrics(job_id)),
        ("GET", J + "/logs", lambda r, c, job_id: (200, core.job_logs(job_id), "text/plain")),
        ("POST", J + "/cancel", lambda r, c, job_id: (204, core.cancel_job(job_id))),
        ("PUT", J + "/tags", lambda r, c, job_id: (204, core.update_tags(job_id, r.json()))),
        ("POST", r"/sessions", lambda r, c: core.create_session(r.json())),
        ("GET", S, lambda r, c, session_id: core.session_details(session_id)),
        ("PATCH", S, lambda r, c, session_id: (204, core.update_session(session_id, r.json()))),
        ("DELETE", S + "/close", lambda r, c, session_id: (204, core.cancel_session(session_id))),
        ("GET", r"/instances/usage", lambda r, c: core.instance_usage()),
    ]


class PlatformServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], core: PlatformCore) -> None:
        super().__init__(address, PlatformHandler)
        self.core = core
        self.routes = [(method, re.compile(pattern + "$"), handler) for method, pattern, handler in api_routes(core)]
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def process_request(self, request, client_address) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Hang up on every client still connected (keep-alive): a stopped server answers no one."""
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class DropConnection(Exception):
    """Close the socket: before any response (`response` None), or half-way through `response`'s body."""

    def __init__(self, response: Optional[tuple] = None) -> None:
        super().__init__("drop")
        self.response = response


class PlatformHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: PlatformServer

    def do_GET(self) -> None:
        self.answer("GET")

    def do_POST(self) -> None:
        self.answer("POST")

    def do_PUT(self) -> None:
        self.answer("PUT")

    def do_PATCH(self) -> None:
        self.answer("PATCH")

    def do_DELETE(self) -> None:
        self.answer("DELETE")

    def log_message(self, format: str, *args) -> None:   # the requests log replaces stderr's
        pass

    def answer(self, method: str) -> None:
        request = self.read_request(method)
        files = self.server.core.files
        try:
            response = self.with_faults(request, files)
        except DropConnection as drop:
            self.drop(request, drop.response)
            return
        self.send(request, *response)

    def read_request(self, method: str) -> Request:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        api = parts.path.startswith(API_PREFIX)
        path = (parts.path[len(API_PREFIX):] or "/") if api else parts.path
        return Request(method, path, api, parse_qs(parts.query), self.headers, body)

    def with_faults(self, request: Request, files: PlatformFiles) -> tuple:
        """The response, with the faults of faults.json applied to it."""
        slow = files.faults().get("slow_seconds")
        if slow:
            time.sleep(float(slow))
        drop = files.take_fault("drop_connection", request.method, request.path)
        if drop and drop.get("when") == "before_response":
            raise DropConnection()
        error = files.take_fault("http_error", request.method, request.path)
        response = fault_error(error) if error else self.respond(request)
        if drop:
            raise DropConnection(response)
        if (request.method, request.path, request.api) == ("POST", "/jobs", True) and response[0] == 200:
            if files.take_fault("lose_job_creation_response", "POST", "/jobs"):
                raise DropConnection()
            held = files.faults().get("hold_job_creation_response")
            if held and self.server.core.book.job(response[1]["id"])["number"] > held.get("after_jobs", 0):
                time.sleep(float(held.get("seconds", 30)))   # accepted and in the ledger; its id reaches the client late
        return response

    def respond(self, request: Request) -> tuple:
        """(status, body, content type, headers) of the request, errors included."""
        core = self.server.core
        try:
            if not request.api:
                return normalise(self.identity_response(request, core))
            claims = verify_access_token(core.identity, request.headers.get("Authorization"))
            core.check_instance(request.headers.get("Service-CRN"))
            for method, pattern, handler in self.server.routes:
                found = pattern.match(request.path)
                if found and method == request.method:
                    return normalise(handler(request, claims, **found.groupdict()))
            raise ApiError(404, 3811, f"Request not found: {request.method} {request.path}.")
        except ApiError as problem:
            return problem.status, problem.body(), "application/json", problem.headers
        except Exception as problem:   # a bug of the platform: the service's 500, and the cause in the body
            return 500, ApiError(500, 1000, f"API Internal error: {problem!r}").body(), "application/json", {}

    @staticmethod
    def identity_response(request: Request, core: PlatformCore):
        if (request.method, request.path) == ("POST", IAM_TOKEN_PATH):
            return core.iam_token(request.form())
        if (request.method, request.path) == ("POST", SEARCH_PREFIX + "/v3/resources/search"):
            verify_access_token(core.identity, request.headers.get("Authorization"))
            return core.instance_search()
        if request.method == "GET" and request.path.startswith(CATALOG_PREFIX + "/"):
            verify_access_token(core.identity, request.headers.get("Authorization"))
            return core.catalog_entry(request.path[len(CATALOG_PREFIX) + 1:])
        raise ApiError(404, 3811, f"Request not found: {request.method} {request.path}.")

    def send(self, request: Request, status: int, body: Any, content_type: str, headers: dict,
             cut_after: Optional[int] = None) -> None:
        data = body if isinstance(body, bytes) else (body.encode() if isinstance(body, str) else
                                                     json.dumps(body).encode())
        self.log_request_line(request, status)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data if cut_after is None else data[:cut_after])

    def drop(self, request: Request, response: Optional[tuple]) -> None:
        if response is None:
            self.log_request_line(request, "dropped")
        else:
            status, body, content_type, headers = response
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            size = len(data.encode() if isinstance(data, str) else data)
            self.send(request, status, body, content_type, headers, cut_after=size // 2)
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)

    def log_request_line(self, request: Request, status) -> None:
        shown = (API_PREFIX if request.api else "") + request.path
        query = "?" + "&".join(f"{k}={v}" for k, vs in request.query.items() for v in vs) if request.query else ""
        with contextlib.suppress(OSError):
            with open(self.server.core.files.requests_log, "a") as log:
                log.write(f"{request.method} {shown}{query} {status}\n")


def normalise(response: Any) -> tuple:
    """A handler's return value as (status, body, content type, headers)."""
    if isinstance(response, tuple):
        status, body, content_type = (response + (None, None))[:3]
        return status, "" if body is None else body, content_type or "application/json", {}
    return 200, response, "application/json", {}


def fault_error(rule: dict) -> tuple:
    status = int(rule.get("status", 503))
    headers = {}
    if status == 429 or "retry_after" in rule:
        headers["Retry-After"] = str(rule.get("retry_after", 1))
    problem = ApiError(status, int(rule.get("code", FAULT_STATUS_CODES.get(status, 1000))),
                       rule.get("message", f"Injected fault: HTTP {status}."), headers=headers)
    return status, problem.body(), "application/json", headers


# --- the public handle -----------------------------------------------------------------------

class Platform:
    """A running local IBM Quantum Platform: its addresses, credentials and state."""

    def __init__(self, state_dir: os.PathLike, plan: str = "paid", port: int = 0, *, token: Optional[str] = None,
                 region: Optional[str] = None, host: str = "127.0.0.1", open_limits: Optional[OpenPlanLimits] = None,
                 set_environment: bool = True) -> None:
        if plan not in PLANS:
            raise ValueError(f"plan must be one of {PLANS}, not {plan!r}")
        self.files = PlatformFiles(state_dir)
        self.state_dir, self.plan = self.files.root, plan
        identity = self.files.identity(plan, region, token)
        self.core = PlatformCore(self.files, identity, open_limits or OpenPlanLimits())
        self.server = PlatformServer((host, port), self.core)
        self.host, self.port = host, self.server.server_address[1]
        self.token, self.crn, self.region = identity["api_key"], identity["crn"], identity["region"]
        self.iam_url = f"http://{host}:{self.port}"
        self.url = self.iam_url + API_PREFIX
        self.environment = {"IAM_URL": self.iam_url, "GLOBAL_SEARCH_URL": self.iam_url + SEARCH_PREFIX,
                            "GLOBAL_CATALOG_URL": self.iam_url + CATALOG_PREFIX}
        # the client's own account variables: QiskitRuntimeService() with no arguments reads them
        self.account_environment = {"QISKIT_IBM_TOKEN": self.token, "QISKIT_IBM_URL": self.url,
                                    "QISKIT_IBM_INSTANCE": self.crn, "QISKIT_IBM_CHANNEL": "ibm_quantum_platform"}
        self.files.save_identity(identity, {"url": self.url, "iam_url": self.iam_url, "port": self.port,
                                            "environment": self.environment})
        self._set_environment, self._saved_environment = set_environment, {}
        self._threads: list[threading.Thread] = []
        self.worker = JobWorker(self.core)

    # lifecycle

    def start(self) -> "Platform":
        # threads started from here on (HTTP handlers, the job worker, the qiskit thread) get a deep
        # stack: with the default 8 MiB, decoding a device-wide program segfaulted in qiskit's native
        # code in some runs (see _QISKIT_THREAD for the other half of the cure)
        threading.stack_size(THREAD_STACK_BYTES)
        if self._set_environment:
            self._saved_environment = {name: os.environ.get(name) for name in self.environment}
            os.environ.update(self.environment)
        serving = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                   name="ibm-platform-http", daemon=True)
        serving.start()
        self.worker.start()
        self._threads = [serving, self.worker]
        return self

    def stop(self) -> None:
        self.worker.stop()
        self.server.shutdown()
        self.server.close_connections()
        self.server.server_close()
        self.worker.join(timeout=60)
        restore_environment(self._saved_environment)
        self._saved_environment = {}

    def __enter__(self) -> "Platform":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # the client

    def service_arguments(self) -> dict:
        return {"channel": "ibm_quantum_platform", "token": self.token, "instance": self.crn, "url": self.url}

    @contextlib.contextmanager
    def client_environment(self) -> Iterator[None]:
        """os.environ pointing the client here (IAM_URL, GLOBAL_SEARCH_URL, GLOBAL_CATALOG_URL)."""
        saved = {name: os.environ.get(name) for name in self.environment}
        os.environ.update(self.environment)
        try:
            yield
        finally:
            restore_environment(saved)

    def service(self, **overrides):
        """QiskitRuntimeService on this platform, built with its environment set."""
        from qiskit_ibm_runtime import QiskitRuntimeService

        with self.client_environment():
            return QiskitRuntimeService(**{**self.service_arguments(), **overrides})

    # state

    def set_faults(self, faults: dict) -> None:
        self.files.set_faults(faults)

    def faults(self) -> dict:
        return self.files.faults()

    def ledger(self) -> list[dict]:
        return self.files.ledger()

    def jobs_with_tag(self, tag: str) -> list[dict]:
        return self.files.jobs_with_tag(tag)

    def sessions(self) -> list[dict]:
        return self.files.sessions()

    def requests(self) -> list[str]:
        """The requests served so far, one "METHOD path status" line each."""
        return self.files.requests()

    def usage(self) -> dict:
        return self.core.instance_usage()

    def add_past_usage(self, seconds: float, days_ago: float = 1.0, backend: str = "ibm_fez") -> dict:
        return self.core.add_past_usage(seconds, days_ago, backend)

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Until no job is queued or running."""
        deadline = time.monotonic() + timeout
        while any(job["status"] in PENDING for job in self.ledger() if not job.get("synthetic")):
            if time.monotonic() > deadline:
                raise TimeoutError("jobs still pending on the platform")
            time.sleep(0.05)


def restore_environment(saved: dict[str, Optional[str]]) -> None:
    """Put back os.environ's values of before (None: the variable was not set)."""
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def start_platform(state_dir: os.PathLike, plan: str = "paid", port: int = 0, *, token: Optional[str] = None,
                   region: Optional[str] = None, host: str = "127.0.0.1", open_limits: Optional[OpenPlanLimits] = None,
                   set_environment: bool = True) -> Platform:
    """A Platform serving on host:port (0: a free port), already started; use it with `with` or stop()."""
    return Platform(state_dir, plan, port, token=token, region=region, host=host, open_limits=open_limits,
                    set_environment=set_environment).start()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.ibm_platform",
                                     description="A local IBM Quantum Platform for qiskit-ibm-runtime.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--plan", choices=PLANS, default="paid")
    parser.add_argument("--state", required=True, help="folder of its state (kept across restarts)")
    parser.add_argument("--token", help="the API key (default: the state's, else a new one)")
    parser.add_argument("--region", help="the instance's region (default: the state's, else us-east)")
    parser.add_argument("--host", default="127.0.0.1")
    arguments = parser.parse_args(argv)
    platform = start_platform(arguments.state, arguments.plan, arguments.port, token=arguments.token,
                              region=arguments.region, host=arguments.host, set_environment=False)
    stopped = threading.Event()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signal_number, lambda *_: stopped.set())
    lines = {"URL": platform.url, **platform.environment, **platform.account_environment, "PLAN": platform.plan,
             "STATE": str(platform.state_dir)}
    print("\n".join(f"{name}={value}" for name, value in lines.items()), flush=True)
    stopped.wait()
    platform.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
