"""Chaos suite: kill -9 at random moments, and processes that collide, against what an
undisturbed run gives. Every scenario prints "k/N identical, D duplicate submissions, O orphans".

    embed       `orchestrate embed` killed at a random moment, then run again to the end: the
                cache file's vectors, labels and shard checksums against an undisturbed embed's
    train       `orchestrate run` (exact Aer, cache warm) killed at a random moment (every other
                trial: once a random step's checkpoint is on disk, so the kill lands in training), then
                `orchestrate resume` (or run again, if it died before its first checkpoint): the
                summary's numbers and every epoch's metrics against an undisturbed run's
    cloud       a run on `ibm_fez` through the real qiskit-ibm-runtime client against the local IBM
                Quantum Platform (tests/support/ibm_platform.py, its own server process), each trial
                one of: kill -9 at a random moment; kill -9 after the service accepted a job and
                before the client heard its id; an HTTP fault (429 with Retry-After, 502/503, a
                connection dropped mid-answer, a job creation's answer lost) plus a kill at a
                random moment; then resumed: the numbers against the undisturbed run's, and
                duplicates (jobs the service ran twice for the same work) from its ledger
    cache       two `orchestrate embed` on one cache key, the second started 0-25 s after the
                first: both succeed, the texts are encoded once
    rundir      two `orchestrate run` on one --run-dir, the second 0-10 s after the first: the
                second is refused at once, the first's run is the undisturbed one

Orphans: anything left behind that nobody will read: `.parts` folders or temporary files in the
cache, temporary files in run dirs, a lock still held. Everything runs in --workdir (a fresh
temporary folder by default) on the packaged SMS sample; nothing needs a network.

    .venv/bin/python bench/chaos.py [--n 20] [--scenarios embed,train,cloud,cache,rundir] [--seed 0]

Tables go to stderr; stdout gets one JSON line per scenario.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

EMBED = ["embed", "-q", "--limit", "400", "--workers", "1", "--set", "embedding.shard_rows=50"]
# batches of 4: ~70 steps, a few hundred ms of training (backprop on exact Aer), which the trials
# that kill at a random checkpoint land in
RUN = ["run", "-q", "--limit", "200", "--epochs", "2", "--set", "quantum.n_qubits=2", "--set", "quantum.depth=1",
       "--set", "train.batch_size=4", "--set", "train.checkpoint_every=2", "--set", "train.trackers=[]"]
CLOUD_RUN = ["run", "-q", "--limit", "60", "--epochs", "1", "--backend", "ibm_fez", "--set", "quantum.n_qubits=2",
             "--set", "quantum.depth=1", "--set", "train.batch_size=8", "--set", "quantum.shots=200",
             "--set", "quantum.seed=5", "--set", "runtime.retry_backoff_seconds=0", "--set", "hardware.plan=false",
             "--set", "train.checkpoint_every=2", "--set", "train.trackers=[]"]
ENVIRONMENT = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
                   RAY_ADDRESS="")


def orchestrate(*args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator.cli", *args]


def run(command: list[str], timeout: float = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO, env=env or ENVIRONMENT, capture_output=True, text=True, timeout=timeout)


def timed(command: list[str], env: dict | None = None) -> float:
    started = time.monotonic()
    done = run(command, env=env)
    if done.returncode != 0:
        raise SystemExit(f"the undisturbed run failed: {done.stderr[-2000:]}")
    return time.monotonic() - started


def killed_at(command: list[str], after_s: float, env: dict | None = None,
              until: Callable[[], bool] | None = None) -> bool:
    """Start `command`, SIGKILL it `after_s` seconds later (or once `until()` holds, if sooner);
    whether it was still running then."""
    process = subprocess.Popen(command, cwd=REPO, env=env or ENVIRONMENT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + after_s
    while process.poll() is None and time.monotonic() < deadline and not (until and until()):
        time.sleep(0.02)
    if process.poll() is not None:
        return False
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    return True


def checkpoint_step(run_dir: Path) -> int:
    """The step of the newest checkpoint on disk (-1: none yet, or one being replaced)."""
    import torch

    for name in ("checkpoint.pt", "checkpoint.previous.pt"):
        try:
            return torch.load(run_dir / name, weights_only=False)["step"]
        except (FileNotFoundError, EOFError, RuntimeError):
            continue
    return -1


# --- what is compared ---------------------------------------------------------------------------

def cache_content(cache: Path) -> dict:
    """The one finished cache file's vectors, labels and shard checksums."""
    files = list((cache / "embeddings").glob("*.h5"))
    assert len(files) == 1, files
    with h5py.File(files[0], "r") as f:
        manifest = json.loads(f.attrs["manifest"])
        return {"vectors": np.asarray(f["vectors"]), "labels": np.asarray(f["labels"]),
                "shards": manifest.get("shards")}


def same_cache(a: dict, b: dict) -> bool:
    return (np.array_equal(a["vectors"], b["vectors"]) and np.array_equal(a["labels"], b["labels"])
            and a["shards"] == b["shards"])


def run_numbers(run_dir: Path) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for row in metrics:
        row.pop("seconds", None)
    return {"test": summary["test"], "baseline": summary["classical_baseline"], "best": summary["best"],
            "steps": summary["timing"]["steps"], "jobs": summary["quantum"]["jobs"], "metrics": metrics}


def orphans(*folders: Path) -> list[str]:
    """Leftovers nobody will read: parts folders, temporary files, locks still held."""
    from orchestrator.core import locks

    found = []
    for folder in folders:
        if not folder.exists():
            continue
        found += [str(p) for p in folder.rglob("*.parts")]
        found += [str(p) for p in folder.rglob(".*.tmp")]
        for lock in folder.rglob("*.lock"):
            descriptor = locks.try_lock(lock)
            if descriptor is None:
                found.append(f"{lock} (still held)")
            else:
                locks.release(descriptor)
    return found


def finish_run(command_of, run_dir: Path, run_args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    """Resume a killed run, or (killed before its first checkpoint) the same `run` again."""
    from orchestrator.run_dir import RunDir

    if RunDir(run_dir).has_started():
        return run(command_of("resume", "-q", str(run_dir)), env=env)
    return run(command_of(*run_args, "--run-dir", str(run_dir)), env=env)


# --- scenarios ----------------------------------------------------------------------------------

def scenario_embed(work: Path, n: int, rng: random.Random) -> dict:
    reference_cache = work / "embed-reference"
    duration = timed(orchestrate(*EMBED, "--cache-dir", str(reference_cache)))
    reference = cache_content(reference_cache)
    identical, leftovers, killed = 0, [], 0
    for trial in range(n):
        cache = work / f"embed-{trial}"
        killed += killed_at(orchestrate(*EMBED, "--cache-dir", str(cache)), rng.uniform(0.5, duration))
        done = run(orchestrate(*EMBED, "--cache-dir", str(cache)))
        identical += done.returncode == 0 and same_cache(cache_content(cache), reference)
        leftovers += orphans(cache)
        shutil.rmtree(cache, ignore_errors=True)
    return {"identical": identical, "killed": killed, "duplicate_submissions": 0, "orphans": leftovers,
            "undisturbed_s": duration}


def scenario_train(work: Path, n: int, rng: random.Random) -> dict:
    cache = work / "train-cache"
    run(orchestrate(*EMBED[:1], "-q", "--limit", "200", "--cache-dir", str(cache)))      # the cache warm
    reference_dir = work / "train-reference"
    duration = timed(orchestrate(*RUN, "--cache-dir", str(cache), "--run-dir", str(reference_dir)))
    reference = run_numbers(reference_dir)

    def command_of(*args):
        return orchestrate(*args, *(["--cache-dir", str(cache)] if args[0] == "run" else []))

    steps = json.loads((reference_dir / "summary.json").read_text())["timing"]["steps"]
    identical, leftovers, killed = 0, [], 0
    for trial in range(n):
        run_dir = work / f"train-{trial}"
        # even trials: a random moment of the whole command (imports, Ray, the cache, training, the
        # summary); odd ones: once a random step's checkpoint is on disk, inside the training itself
        target = rng.randrange(steps)
        until = (lambda d, t: lambda: checkpoint_step(d) >= t)(run_dir, target) if trial % 2 else None
        after_s = 3 * duration if until else rng.uniform(0.5, duration)
        killed += killed_at(command_of(*RUN, "--run-dir", str(run_dir)), after_s, until=until)
        done = finish_run(command_of, run_dir, RUN) if not (run_dir / "summary.json").exists() else None
        same = (done is None or done.returncode == 0) and run_numbers(run_dir) == reference
        identical += same
        leftovers += orphans(run_dir)
        if same:
            shutil.rmtree(run_dir, ignore_errors=True)
    leftovers += orphans(cache)
    return {"identical": identical, "killed": killed, "duplicate_submissions": 0, "orphans": leftovers,
            "undisturbed_s": duration}


HTTP_FAULTS = [
    {"http_error": {"method": "POST", "path": "/jobs", "status": 429, "retry_after": 1, "times": 2}},
    {"http_error": {"method": "POST", "path": "/jobs", "status": 503, "times": 2}},
    {"http_error": {"method": "GET", "path": "/jobs/*", "status": 502, "times": 3}},
    {"drop_connection": {"method": "GET", "path": "/jobs/*/results", "times": 2}},
    {"lose_job_creation_response": {"times": 2}},
]


def start_platform_process(state: Path) -> tuple[subprocess.Popen, dict]:
    """`python -m tests.support.ibm_platform` on a free port; (the process, the client's environment)."""
    process = subprocess.Popen([sys.executable, "-m", "tests.support.ibm_platform", "--plan", "paid", "--state",
                                str(state)], cwd=REPO, env=ENVIRONMENT, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    lines = {}
    while "STATE" not in lines:
        name, _, value = process.stdout.readline().strip().partition("=")
        if not name:
            raise SystemExit("the local IBM Quantum Platform did not start")
        lines[name] = value
    names = ("IAM_URL", "GLOBAL_SEARCH_URL", "GLOBAL_CATALOG_URL", "QISKIT_IBM_TOKEN", "QISKIT_IBM_URL",
             "QISKIT_IBM_INSTANCE", "QISKIT_IBM_CHANNEL")
    return process, dict(ENVIRONMENT, **{name: lines[name] for name in names})


def jobs_since(files, started: str) -> list[dict]:
    return [job for job in files.ledger() if job["created_at"] >= started and not job.get("synthetic")]


def scenario_cloud(work: Path, n: int, rng: random.Random) -> dict:
    from tests.support.ibm_platform import PlatformFiles, iso, utc_now

    cache = work / "cloud-cache"
    run(orchestrate(*EMBED[:1], "-q", "--limit", "60", "--cache-dir", str(cache)))
    server, env = start_platform_process(work / "cloud-platform")
    files = PlatformFiles(work / "cloud-platform")
    try:
        def command_of(*args):
            return orchestrate(*args, *(["--cache-dir", str(cache)] if args[0] == "run" else []))

        reference_dir = work / "cloud-reference"
        duration = timed(command_of(*CLOUD_RUN, "--run-dir", str(reference_dir)), env=env)
        reference = run_numbers(reference_dir)
        identical, duplicates, leftovers, killed, kinds = 0, 0, [], 0, {"kill": 0, "held": 0, "fault": 0}
        for trial in range(n):
            run_dir, started = work / f"cloud-{trial}", iso(utc_now())
            kind = ("kill", "held", "fault")[trial % 3]
            kinds[kind] += 1
            until = None
            if kind == "held":       # killed after the service accepted a job, before the client heard its id
                after = rng.randint(1, max(1, reference["jobs"] - 1))    # this trial's jobs before the held one
                accepted = max((job["number"] for job in files.ledger()), default=0)   # numbers count every trial's
                files.set_faults({"hold_job_creation_response": {"seconds": 600, "after_jobs": accepted + after}})
                until = lambda after=after, started=started: len(jobs_since(files, started)) > after
            elif kind == "fault":
                files.set_faults(rng.choice(HTTP_FAULTS))
            killed += killed_at(command_of(*CLOUD_RUN, "--run-dir", str(run_dir)),
                                600 if kind == "held" else rng.uniform(1.0, duration), env=env, until=until)
            files.set_faults({})
            done = (finish_run(command_of, run_dir, CLOUD_RUN, env=env)
                    if not (run_dir / "summary.json").exists() else None)
            same = (done is None or done.returncode == 0) and run_numbers(run_dir) == reference
            identical += same
            tags = [tuple(job["tags"]) for job in jobs_since(files, started)]
            duplicates += len(tags) - len(set(tags))
            leftovers += orphans(run_dir)
            if same:                       # a trial that differs stays in the workdir, to be looked at
                shutil.rmtree(run_dir, ignore_errors=True)
    finally:
        server.terminate()
        server.wait()
    return {"identical": identical, "killed": killed, "duplicate_submissions": duplicates, "orphans": leftovers,
            "undisturbed_s": duration, "trials": kinds}


def scenario_cache(work: Path, n: int, rng: random.Random) -> dict:
    reference = cache_content(work / "embed-reference") if (work / "embed-reference").exists() else None
    identical, encoded_twice, leftovers = 0, 0, []
    for trial in range(n):
        cache = work / f"cache-{trial}"
        command = orchestrate(*EMBED, "--cache-dir", str(cache))
        first = subprocess.Popen(command, cwd=REPO, env=ENVIRONMENT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
        time.sleep(rng.uniform(0, 25))
        second = subprocess.Popen(command, cwd=REPO, env=ENVIRONMENT, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        outputs = [process.communicate(timeout=900)[0] for process in (first, second)]
        encoded = sum(bool(out.strip()) and out.strip().splitlines()[-1].startswith("cache: ") for out in outputs)
        encoded_twice += encoded > 1
        content = cache_content(cache)
        identical += (first.returncode == second.returncode == 0 and encoded == 1
                      and (reference is None or same_cache(content, reference)))
        leftovers += orphans(cache)
        shutil.rmtree(cache, ignore_errors=True)
    return {"identical": identical, "encoded_twice": encoded_twice, "duplicate_submissions": 0, "orphans": leftovers}


def scenario_rundir(work: Path, n: int, rng: random.Random) -> dict:
    cache = work / "train-cache"
    run(orchestrate(*EMBED[:1], "-q", "--limit", "200", "--cache-dir", str(cache)))
    reference_dir = work / "rundir-reference"
    if not reference_dir.exists():
        timed(orchestrate(*RUN, "--cache-dir", str(cache), "--run-dir", str(reference_dir)))
    reference = run_numbers(reference_dir)
    identical, leftovers = 0, []
    for trial in range(n):
        run_dir = work / f"rundir-{trial}"
        command = orchestrate(*RUN, "--cache-dir", str(cache), "--run-dir", str(run_dir))
        first = subprocess.Popen(command, cwd=REPO, env=ENVIRONMENT, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0, 10))
        second = run([*command, "--set", "train.seed=1"])
        first.wait(timeout=900)
        refused = second.returncode == 2 and ("is locked" in second.stderr or "not empty" in second.stderr)
        identical += refused and first.returncode == 0 and run_numbers(run_dir) == reference
        leftovers += orphans(run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)
    return {"identical": identical, "duplicate_submissions": 0, "orphans": leftovers}


SCENARIOS = {"embed": scenario_embed, "train": scenario_train, "cloud": scenario_cloud, "cache": scenario_cache,
             "rundir": scenario_rundir}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="trials per scenario (kills, or colliding pairs)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated: " + ", ".join(SCENARIOS))
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill moments and offsets")
    parser.add_argument("--workdir", help="where the runs go (default: a new temporary folder, removed after)")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    failed = False
    try:
        for name in args.scenarios.split(","):
            started = time.monotonic()
            result = SCENARIOS[name](work, args.n, rng)
            result.update(scenario=name, n=args.n, seconds=round(time.monotonic() - started))
            print(f"{name:<8} {result['identical']}/{args.n} identical, {result['duplicate_submissions']} duplicate "
                  f"submissions, {len(result['orphans'])} orphans"
                  + (f"  ({result['killed']} killed mid-run)" if "killed" in result else "")
                  + (f"  ({result['encoded_twice']} encoded twice)" if "encoded_twice" in result else "")
                  + f"  [{result['seconds']} s]", file=sys.stderr, flush=True)
            print(json.dumps(dict(result, orphans=result["orphans"][:20])), flush=True)
            failed |= result["identical"] < args.n or result["duplicate_submissions"] > 0 or bool(result["orphans"])
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
