"""What a training run will submit, before it submits anything: `orchestrate estimate`.

Pure arithmetic on the split sizes and the config, mirroring the training loop and the runner:
every training step is one request of batch x rows-per-sample parameter sets (the gradient
method's table: 1 + 2 x (inputs + weights) for parameter shift), every validation pass one
request of the validation rows, the test pass one request of the test rows; a request is split
into jobs only at the per-job limit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from orchestrator.config import Config
from orchestrator.core.paulis import measurement_bases
from orchestrator.data.splits import Split
from orchestrator.quantum.backends import backend_family
from orchestrator.quantum.circuits import QuantumSpec
from orchestrator.quantum.gradients import GradientMethod, ParameterShift, gradient_method
from orchestrator.quantum.runner import plan_jobs


@dataclass(frozen=True)
class Workload:
    jobs: int
    circuits: int        # parameter sets evaluated

    def shots(self, shots_per_set: Optional[int]) -> int:
        return self.circuits * (shots_per_set or 0)

    def __add__(self, other: "Workload") -> "Workload":
        return Workload(self.jobs + other.jobs, self.circuits + other.circuits)

    def times(self, n: int) -> "Workload":
        return Workload(self.jobs * n, self.circuits * n)


@dataclass(frozen=True)
class RunEstimate:
    steps_per_epoch: int
    epochs: int
    step: Workload               # one training step of a full batch
    training_epoch: Workload     # the training steps of one epoch
    validation: Workload         # one validation pass (once per epoch)
    test: Workload               # the final test pass
    largest_job: int             # parameter sets in the largest job

    @property
    def epoch(self) -> Workload:
        return self.training_epoch + self.validation

    @property
    def run(self) -> Workload:
        return self.epoch.times(self.epochs) + self.test


def request_workload(rows: int, max_per_job: Optional[int]) -> Workload:
    return Workload(jobs=len(plan_jobs(rows, max_per_job)), circuits=rows)


def estimate_run(train_rows: int, val_rows: int, test_rows: int, spec: QuantumSpec, batch_size: int,
                 epochs: int, max_per_job: Optional[int] = None,
                 gradient: GradientMethod = ParameterShift()) -> RunEstimate:
    """Jobs and parameter sets of a whole run (no early stop: the most it can cost)."""
    rows_per_sample = gradient.rows_per_sample(spec.n_inputs, spec.n_weights)
    steps = math.ceil(train_rows / batch_size)
    full, last = divmod(train_rows, batch_size)
    step = request_workload(batch_size * rows_per_sample, max_per_job)
    training = step.times(full)
    if last:
        training = training + request_workload(last * rows_per_sample, max_per_job)
    return RunEstimate(steps_per_epoch=steps, epochs=epochs, step=step, training_epoch=training,
                       validation=request_workload(val_rows, max_per_job),
                       test=request_workload(test_rows, max_per_job),
                       largest_job=min(max(batch_size * rows_per_sample, val_rows, test_rows),
                                       max_per_job or 1 << 62))


def qpu_seconds(work: Workload, shots: int, seconds_per_shot: float, overhead_per_job: float) -> float:
    return work.jobs * overhead_per_job + work.circuits * shots * seconds_per_shot


def duration(seconds: float) -> str:
    """'42 s', '3.5 min', '7.2 h', '3.1 days'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def config_workload(config: Config, split: Split) -> RunEstimate:
    """`estimate_run` for a config's circuit, batch, epochs, job limit and gradient on `split`."""
    q, t = config.quantum, config.train
    return estimate_run(len(split.train), len(split.val), len(split.test), QuantumSpec.of(q), t.batch_size,
                        t.epochs, q.max_parameter_sets_per_job, gradient_method(q, t.seed))


def estimate_dict(config: Config, split: Split) -> dict:
    """`orchestrate estimate --json`: what `describe` prints, as numbers."""
    q = config.quantum
    family = backend_family(q.backend)
    shots = family.default_shots(config)
    plan = config_workload(config, split)
    parts = {"step": plan.step, "epoch": plan.epoch, "run": plan.run}
    spec = QuantumSpec.of(q)
    result = {"backend": q.backend, "n_qubits": q.n_qubits, "depth": q.depth, "encoding": q.encoding,
              "entangler": q.entangler, "observables": list(spec.observables),
              "measurement_bases": len(measurement_bases(spec.observables)), "shots": shots,
              "split": {"train": len(split.train), "val": len(split.val), "test": len(split.test)},
              "steps_per_epoch": plan.steps_per_epoch, "epochs": plan.epochs,
              **{name: {"jobs": w.jobs, "circuits": w.circuits, "shots": w.shots(shots)} for name, w in parts.items()},
              "qpu_seconds": None}
    if family.remote:
        per_shot, per_job = device_seconds_per_shot(config)
        result["qpu_seconds"] = {name: qpu_seconds(w, shots, per_shot, per_job) for name, w in parts.items()}
        queue = family.queue_wait_seconds(config)
        result["wall_seconds"] = {name: wall_seconds(w.jobs, result["qpu_seconds"][name], queue)
                                  for name, w in parts.items()}
    return result


def describe(config: Config, split: Split) -> list[str]:
    """`orchestrate estimate`'s lines: jobs, circuits and shots per step, epoch and run, and on
    a device the QPU time from its own timing (repetition delay + circuit duration)."""
    q, t = config.quantum, config.train
    spec = QuantumSpec.of(q)
    family = backend_family(q.backend)
    shots = family.default_shots(config)
    plan = config_workload(config, split)
    shots_text = f"{shots} shots per parameter set" if shots else "exact (no shots)"
    bases = len(measurement_bases(spec.observables))
    lines = [f"backend {q.backend}: {spec.n_qubits} qubits, depth {spec.depth}, {shots_text}; {split.describe()}",
             f"circuit: {q.encoding} encoding, {q.entangler}, {spec.n_observables} observables "
             f"({', '.join(spec.observables)}); {bases} measurement basis{'' if bases == 1 else 'es'} on a device",
             f"{'':<36} {'jobs':>8} {'circuits':>12} {'shots':>16}"]
    for label, work in (("one training step", plan.step),
                        (f"one epoch ({plan.steps_per_epoch} steps + validation)", plan.epoch),
                        (f"whole run ({t.epochs} epochs + test)", plan.run)):
        lines.append(f"{label:<36} {work.jobs:>8,} {work.circuits:>12,} {work.shots(shots):>16,}")
    if not family.remote:
        return lines + ["QPU time: none (a local simulator)"]
    per_shot, per_job = device_seconds_per_shot(config)
    lines.append(f"QPU time if every step ran on the device (estimate: {per_job:g} s per job + shots x "
                 f"{per_shot * 1e6:.0f} us per shot, repetition delay + circuit duration on {q.backend}):")
    queue = family.queue_wait_seconds(config)
    lines.append(f"  {'':<22} {'QPU':>10} {'wall (queue ~' + duration(queue) + ' a job)':>28}")
    for label, work in (("one training step", plan.step), ("one epoch", plan.epoch), ("whole run", plan.run)):
        qpu = qpu_seconds(work, shots, per_shot, per_job)
        lines.append(f"  {label:<22} {duration(qpu):>10} {duration(wall_seconds(work.jobs, qpu, queue)):>28}")
    return lines


@dataclass(frozen=True)
class PhaseWorkload:
    jobs: int
    circuits: int
    shots: int


def phase_workload(config: Config, split: Split, steps: int) -> PhaseWorkload:
    """What a fine-tuning phase of `steps` steps submits: its starting weights validated, the steps
    (full batches, at quantum.shots), a validation at each epoch end, the test split (at
    quantum.eval_shots)."""
    q, t = config.quantum, config.train
    spec = QuantumSpec.of(q)
    rows_per_step = t.batch_size * gradient_method(q, t.seed).rows_per_sample(spec.n_inputs, spec.n_weights)
    step = request_workload(rows_per_step, q.max_parameter_sets_per_job)
    validation = request_workload(len(split.val), q.max_parameter_sets_per_job)
    test = request_workload(len(split.test), q.max_parameter_sets_per_job)
    epoch_ends = math.ceil(steps / math.ceil(len(split.train) / t.batch_size)) if steps else 0
    evaluation = validation.times(1 + epoch_ends) + test
    eval_shots = q.eval_shots or q.shots or 0
    return PhaseWorkload(jobs=step.jobs * steps + evaluation.jobs, circuits=step.circuits * steps + evaluation.circuits,
                         shots=step.circuits * steps * (q.shots or 0) + evaluation.circuits * eval_shots)


ROUND_TRIP_SECONDS = 3.0   # the client's part of a job: submit, poll until done, fetch the result


def wall_seconds(jobs: int, qpu: float, queue_wait: float) -> float:
    """Expected wall time of `jobs` jobs submitted one after another (a training step waits for its
    job) costing `qpu` QPU seconds in all: each waits `queue_wait` in the device's queue (its
    family's estimate: `queue_wait_seconds`) and a client round trip."""
    return jobs * (queue_wait + ROUND_TRIP_SECONDS) + qpu


def device_seconds_per_shot(config: Config) -> tuple[float, float]:
    """(QPU seconds per shot of the configured circuit on its device, every measurement basis
    counted; QPU seconds per job), as the backend's family estimates them."""
    family = backend_family(config.quantum.backend)
    return family.seconds_per_shot(config), family.job_overhead_s
