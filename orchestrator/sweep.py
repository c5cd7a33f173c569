"""`orchestrate sweep`: the same run over seeds and settings, as Ray Tune trials, with statistics.

    SWEEP_DIR/sweep.yaml      what the sweep is: its grid, seeds and every trial's resolved config
                              (written before any trial starts; a resumed sweep runs exactly these)
    SWEEP_DIR/<trial>/        each trial: an ordinary run dir (orchestrate runs / compare / eval)
    SWEEP_DIR/tune/           Ray Tune's own experiment folders (its results and logs)
    SWEEP_DIR/sweep.json      every trial's status and test numbers, and per setting the mean, std,
                              min and max over seeds of the quantum head's and the baselines' scores
    SWEEP_DIR/sweep.png       per setting, the quantum head's test F1 over seeds (mean ± std, each
                              seed a dot) beside the two baselines'
F1 is the positive class's with two classes and macro F1 with more (metrics.headline_f1).

Settings are every combination of the `--grid` values, or `--samples M` of them drawn at random
(a value may then also be a range: uniform(a,b), loguniform(a,b), randint(a,b)); each setting runs
with every seed. The vectors are embedded once, before any trial starts, into the shared cache;
trials only read it. Killed (kill -9 included) and started again with the same --sweep-dir, a
sweep skips its finished trials, resumes the ones that had a checkpoint and starts the rest.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import math
import random
import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import yaml

from orchestrator.config import Config, load_config, parse_yaml, to_dict
from orchestrator.core import locks
from orchestrator.core.errors import UserError
from orchestrator.core.files import usable_folder, write_json_atomically, write_yaml_atomically
from orchestrator.pipeline import Check, Prepared, preflight, prepare, resolve, with_vectors
from orchestrator.run_dir import RunDir, safe_name
from orchestrator.runs import dig
from orchestrator.training.metrics import headline_f1
from orchestrator.training.phases import is_planned, train_run

SPEC_FILE = "sweep.yaml"
RESULTS_FILE = "sweep.json"
CHART_FILE = "sweep.png"
TUNE_DIR = "tune"
RANGES = ("uniform", "loguniform", "randint")
AGGREGATED = ("accuracy", "f1_positive", "f1_macro")
CHARTED = (("quantum_head", "quantum head"), ("logistic_regression", "logistic regression"),
           ("classical_head", "classical head (no circuit)"))
SCORED = (("quantum_head", ("test",)), ("logistic_regression", ("classical_baseline", "logistic_regression")),
          ("classical_head", ("classical_baseline", "classical_head")))


@dataclass
class Trial:
    name: str
    setting: dict[str, Any]   # grid key -> this trial's value
    seed: int
    config: Config


def parse_grid(items: list[str]) -> dict[str, list]:
    """`section.key=v1,v2,...` (repeatable) -> {key: [values]}; each value read as YAML, so numbers
    are numbers. With --samples a value may be a range instead: loguniform(1e-4,1e-1)."""
    grid: dict[str, list] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or "." not in key or not values.strip():
            raise UserError(f"--grid {item!r} must look like section.key=value1,value2")
        if key in grid:
            raise UserError(f"--grid gives {key} twice")
        if values.strip().split("(")[0] in RANGES:
            grid[key] = [parse_range(key, values.strip())]
        else:
            grid[key] = [parse_yaml(value) for value in split_values(values)]
    return grid


def split_values(values: str) -> list[str]:
    """v1,v2,... where a value may be a bracketed YAML list ([a, b]) holding commas itself."""
    parts, depth, current = [], 0, ""
    for char in values:
        depth += (char == "[") - (char == "]")
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [part.strip() for part in parts + [current] if part.strip()]


def parse_range(key: str, text: str) -> dict:
    kind, _, rest = text.partition("(")
    try:
        low, high = (float(v) for v in rest.rstrip(")").split(","))
    except ValueError:
        raise UserError(f"--grid {key}={text}: a range is {kind}(low,high) with two numbers") from None
    if not low < high or (kind == "loguniform" and low <= 0):
        raise UserError(f"--grid {key}={text}: needs low < high" + (" and low > 0" if kind == "loguniform" else ""))
    return {"range": kind, "low": low, "high": high}


def parse_seeds(text: str) -> list[int]:
    """--seeds N (seeds 0..N-1) or a list: 0,3,7."""
    try:
        seeds = [int(v) for v in text.split(",")] if "," in text else list(range(int(text)))
    except ValueError:
        raise UserError(f"--seeds {text!r} must be a count (5) or a list of seeds (0,3,7)") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds {text!r}: give at least one seed, none twice")
    return seeds


def choose_settings(grid: dict[str, list], samples: Optional[int], sample_seed: int = 0) -> list[dict]:
    """Every combination of the grid's values, or `samples` settings drawn at random from them."""
    ranged = [key for key, values in grid.items() if isinstance(values[0], dict)]
    if samples is None:
        if ranged:
            raise UserError(f"--grid {ranged[0]} is a range: give --samples M to draw M settings from it")
        return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    if samples < 1:
        raise UserError("--samples must be at least 1")
    draw = random.Random(sample_seed)
    return [{key: sample(values, draw) for key, values in grid.items()} for _ in range(samples)]


def sample(values: list, draw: random.Random):
    if not isinstance(values[0], dict):
        return draw.choice(values)
    r = values[0]
    if r["range"] == "randint":
        return draw.randint(int(r["low"]), int(r["high"]))
    if r["range"] == "loguniform":
        return float(f"{math.exp(draw.uniform(math.log(r['low']), math.log(r['high']))):.4g}")
    return float(f"{draw.uniform(r['low'], r['high']):.4g}")


def plan_trials(config_path: Optional[str], overrides: list[str], settings: list[dict], seeds: list[int]) -> list[Trial]:
    """One trial per setting and seed, each config validated now (a bad key or value stops the sweep
    before anything is written)."""
    trials = []
    for index, setting in enumerate(settings):
        for seed in seeds:
            items = overrides + [f"{key}={json.dumps(value)}" for key, value in setting.items()] + [f"train.seed={seed}"]
            config = load_config(config_path, items)
            if is_planned(config):
                raise UserError(f"a sweep runs on simulators and fake devices without a plan, not on "
                                f"{config.quantum.backend} (set hardware.plan=false to sweep it anyway)")
            trials.append(Trial(name=trial_name(index, setting, seed), setting=setting, seed=seed, config=config))
    return trials


def trial_name(index: int, setting: dict, seed: int) -> str:
    shown = "-".join(f"{key.split('.')[-1]}{value}" for key, value in setting.items())
    return safe_name(f"s{index:02d}" + (f"-{shown}" if shown else "") + f"-seed{seed}")[:120]


def spec_of(trials: list[Trial], grid: dict, samples: Optional[int], seeds: list[int]) -> dict:
    return {"grid": grid, "samples": samples, "seeds": seeds,
            "trials": [{"name": t.name, "setting": t.setting, "seed": t.seed, "config": to_dict(t.config)}
                       for t in trials]}


def trials_of(spec: dict) -> list[Trial]:
    """The spec's trials (settle_trials resolves their configs before any runs)."""
    return [Trial(name=t["name"], setting=t["setting"], seed=t["seed"], config=Config.model_validate(t["config"]))
            for t in spec["trials"]]


@contextlib.contextmanager
def claimed_sweep_dir(sweep_dir: Path, spec: Optional[dict]) -> Iterator[dict]:
    """The sweep dir for the block, locked (a second sweep driver on it is refused at once): the
    sweep it holds, or `spec` written into a new one. A new folder that fails before its spec
    is written goes again."""
    created = not sweep_dir.exists()
    if not (sweep_dir / SPEC_FILE).is_file():
        if spec is None:
            raise UserError(f"{sweep_dir} holds no sweep ({SPEC_FILE}); give --seeds (and --grid) to start one")
        if RunDir(sweep_dir).holds_a_run():
            raise UserError(f"sweep dir {sweep_dir} already exists and is not empty; pick another --sweep-dir")
    usable_folder(sweep_dir, "sweep dir")
    try:
        with locks.held(sweep_dir / RunDir.LOCK, f"sweep dir {sweep_dir} is locked"):
            yield claim_sweep_dir(sweep_dir, spec)
    except BaseException:
        if created and not (sweep_dir / SPEC_FILE).exists():
            shutil.rmtree(sweep_dir, ignore_errors=True)
        raise


def claim_sweep_dir(sweep_dir: Path, spec: Optional[dict]) -> dict:
    """The sweep this folder holds (resumed), or `spec` written into a new one. Refuses a folder
    that holds something else, or another sweep than the one asked for."""
    recorded = sweep_dir / SPEC_FILE
    if recorded.is_file():
        held = yaml.safe_load(recorded.read_text())
        if spec is not None and comparable(held) != comparable(spec):
            raise UserError(f"{sweep_dir} holds another sweep (its {SPEC_FILE} differs); resume it with "
                            f"orchestrate sweep --sweep-dir {sweep_dir}, or pick another --sweep-dir")
        return held
    if spec is None:
        raise UserError(f"{sweep_dir} holds no sweep ({SPEC_FILE}); give --seeds (and --grid) to start one")
    if RunDir(sweep_dir).holds_a_run():
        raise UserError(f"sweep dir {sweep_dir} already exists and is not empty; pick another --sweep-dir")
    write_yaml_atomically(recorded, spec)
    return spec


def comparable(spec: dict) -> str:
    """A spec as it reads back from its YAML file."""
    return json.dumps(yaml.safe_load(yaml.safe_dump(spec)), sort_keys=True)


def run_sweep(sweep_dir: Path, spec: Optional[dict], cpus_per_trial: float = 1.0, ray_address: Optional[str] = None,
              progress: bool = True) -> dict:
    """Check every trial, claim the folder, embed once, run the unfinished trials on Ray Tune,
    write sweep.json; return it."""
    trials = trials_of(spec) if spec is not None else None
    checked = check_trials(trials) if trials is not None else {}   # before anything is written
    with claimed_sweep_dir(sweep_dir, spec) as spec:
        trials = trials if trials is not None else trials_of(spec)
        return sweep_all(sweep_dir, spec, trials, checked, cpus_per_trial, ray_address, progress)


def sweep_all(sweep_dir: Path, spec: dict, trials: list[Trial], checked: dict, cpus_per_trial: float,
              ray_address: Optional[str], progress: bool) -> dict:
    """Embed once, run the unfinished trials on Ray Tune, write sweep.json; return it."""
    from workers.sweep import run_trials

    settle_trials(trials, checked, progress)   # every distinct dataset and encoder embedded once, here
    pending = [t for t in trials if not RunDir(sweep_dir / t.name).is_finished()]
    if progress and len(pending) < len(trials):
        print(f"sweep: {len(trials) - len(pending)} of {len(trials)} trials already finished", flush=True)
    payloads = [{"name": t.name, "run_dir": str((sweep_dir / t.name).resolve()), "config": to_dict(t.config)}
                for t in pending]
    errors = run_trials(run_trial, payloads, sweep_dir / TUNE_DIR, cpus_per_trial, ray_address, progress)
    results = sweep_results(sweep_dir, spec, trials, errors)
    write_json_atomically(sweep_dir / RESULTS_FILE, results)
    write_sweep_chart(results, sweep_dir / CHART_FILE)
    return results


def check_trials(trials: list[Trial]) -> dict[str, Prepared]:
    """What can fail before any work: the backend, the dataset, the model (once per distinct
    config). Returns each distinct dataset's split, by its `data_key`, for `settle_trials`."""
    checked_backends, datasets = set(), {}
    for trial in trials:
        preflight(trial.config, [Check.TRACKERS])
        backend_key = json.dumps(to_dict(trial.config)["quantum"], sort_keys=True)
        if backend_key not in checked_backends:     # the same backend once (an ibm_ device is a connection)
            checked_backends.add(backend_key)
            preflight(trial.config, [Check.BACKEND])
        if data_key(trial.config) not in datasets:  # the same dataset and encoder once
            preflight(trial.config, [Check.CACHE, Check.ENCODER])
            datasets[data_key(trial.config)] = prepare(trial.config, progress=False, embed=False)
    return datasets


def settle_trials(trials: list[Trial], checked: dict[str, Prepared], progress: bool) -> None:
    """Embed each distinct (dataset, encoder) once, and resolve every trial's config ('auto' pooling,
    absolute paths: a Tune trial runs in a folder of its own), so trials only read the cache.
    `checked`: the splits `check_trials` already made."""
    settled: dict[str, Prepared] = {}
    for trial in trials:
        key = data_key(trial.config)
        if key not in settled:
            settled[key] = (with_vectors(checked[key], trial.config, progress) if key in checked
                            else prepare(trial.config, progress=progress))
        trial.config = resolve(trial.config, settled[key])


def data_key(config: Config) -> str:
    """What decides a trial's dataset, split and vectors."""
    return json.dumps({k: to_dict(config)[k] for k in ("data", "embedding")}, sort_keys=True)


def run_trial(payload: dict, report: Callable[[dict], None]) -> dict:
    """One trial, in its Ray Tune worker: the run dir trained (or resumed) to its summary."""
    config = Config.model_validate(payload["config"])
    with RunDir(payload["run_dir"]).locked() as run_dir:
        resume = run_dir.has_started() and not run_dir.is_finished()
        if not resume:                         # killed before its first checkpoint: nothing to keep
            run_dir.clear_but_lock()
        prepared = prepare(config, progress=False)
        summary = train_run(config, prepared, run_dir, progress=False, resume=resume, report_epoch=report)
    f1 = headline_f1(len(summary["labels"]))
    return {"test_accuracy": summary["test"]["accuracy"], "test_f1": summary["test"][f1],
            "logistic_regression_f1": summary["classical_baseline"]["logistic_regression"][f1]}


def sweep_results(sweep_dir: Path, spec: dict, trials: list[Trial], errors: dict[str, Optional[str]]) -> dict:
    """sweep.json: every trial as its run dir tells, and per setting the statistics over seeds."""
    rows = []
    for trial in trials:
        summary = RunDir(sweep_dir / trial.name).read_summary()
        status = "finished" if summary else ("failed" if errors.get(trial.name) else "stopped")
        rows.append({"name": trial.name, "run_dir": str(sweep_dir / trial.name), "setting": trial.setting,
                     "seed": trial.seed, "status": status, "error": errors.get(trial.name) if not summary else None,
                     "config": to_dict(trial.config),
                     "test": summary["test"] if summary else None,
                     "classical_baseline": summary["classical_baseline"] if summary else None})
    classes = {len(row["test"]["confusion"]) for row in rows if row["test"]}
    return {"sweep_dir": str(sweep_dir), "grid": spec["grid"], "samples": spec["samples"], "seeds": spec["seeds"],
            "f1": headline_f1(max(classes, default=2)), "trials": rows, "settings": aggregate(rows)}


def aggregate(rows: list[dict]) -> list[dict]:
    """Per setting (in the order first seen): over its finished trials, the mean, std (sample, n-1),
    min and max of accuracy, F1 of the positive class and macro F1 of the quantum head and of each
    baseline, and the quantum head's scores seed by seed (`per_seed`, the chart's dots)."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(json.dumps(row["setting"], sort_keys=True), []).append(row)
    settings = []
    for members in groups.values():
        done = [row for row in members if row["status"] == "finished"]
        entry = {"setting": members[0]["setting"], "trials": len(members), "finished": len(done),
                 "seeds": [row["seed"] for row in done]}
        for name, path in SCORED:
            scores = [dig(row, path) for row in done]
            entry[name] = {metric: stats([s[metric] for s in scores if metric in s]) for metric in AGGREGATED}
        entry["per_seed"] = [{"seed": row["seed"], **{m: row["test"].get(m) for m in AGGREGATED}} for row in done]
        settings.append(entry)
    return settings


def stats(values: list[float]) -> Optional[dict]:
    if not values:
        return None
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


def setting_label(results: dict, entry: dict) -> str:
    """'depth=2, lr=0.01': a setting by the last part of each grid key."""
    return ", ".join(f"{key.split('.')[-1]}={entry['setting'][key]}" for key in results["grid"]) or "(config as given)"


def sweep_table(results: dict) -> str:
    """The statistics as the terminal shows them: one line per setting, mean ± std (min) over seeds."""
    f1 = results.get("f1", "f1_positive")
    word = "F1" if f1 == "f1_positive" else "macro F1"
    head = (f"{'setting':<36} {'seeds':>5}  {'quantum acc':>15}  {'quantum ' + word:>21}  {'logreg ' + word:>15}  "
            f"{'classical head ' + word:>17}")
    lines = [f"sweep {results['sweep_dir']}: {sum(t['status'] == 'finished' for t in results['trials'])} of "
             f"{len(results['trials'])} trials finished", head]
    for entry in results["settings"]:
        q, lr, ch = entry["quantum_head"], entry["logistic_regression"], entry["classical_head"]
        lines.append(f"{setting_label(results, entry)[:36]:<36} {entry['finished']:>5}  {pm(q['accuracy']):>15}  "
                     f"{pm(q[f1]) + minimum(q[f1]):>21}  {pm(lr[f1]):>15}  {pm(ch[f1]):>17}")
    failed = [t for t in results["trials"] if t["status"] != "finished"]
    for trial in failed:
        lines.append(f"{trial['status']}: {trial['name']}" + (f": {trial['error']}" if trial["error"] else ""))
    return "\n".join(lines)


def pm(s: Optional[dict]) -> str:
    return "-" if s is None else f"{s['mean']:.3f} ± {s['std']:.3f}"


def minimum(s: Optional[dict]) -> str:
    return "" if s is None else f" ({s['min']:.3f})"


def write_sweep_chart(results: dict, target: Path) -> Optional[Path]:
    """sweep.png: per setting, the quantum head's test F1 as mean ± std over seeds with each seed a
    dot, and the logistic regression's and classical head's beside it; nothing without matplotlib
    or without a finished trial."""
    settings = [entry for entry in results["settings"] if entry["finished"]]
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    if not settings:
        return None
    import numpy as np

    from orchestrator.training.report import save_figure

    f1 = results.get("f1", "f1_positive")
    n = len(settings)
    figure, axes = plt.subplots(figsize=(max(5.5, 1.6 + 1.3 * n), 4.6))
    x, width = np.arange(n), 0.26
    for k, (name, label) in enumerate(CHARTED):
        means = [entry[name][f1]["mean"] if entry[name][f1] else np.nan for entry in settings]
        stds = [entry[name][f1]["std"] if entry[name][f1] else 0.0 for entry in settings]
        axes.errorbar(x + (k - 1) * width, means, yerr=stds, fmt="o", markersize=7, capsize=5, label=label)
    for i, entry in enumerate(settings):    # the quantum head's seeds, one dot each
        values = [seed[f1] for seed in entry["per_seed"] if seed.get(f1) is not None]
        axes.scatter(np.full(len(values), x[i] - width) + np.linspace(-0.05, 0.05, len(values)), values,
                     s=12, color="black", alpha=0.45, zorder=3, label="quantum head, each seed" if i == 0 else None)
    names = [setting_label(results, entry) for entry in settings]
    rotate = n > 3 or max(map(len, names)) > 14
    axes.set_xticks(x, names, rotation=30 if rotate else 0, ha="right" if rotate else "center",
                    rotation_mode="anchor", fontsize=9)
    axes.set_ylabel(f"test {'F1 (positive class)' if f1 == 'f1_positive' else 'macro F1'}")
    seeds = max(entry["finished"] for entry in settings)
    axes.set_title(f"sweep: test {'F1' if f1 == 'f1_positive' else 'macro F1'}, mean ± std over up to {seeds} seeds")
    axes.grid(axis="y", alpha=0.3)
    figure.legend(fontsize="small", loc="lower center", ncol=2, frameon=False)   # below the axes, off the dots
    figure.tight_layout(rect=(0, 0.14, 1, 1))
    save_figure(figure, target)
    plt.close(figure)
    return target
