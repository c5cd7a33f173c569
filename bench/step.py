"""Benchmark: one training step of HybridHead on the reference workload W1, against anchors.

W1 (bench/anchors/workload.py): 4 qubits, depth 6, 384 features, batch 16, exact
expectation values.

Measured in one run, on one machine:
  exact_step_s    median wall time of a project training step with quantum.gradient auto on exact
                  Aer, i.e. backprop through the batched torch statevector (statevector.py);
                  also at batch 64 and 256 and at 8 and 12 qubits (exact_step_s_batch64, ...)
  pennylane_backprop_step_s   its anchor: PennyLane default.qubit, backprop, the batch broadcast
                  (anchors/pennylane_backprop_step.py, in $ANCHOR_PYTHON), at W1, batch 64, 8 qubits
  shift_step_s    (= step_s) a parameter-shift training step on exact Aer: one runner request of
                  16 x (1 + 2 x 28) = 912 parameter sets, cross-entropy, backward, Adam step: what
                  shots, noise and devices run
  aer_floor_s     the bare Aer EstimatorV2 call on 912 parameter sets, timed exactly as
                  anchors/aer_floor.py does, interleaved with the project's steps so that both
                  see the same machine load; the anchor script itself also runs as a subprocess
                  (aer_floor_anchor_s) as a cross-check
  qml / pennylane the qiskit-machine-learning and PennyLane lightning.qubit anchors, run with
                  the python in $ANCHOR_PYTHON (a separate venv made from
                  bench/anchors/requirements.txt; never project dependencies), skipped with a
                  note when it is not set

Then a scaling table (batch 16/64/256 at 4 qubits; qubits 4/6/8 at batch 16) and a table of
Aer execution options on the W1 table (--aer-options-qubits picks the widths; the options are
built in bench/aer_variants.py, since a run uses only the fastest).

The project's steps run with one torch thread (--torch-threads; see orchestrator/model.py).
Human-readable tables go to stderr; stdout gets exactly one JSON line.

    .venv/bin/python bench/step.py [--steps 15] [--skip-scaling] [--skip-aer-options]
    ANCHOR_PYTHON=anchors-venv/bin/python .venv/bin/python bench/step.py
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
ANCHORS = Path(__file__).resolve().parent / "anchors"   # bench/anchors: the project's own anchor scripts
sys.path.insert(0, str(REPO))

from orchestrator.quantum.backends.aer import AerBackend, AerOptions  # noqa: E402
from aer_variants import ESTIMATOR_ROWS, SIMULATOR_ROWS, AerVariant, EstimatorRun  # noqa: E402  (bench/aer_variants.py)
from orchestrator.quantum.circuits import (QuantumSpec, TranspileCache, build_dressed_circuit,  # noqa: E402
                                           transpile_template)
from tests.support.reference_sim import simulate_table  # noqa: E402  (the exact torch simulation, for scale)
from orchestrator.quantum.model import HybridHead  # noqa: E402
from orchestrator.quantum.gradients import Backprop, GradientMethod, ParameterShift  # noqa: E402
from orchestrator.quantum.runner import CircuitRunner  # noqa: E402
from turns import interleaved  # noqa: E402  (bench/turns.py)
from orchestrator.quantum.shift_rule import rows_per_sample  # noqa: E402

# W1, read from the same environment variables as anchors/workload.py
FEATURES = int(os.environ.get("W_FEATURES", 384))
QUBITS = int(os.environ.get("W_QUBITS", 4))
DEPTH = int(os.environ.get("W_DEPTH", 6))
BATCH = int(os.environ.get("W_BATCH", 16))
SEED = 0


def log(line: str = "") -> None:
    print(line, file=sys.stderr, flush=True)


def workload_data(batch: int, steps: int, features: int):
    """anchors/workload.py's data(): torch randn / randint from a generator seeded 0."""
    g = torch.Generator().manual_seed(SEED)
    x = torch.randn(batch * (steps + 1), features, generator=g)
    y = torch.randint(0, 2, (batch * (steps + 1),), generator=g)
    return x, y


class ProjectStep:
    """A HybridHead on exact Aer with Adam, as a training loop would run it (parameter shift, or
    backprop through the statevector: what quantum.gradient auto chooses there)."""

    def __init__(self, spec: QuantumSpec, batch: int, steps: int, features: int = FEATURES,
                 gradient: GradientMethod = ParameterShift()):
        torch.manual_seed(SEED)
        self.runner = CircuitRunner(build_dressed_circuit(spec), AerBackend(AerOptions()),
                                    transpile_cache=TranspileCache(), gradient=gradient)
        self.model = HybridHead(features, 2, self.runner)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.x, self.y = workload_data(batch, steps, features)
        self.batch, self.step_index = batch, 0

    def __call__(self) -> float:
        n = len(self.x) // self.batch
        s = self.step_index % n
        self.step_index += 1
        xb, yb = self.x[s * self.batch:(s + 1) * self.batch], self.y[s * self.batch:(s + 1) * self.batch]
        t0 = time.perf_counter()
        self.optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(self.model(xb), yb)
        loss.backward()
        self.optimizer.step()
        return time.perf_counter() - t0


class AerFloorCall:
    """anchors/aer_floor.py's timed call, re-implemented identically for any size."""

    def __init__(self, qubits: int, depth: int, parameter_sets: int):
        from qiskit import QuantumCircuit
        from qiskit.circuit import ParameterVector
        from qiskit.quantum_info import SparsePauliOp
        from qiskit_aer.primitives import EstimatorV2

        x = ParameterVector("x", qubits)
        t = ParameterVector("t", qubits * depth)
        qc = QuantumCircuit(qubits)
        for q in range(qubits):
            qc.h(q)
            qc.ry(x[q], q)
        for d in range(depth):
            for q in range(0, qubits - 1, 2):
                qc.cx(q, q + 1)
            for q in range(1, qubits - 1, 2):
                qc.cx(q, q + 1)
            for q in range(qubits):
                qc.ry(t[d * qubits + q], q)
        self.qc = qc
        self.obs = [[SparsePauliOp("I" * (qubits - 1 - q) + "Z" + "I" * q)] for q in range(qubits)]
        self.vals = np.random.default_rng(0).uniform(-np.pi, np.pi, (parameter_sets, qc.num_parameters))
        self.est = EstimatorV2()

    def __call__(self) -> float:
        t0 = time.perf_counter()
        self.est.run([(self.qc, self.obs, self.vals)]).result()
        return time.perf_counter() - t0


def run_anchor(script: str, python: str, extra_env: dict, timeout: float) -> dict:
    env = {**os.environ, "W_FEATURES": str(FEATURES), "W_QUBITS": str(QUBITS), "W_DEPTH": str(DEPTH),
           "W_BATCH": str(BATCH), **extra_env}
    done = subprocess.run([python, str(ANCHORS / script)], cwd=str(ANCHORS), env=env,
                          capture_output=True, text=True, timeout=timeout)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"{script} failed (exit {done.returncode}): {tail[0]}")
    return json.loads(lines[-1])


# --- the Aer options table (issue point 7) ----------------------------------------------------

def aer_options_table(qubits: int, depth: int, batch: int, rounds: int) -> list[dict]:
    """Every candidate (bench/aer_variants.py) evaluates the same shifted W1-style table; medians
    of interleaved rounds, and each one's largest deviation from the exact statevector."""
    from orchestrator.quantum.shift_rule import shifted_parameter_table

    spec = QuantumSpec(qubits, depth)
    template = build_dressed_circuit(spec)
    rng = np.random.default_rng(0)
    table = shifted_parameter_table(rng.uniform(-np.pi / 2, np.pi / 2, (batch, qubits)),
                                    rng.normal(0, 0.5, spec.n_weights))        # template column order
    compiled = transpile_template(template, AerBackend().transpile_target)
    ordered = table[:, compiled.columns]                                       # circuit.parameters order
    exact = simulate_table(spec, table)

    runners = {name: EstimatorRun(compiled.circuit, compiled.observables, ordered, backend_options)
               for name, backend_options in ESTIMATOR_ROWS.items()}
    for name, options in SIMULATOR_ROWS.items():
        backend = AerVariant(**options)
        runners[name] = (lambda b: lambda: b.run(compiled.circuit, compiled.observables, ordered))(backend)
    runners["exact vectorised statevector (torch; not Aer, for scale)"] = lambda: simulate_table(spec, table)

    errors = {name: float(np.abs(np.asarray(run()) - exact).max()) for name, run in runners.items()}
    medians = interleaved({name: (lambda r: lambda: timed(r))(run) for name, run in runners.items()}, rounds)
    return [{"option": name, "qubits": qubits, "parameter_sets": len(table), "median_s": medians[name],
             "max_abs_error": errors[name]} for name in runners]


def timed(run) -> float:
    t0 = time.perf_counter()
    run()
    return time.perf_counter() - t0


# --- main --------------------------------------------------------------------------------------

def scaling_rows(cases: list[tuple[int, int]], steps: int) -> list[dict]:
    rows = []
    for qubits, batch in cases:
        spec = QuantumSpec(qubits, DEPTH)
        parameter_sets = batch * rows_per_sample(spec.n_parameters)
        project = ProjectStep(spec, batch, steps)
        floor = AerFloorCall(qubits, DEPTH, parameter_sets)
        medians = interleaved({"step": project, "floor": floor}, steps)
        rows.append({"qubits": qubits, "batch": batch, "parameter_sets": parameter_sets,
                     "step_s": medians["step"], "aer_floor_s": medians["floor"],
                     "step_over_aer_floor": medians["step"] / medians["floor"],
                     "jobs_per_step": project.runner.counters.step.jobs})
    return rows


EXACT_CASES = {"exact_step_s": (4, 16), "exact_step_s_batch64": (4, 64), "exact_step_s_batch256": (4, 256),
               "exact_step_s_q8": (8, 16), "exact_step_s_q12": (12, 16)}
ANCHOR_CASES = {"pennylane_backprop_step_s": (4, 16), "pennylane_backprop_step_s_batch64": (4, 64),
                "pennylane_backprop_step_s_q8": (8, 16)}


def exact_rows(steps: int, anchor_python: str | None, anchor_steps: int, notes: list) -> dict:
    """The exact path (backprop through the statevector) at every EXACT_CASES size, and its anchor,
    PennyLane default.qubit backprop, at the ANCHOR_CASES sizes; the anchor runs between two
    measurements of the project's W1 step, and the median of both is kept."""
    def project(qubits: int, batch: int) -> float:
        step = ProjectStep(QuantumSpec(qubits, DEPTH), batch, steps, gradient=Backprop())
        step()                                   # warm-up: the statevector's index tables
        return float(np.median([step() for _ in range(steps)]))

    result = {key: project(*case) for key, case in EXACT_CASES.items()}
    before = result["exact_step_s"]
    for key, (qubits, batch) in ANCHOR_CASES.items():
        if not anchor_python:
            notes.append(f"pennylane_backprop_step.py ({key}) skipped: set ANCHOR_PYTHON")
            continue
        try:
            anchor = run_anchor("pennylane_backprop_step.py", anchor_python,
                                {"W_QUBITS": str(qubits), "W_BATCH": str(batch), "W_STEPS": str(anchor_steps),
                                 "W_THREADS": "1"}, timeout=900)
            result[key] = anchor["step_s_median"]
        except Exception as e:
            notes.append(f"pennylane_backprop_step.py ({key}): {e}")
    result["exact_step_s"] = float(np.median([before, project(*EXACT_CASES["exact_step_s"])]))
    return result


def exact_targets(result: dict) -> dict:
    targets = {"exact_batch64_within_2x_of_batch16": result["exact_step_s_batch64"] <= 2 * result["exact_step_s"],
               "exact_batch256_within_2x_of_batch16": result["exact_step_s_batch256"] <= 2 * result["exact_step_s"],
               "exact_q12_measured": result["exact_step_s_q12"] > 0}
    if "pennylane_backprop_step_s" in result:
        targets["exact_at_least_5x_faster_than_pennylane_backprop"] = \
            result["pennylane_backprop_step_s"] >= 5 * result["exact_step_s"]
    if "pennylane_backprop_step_s_q8" in result:
        targets["exact_q8_at_least_5x_faster_than_pennylane_backprop_q8"] = \
            result["pennylane_backprop_step_s_q8"] >= 5 * result["exact_step_s_q8"]
    return targets


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15, help="timed W1 steps (after one warm-up)")
    parser.add_argument("--scaling-steps", type=int, default=3, help="timed steps per scaling case")
    parser.add_argument("--anchor-steps", type=int, default=1, help="W_STEPS for the qml/pennylane anchors")
    parser.add_argument("--aer-options-qubits", default="4", help="comma-separated widths for the Aer options table")
    parser.add_argument("--aer-options-rounds", type=int, default=7)
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch intra-op threads of this process (the anchors set their own, W_THREADS=2)")
    parser.add_argument("--exact-steps", type=int, default=30, help="timed steps per exact-path case")
    parser.add_argument("--backprop-anchor-steps", type=int, default=15, help="W_STEPS for the PennyLane backprop anchor")
    parser.add_argument("--skip-exact", action="store_true")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--skip-aer-options", action="store_true")
    args = parser.parse_args(argv)
    # The head's classical layers are tiny, so torch gains nothing from a second thread, while
    # its spinning OpenMP workers take cores from Aer's simulation (measured on 2 cores: a
    # W1 step of 160 ms with 2 torch threads, 78 ms with 1). One thread is the project's setting.
    torch.set_num_threads(args.torch_threads)
    notes = []

    spec = QuantumSpec(QUBITS, DEPTH)
    circuits_per_step = BATCH * rows_per_sample(spec.n_parameters)
    log(f"W1: {QUBITS} qubits, depth {DEPTH}, {FEATURES} features, batch {BATCH}: "
        f"{circuits_per_step} parameter sets per step; {args.steps} timed steps")
    project = ProjectStep(spec, BATCH, args.steps)
    floor = AerFloorCall(QUBITS, DEPTH, circuits_per_step)
    medians = interleaved({"step": project, "floor": floor}, args.steps)
    step_s, floor_s = medians["step"], medians["floor"]
    counters = project.runner.counters
    result = {"bench": "hybrid-step", "workload": "W1", "qubits": QUBITS, "depth": DEPTH, "batch": BATCH,
              "features": FEATURES, "circuits_per_step": circuits_per_step, "torch_threads": args.torch_threads,
              "shift_step_s": step_s, "step_s": step_s, "aer_floor_s": floor_s, "step_over_aer_floor": step_s / floor_s,
              "jobs_per_step": counters.step.jobs, "circuits_counted_per_step": counters.step.circuits,
              "transpilations": project.runner.transpile_cache.transpilations}
    log(f"parameter-shift step {step_s * 1e3:.1f} ms, bare Aer call {floor_s * 1e3:.1f} ms "
        f"-> {step_s / floor_s:.2f}x the floor, {counters.step.jobs} job(s) per step")

    anchor_python = os.environ.get("ANCHOR_PYTHON")
    if not args.skip_exact:
        exact = exact_rows(args.exact_steps, anchor_python, args.backprop_anchor_steps, notes)
        result.update(exact)
        log("")
        log("exact path (backprop through the statevector)   ms     PennyLane default.qubit backprop   ms   ratio")
        for key, (qubits, batch) in EXACT_CASES.items():
            anchor_key = "pennylane_backprop_step_s" + key[len("exact_step_s"):]
            anchor = exact.get(anchor_key)
            shown = f"{anchor * 1e3:10.2f} {anchor / exact[key]:8.1f}x" if anchor else f"{'':>10} {'':>9}"
            log(f"  {qubits:2d} qubits, batch {batch:3d} {exact[key] * 1e3:29.2f}   {shown}")

    try:
        anchor = run_anchor("aer_floor.py", sys.executable, {}, timeout=300)
        result["aer_floor_anchor_s"] = anchor["call_s_median"]
        result["step_over_aer_floor_anchor"] = step_s / anchor["call_s_median"]
    except Exception as e:  # the in-process floor above is the one the ratio uses
        notes.append(f"aer_floor.py subprocess: {e}")

    for key, script, env in (("qml", "qml_step.py", {}),
                             ("pennylane_lightning", "pennylane_step.py", {"W_PL_DEVICE": "lightning.qubit"})):
        if not anchor_python:
            notes.append(f"{script} skipped: set ANCHOR_PYTHON to a python with its packages")
            continue
        try:
            anchor = run_anchor(script, anchor_python, {"W_STEPS": str(args.anchor_steps), **env}, timeout=900)
        except Exception as e:
            notes.append(f"{script}: {e}")
            continue
        result[f"{key}_step_s"] = anchor["step_s_median"]
        result[f"{key}_over_step"] = anchor["step_s_median"] / step_s
        log(f"{script}: {anchor['step_s_median']:.3f} s per step -> {anchor['step_s_median'] / step_s:.1f}x the project")

    targets = {"step_at_most_1.3x_aer_floor": step_s <= 1.3 * floor_s, "one_job_per_step": counters.step.jobs == 1}
    if "pennylane_lightning_over_step" in result:
        targets["at_least_10x_faster_than_pennylane_lightning"] = result["pennylane_lightning_over_step"] >= 10
    if "qml_over_step" in result:
        targets["at_least_40x_faster_than_qiskit_machine_learning"] = result["qml_over_step"] >= 40
    if not args.skip_exact:
        targets.update(exact_targets(result))
    result["targets_met"] = targets

    if not args.skip_scaling:
        cases = [(QUBITS, b) for b in (16, 64, 256)] + [(q, BATCH) for q in (4, 6, 8) if q != QUBITS or BATCH != 16]
        cases = list(dict.fromkeys(cases))
        rows = scaling_rows(cases, args.scaling_steps)
        result["scaling"] = rows
        log("")
        log("qubits  batch  parameter sets   step ms   Aer floor ms   step/floor")
        for r in rows:
            log(f"{r['qubits']:6d} {r['batch']:6d} {r['parameter_sets']:15d} {r['step_s'] * 1e3:9.1f} "
                f"{r['aer_floor_s'] * 1e3:14.1f} {r['step_over_aer_floor']:12.2f}")

    if not args.skip_aer_options:
        table = []
        for q in [int(v) for v in args.aer_options_qubits.split(",") if v.strip()]:
            table += aer_options_table(q, DEPTH, BATCH, args.aer_options_rounds)
        result["aer_options"] = table
        log("")
        log(f"{'Aer option':72s} qubits  sets  median ms  max |error|")
        for r in table:
            log(f"{r['option']:72s} {r['qubits']:6d} {r['parameter_sets']:5d} {r['median_s'] * 1e3:10.1f} "
                f"{r['max_abs_error']:11.1e}")

    if notes:
        result["notes"] = notes
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
