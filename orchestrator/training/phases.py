"""A run on a device is a plan of phases, each an ordinary training run in its own folder.

    1 simulator        exact Aer, the whole training (free, fast): what a simulator run does
    2 noisy-simulator  Aer with the device's noise model (its fake twin): `hardware.noisy_steps`
                       shot-frugal steps, and the head's numbers under the device's noise
    3 hardware         the device: `hardware.steps` training steps with a shot-frugal gradient
                       (or as many as runtime.max_qpu_seconds allows after the evaluation), then
                       validation and the test split on the device

Each phase starts from the previous phase's best weights, validates them first (a phase keeps
them unless its steps do better on validation), and writes `phases/<n>-<name>/` like any run
dir: checkpoints, best.pt, metrics, its summary, and on the device the job journal. A killed
run resumes in the phase it was in; finished phases are not run again. The plan, with each
phase's estimated jobs, shots and QPU seconds, is written before anything is submitted
(`plan.json`, and `orchestrate estimate` prints it); the journal keeps the budget while it runs.

Each phase is a function in PHASES that makes its PhasePlan from the run's config (or leaves
itself out): adding a phase is one such function and its place in that tuple.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from orchestrator.config import AER_SIMULATOR, Config, derive
from orchestrator.core.errors import UserError
from orchestrator.core.files import write_bytes_atomically, write_json_atomically
from orchestrator.quantum.backends import backend_family
from orchestrator.quantum.backends.aer import check_aer_capacity
from orchestrator.run_dir import RunDir
from orchestrator.training.loop import Prepared, train
from orchestrator.training.model_files import load_best_weights

log = logging.getLogger(__name__)

BUDGET_MARGIN = 0.95       # plan steps into 95% of the budget: billing is not the estimate to the second
HARDWARE_LR_FACTOR = 0.1   # phases 2 and 3 fine-tune: train.lr / 10 unless hardware.lr says


@dataclass
class PhasePlan:
    number: int
    name: str
    config: Config
    steps: Optional[int]                    # None: train.epochs decide (the simulator phase)
    jobs: int = 0
    circuits: int = 0
    shots: int = 0
    qpu_seconds: float = 0.0                # estimated; 0 off the device
    wall_seconds: float = 0.0               # estimated wall time on the device (queue, QPU, round trips)

    @property
    def folder(self) -> str:
        return f"{self.number}-{self.name}"

    def to_dict(self) -> dict:
        return {"phase": self.name, "backend": self.config.quantum.backend, "noise_model": self.config.quantum.noise_model,
                "steps": self.steps, "epochs": None if self.steps is not None else self.config.train.epochs,
                "gradient": self.config.quantum.gradient, "shots": self.config.quantum.shots,
                "eval_shots": self.config.quantum.eval_shots,
                "estimate": {"jobs": self.jobs, "circuits": self.circuits, "shots": self.shots,
                             "qpu_seconds": self.qpu_seconds, "wall_seconds": self.wall_seconds}}


def is_planned(config: Config) -> bool:
    """A run on a device is planned in phases (unless hardware.plan is false); a simulator run is
    one ordinary run."""
    return backend_family(config.quantum.backend).remote and config.hardware.plan


def phase_config(config: Config, backend: str, noise_model: Optional[str], steps: int) -> Config:
    """The config of a fine-tuning phase (2 or 3): the hardware section's shots, gradient, rate."""
    h, t = config.hardware, config.train
    return derive(config, {
        "quantum.backend": backend, "quantum.noise_model": noise_model,
        "quantum.shots": h.shots, "quantum.eval_shots": h.eval_shots, "quantum.gradient": h.gradient,
        # shots on Aer: seeded, so a resumed phase draws the same
        "quantum.seed": t.seed if config.quantum.seed is None else config.quantum.seed,
        "train.batch_size": h.batch_size or t.batch_size, "train.lr": h.lr or t.lr * HARDWARE_LR_FACTOR,
        "train.max_steps": steps,
        "train.grad_accumulation": 1,       # a device step is one job: the plan's arithmetic counts them so
        "train.patience": 1 << 20,          # a phase's steps are few and paid for: no early stop inside
        "train.checkpoint_every": 1})       # every device step is worth keeping


def simulator_phase(config: Config, split, number: int) -> Optional[PhasePlan]:
    """Phase 1, exact Aer: the whole training, free and fast."""
    simulator = derive(config, {"quantum.backend": AER_SIMULATOR, "quantum.shots": None, "quantum.noise_model": None,
                                "train.epochs": config.hardware.pretrain_epochs or config.train.epochs})
    return aer_checked(estimated(PhasePlan(number, "simulator", simulator, steps=None), split))


def noisy_simulator_phase(config: Config, split, number: int) -> Optional[PhasePlan]:
    """Phase 2, Aer under the device's noise model (its fake twin): a few shot-frugal steps."""
    twin = backend_family(config.quantum.backend).fake_twin(config.quantum.backend)
    if twin is None:
        log.warning(f"no fake twin of {config.quantum.backend}: no noisy-simulator phase")
        return None
    steps = config.hardware.noisy_steps
    noisy = PhasePlan(number, "noisy-simulator", phase_config(config, AER_SIMULATOR, twin, steps), steps=steps)
    return aer_checked(estimated(noisy, split))


def hardware_phase(config: Config, split, number: int) -> Optional[PhasePlan]:
    """Phase 3, the device: as many steps as the budget allows (or hardware.steps), then validation and test."""
    steps, work, seconds = fit_hardware_steps(phase_config(config, config.quantum.backend, None, 0), split,
                                              config.runtime.max_qpu_seconds, config.hardware.steps)
    from orchestrator.quantum.estimate import wall_seconds

    return PhasePlan(number, "hardware", phase_config(config, config.quantum.backend, None, steps), steps=steps,
                     jobs=work.jobs, circuits=work.circuits, shots=work.shots, qpu_seconds=seconds,
                     wall_seconds=wall_seconds(work.jobs, seconds,
                                               backend_family(config.quantum.backend).queue_wait_seconds(config)))


# A device run's phases, in order; a phase may leave itself out of a plan (None). Its number is its place here.
PHASES: tuple[Callable[[Config, object, int], Optional[PhasePlan]], ...] = (
    simulator_phase, noisy_simulator_phase, hardware_phase)


def plan_run(config: Config, split) -> list[PhasePlan]:
    """The phases of a device run, with the hardware steps the budget allows and every estimate."""
    planned = (plan(config, split, number) for number, plan in enumerate(PHASES, start=1))
    return [phase for phase in planned if phase is not None]


def aer_checked(phase: PhasePlan) -> PhasePlan:
    """An Aer phase must fit this machine too."""
    check_aer_capacity(phase.config.quantum.n_qubits, noisy=phase.config.quantum.noise_model is not None)
    return phase


def estimated(phase: PhasePlan, split) -> PhasePlan:
    """A phase on Aer with its jobs, circuits and shots filled in (no QPU time)."""
    from orchestrator.quantum.estimate import config_workload, phase_workload

    if phase.steps is None:
        work = config_workload(phase.config, split).run
        phase.jobs, phase.circuits = work.jobs, work.circuits
    else:
        work = phase_workload(phase.config, split, phase.steps)
        phase.jobs, phase.circuits, phase.shots = work.jobs, work.circuits, work.shots
    return phase


def describe_plan(plan: list[PhasePlan], budget: Optional[float]) -> list[str]:
    """`orchestrate estimate`'s table of a device run's phases."""
    from orchestrator.quantum.estimate import duration

    lines = [f"plan of the run (runtime.max_qpu_seconds = {'none' if budget is None else f'{budget:g} s'}):",
             f"  {'phase':<18} {'backend':<32} {'steps':>9} {'jobs':>7} {'circuits':>10} {'shots':>14} {'QPU s':>8}"]
    for phase in plan:
        q = phase.config.quantum
        backend = f"{q.backend}" + (f" + {q.noise_model} noise" if q.noise_model else "") + \
            ("" if q.shots else " (exact)")
        steps = f"{phase.config.train.epochs} epochs" if phase.steps is None else str(phase.steps)
        lines.append(f"  {phase.folder:<18} {backend:<32} {steps:>9} {phase.jobs:>7,} {phase.circuits:>10,} "
                     f"{phase.shots:>14,} {phase.qpu_seconds:>8.0f}")
    lines.append(f"  QPU seconds in all: about {sum(p.qpu_seconds for p in plan):.0f} (device steps at "
                 f"hardware.shots, validation and test at hardware.eval_shots); nothing is submitted past the budget")
    for phase in plan:
        if phase.wall_seconds:
            lines.append(f"  {phase.folder}: about {duration(phase.wall_seconds)} of wall time on the device "
                         f"({phase.jobs} round trips through its current queue)")
    return lines


def account_budget(config: Config, split) -> Config:
    """`config` with runtime.max_qpu_seconds as the account allows. On an instance with a usage
    limit (IBM's Open plan: 600 QPU s per rolling 28 days) the budget is what is left of the window
    when none is set, and never more than that; a device run that needs more than is left even
    without training steps is refused here, before anything is written."""
    left = backend_family(config.quantum.backend).qpu_seconds_left(config)
    if left is None:
        return config
    budget = config.runtime.max_qpu_seconds
    if is_planned(config):
        least = fit_hardware_steps(phase_config(config, config.quantum.backend, None, 0), split, None,
                                   config.hardware.steps or 0)[2]
        if least > left:
            raise UserError(f"the device run needs about {least:.0f} QPU s, but only {left:.0f} s are left in this "
                            f"instance's usage window (IBM's Open plan: 600 s per rolling 28 days); see "
                            f"`orchestrate usage`")
    if budget is not None and budget <= left:
        return config
    if budget is not None:
        log.warning(f"runtime.max_qpu_seconds = {budget:g} is more than the {left:.0f} s left in this instance's "
                    f"usage window: the run keeps to {left:.0f} s")
    return derive(config, {"runtime.max_qpu_seconds": round(left, 3)})


def fit_hardware_steps(config: Config, split, budget: Optional[float], steps: Optional[int]):
    """(steps, workload, QPU seconds) of the hardware phase: the steps given, or the most the
    budget allows; a plan that cannot fit the budget is refused before anything is submitted."""
    from orchestrator.quantum.estimate import device_seconds_per_shot, phase_workload

    per_shot, overhead = device_seconds_per_shot(config)

    def cost(n: int):
        work = phase_workload(config, split, n)
        return work, work.jobs * overhead + work.shots * per_shot

    if steps is None:
        if budget is None:
            log.warning("no runtime.max_qpu_seconds and no hardware.steps: the device phase evaluates only")
            steps = 0
        else:
            steps = 0
            while cost(steps + 1)[1] <= budget * BUDGET_MARGIN:
                steps += 1
    work, seconds = cost(steps)
    if budget is not None and seconds > budget:
        raise UserError(f"the device phase needs about {seconds:.0f} QPU s ({steps} steps, validation and test at "
                        f"hardware.eval_shots), more than runtime.max_qpu_seconds = {budget:g}: lower hardware.steps, "
                        f"hardware.shots or hardware.eval_shots, or raise the budget")
    return steps, work, seconds


def train_run(config: Config, prepared: Prepared, run_dir: Path | RunDir, progress: bool = True,
              resume: bool = False, plan: Optional[list[PhasePlan]] = None,
              report_epoch: Optional[Callable[[dict], None]] = None) -> dict:
    """A simulator run (one training run), or a device run's plan of phases (resumed where it stopped).
    `report_epoch`: also hand each epoch's metrics to it (a sweep's trial; not with a plan)."""
    if not is_planned(config):
        return train(config, prepared, run_dir, progress=progress, resume=resume, report_epoch=report_epoch)
    return train_planned(config, prepared, RunDir.at(run_dir), progress, plan or plan_run(config, prepared.split))


def train_planned(config: Config, prepared: Prepared, run_dir: RunDir, progress: bool,
                  plan: list[PhasePlan]) -> dict:
    """Run (or resume) every phase of the plan in order; write the run's summary; return it."""
    run_dir.write_config(config)
    # the plan as of this invocation (a resume may raise the budget: more device steps)
    write_json_atomically(run_dir / RunDir.PLAN, {"phases": [phase.to_dict() for phase in plan]})
    summaries, weights = [], None
    for phase in plan:
        phase_dir = run_dir.phase(phase.folder)
        summary = phase_dir.read_summary() if phase_dir.is_finished() else None
        if summary is None:
            log.info(f"phase {phase.number} ({phase.name}) on {phase.config.quantum.backend}"
                     + (f" with {phase.config.quantum.noise_model}'s noise" if phase.config.quantum.noise_model else "")
                     + (f": {phase.steps} steps" if phase.steps is not None else ""))
            summary = train(phase.config, prepared, phase_dir, progress=progress,
                            resume=phase_dir.has_checkpoint(), initial_model=weights)
        summaries.append(summary)
        weights = load_best_weights(phase_dir)
    final_dir = run_dir.phase(plan[-1].folder)
    for name in (RunDir.WEIGHTS, RunDir.HEAD, RunDir.BEST):   # what eval / predict load: the last phase's model
        if (final_dir / name).is_file():                      # (a phase begun by an older version has best.pt only)
            write_bytes_atomically(run_dir / name, (final_dir / name).read_bytes())
    summary = combined_summary(plan, summaries)
    run_dir.write_summary(summary)
    return summary


def combined_summary(plan: list[PhasePlan], summaries: list[dict]) -> dict:
    """The device phase's summary, with every phase's test numbers, usage and estimate beside it."""
    summary = dict(summaries[-1])
    summary["phases"] = [{**phase.to_dict(), "test": phase_summary["test"], "quantum": phase_summary["quantum"],
                          "best": phase_summary["best"], "steps_run": phase_summary["timing"]["steps"]}
                         for phase, phase_summary in zip(plan, summaries)]
    summary["timing"] = dict(summary["timing"], train_s=sum(s["timing"]["train_s"] for s in summaries),
                             steps=sum(s["timing"]["steps"] for s in summaries))
    first = summaries[0]["run"]
    summary["run"] = dict(summary["run"], started_at=first["started_at"], command=first["command"])
    return summary
