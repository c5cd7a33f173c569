"""Benchmark: one W1 training step's job (912 parameter sets x 1,024 shots) on a fake device in
qiskit-ibm-runtime's local testing mode, the project's rehearsal against the plain path.

    anchor    what local testing mode gives anyone: a Batch on the fake device, qiskit-ibm-runtime's
              EstimatorV2, one PUB; every job deep-copies the device, rebuilds its noise model and
              simulates circuits as wide as the device. EstimatorV2 is deprecated, but its successor
              (executor_estimator.Estimator) cannot run this plain path at all: on fake_fez every
              circuit "requires more memory than max_memory_mb" (156 qubits), measured 2026-11-30
    project   FakeDeviceBackend on the same device and the same path (Batch, the current Estimator,
              one PUB),
              rehearsing on the qubits the circuit uses (orchestrator/quantum/backends/rehearsal.py):
              the first job builds the noise model once, the later jobs reuse it

Both run the same transpiled W1 circuit and table. Tables go to stderr; stdout gets one JSON line.

    .venv/bin/python bench/rehearsal.py [--device fake_fez] [--jobs 3] [--anchor-jobs 1]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.quantum.backends.devices import resolve_fake_device  # noqa: E402
from orchestrator.quantum.backends.estimator import estimator_pub  # noqa: E402
from orchestrator.config import load_config  # noqa: E402
from orchestrator.quantum.backends import make_backend  # noqa: E402
from orchestrator.quantum.circuits import QuantumSpec, TranspileCache, build_dressed_circuit  # noqa: E402
from orchestrator.quantum.runner import CircuitRunner  # noqa: E402
from orchestrator.quantum.shift_rule import shifted_parameter_table  # noqa: E402

SHOTS = 1024


def w1_table(spec: QuantumSpec) -> np.ndarray:
    rng = np.random.default_rng(0)
    return shifted_parameter_table(rng.uniform(-1.5, 1.5, (16, spec.n_qubits)), rng.normal(0, 0.5, spec.n_weights))


def time_anchor(device_name: str, spec: QuantumSpec, table: np.ndarray, jobs: int) -> list[float]:
    from qiskit_ibm_runtime import Batch, EstimatorV2

    device = resolve_fake_device(device_name)
    compiled = TranspileCache().get(build_dressed_circuit(spec), device_name, device, 1)
    pub = estimator_pub(compiled.circuit, compiled.observables, table[:, compiled.columns])
    seconds = []
    with Batch(backend=device) as batch, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # the anchor is the deprecated class, on purpose
        estimator = EstimatorV2(mode=batch)
        estimator.options.default_shots = SHOTS
        for _ in range(jobs):
            started = time.perf_counter()
            estimator.run([pub]).result()
            seconds.append(time.perf_counter() - started)
    return seconds


def time_project(device_name: str, spec: QuantumSpec, table: np.ndarray, jobs: int) -> list[float]:
    backend = make_backend(load_config(overrides=[f"quantum.backend={device_name}", "runtime.execution_mode=batch",
                                                  f"quantum.shots={SHOTS}", "quantum.seed=1"]))
    runner = CircuitRunner(build_dressed_circuit(spec), backend, transpile_cache=TranspileCache())
    runner.transpiled()
    seconds = []
    try:
        for _ in range(jobs):
            started = time.perf_counter()
            runner.evaluate(table)
            seconds.append(time.perf_counter() - started)
    finally:
        backend.close()
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="fake_fez")
    parser.add_argument("--jobs", type=int, default=4, help="project jobs (the first builds the noise model)")
    parser.add_argument("--anchor-jobs", type=int, default=1, help="plain local-mode jobs (each ~20-50 s)")
    args = parser.parse_args()
    spec = QuantumSpec(n_qubits=4, depth=6)
    table = w1_table(spec)
    project = time_project(args.device, spec, table, args.jobs)
    anchor = time_anchor(args.device, spec, table, args.anchor_jobs)
    later = statistics.median(project[1:]) if len(project) > 1 else project[0]
    anchor_s = statistics.median(anchor)
    print(f"{args.device}: one W1 job, {len(table)} parameter sets x {SHOTS} shots, local testing mode", file=sys.stderr)
    print(f"  plain local mode (anchor)     {anchor_s:6.1f} s per job", file=sys.stderr)
    print(f"  project, first job            {project[0]:6.1f} s (builds the device's noise model once)", file=sys.stderr)
    print(f"  project, later jobs (median)  {later:6.1f} s -> {anchor_s / later:.1f}x faster", file=sys.stderr)
    print(json.dumps({"bench": "fake-device-rehearsal", "device": args.device, "rows": len(table), "shots": SHOTS,
                      "anchor_s": anchor_s, "first_job_s": project[0], "job_s": later,
                      "speedup": anchor_s / later, "targets_met": {"job_at_most_5s": later <= 5.0}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
