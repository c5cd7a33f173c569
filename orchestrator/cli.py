"""The `orchestrate` command.

Every command that reads a dataset accepts --config, --data, --limit, --drop-empty and --set.
Bad input ends with one line `error: ...` on stderr and exit code 2, before anything is written;
a run that stops resumably (budget, backend, SIGTERM) exits 75, Ctrl-C 130 (orchestrator/core/errors.py).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

import numpy as np

from orchestrator.core import invocation
from orchestrator.core.errors import (EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_RESUMABLE, Interrupted, ResumableStop,
                                      Terminated, UserError)
from orchestrator.core.log import show_messages_on_stderr


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="F", help="YAML run config (see configs/)")
    parser.add_argument("--data", metavar="PATH", help="dataset file (UCI TSV, CSV, TSV, JSONL, Parquet), a Hugging "
                                                       "Face datasets folder or hf:NAME[:SPLIT]; overrides data.path")
    parser.add_argument("--limit", type=int, metavar="N", help="use only the first N rows of the dataset")
    parser.add_argument("--drop-empty", action="store_true", help="drop empty texts instead of refusing the file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set embedding.max_length=64 (repeatable)")
    parser.add_argument("--cache-dir", metavar="D", help="embedding cache folder; overrides embedding.cache_dir")
    parser.add_argument("--ray-address", metavar="ADDR", help="join this Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orchestrate", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    embed = commands.add_parser("embed", help="embed a dataset into the HDF5 cache (computed once, resumable)")
    add_dataset_arguments(embed)
    embed.add_argument("--workers", type=int, metavar="N", help="embedding actors (default: one per GPU, else per core)")
    embed.set_defaults(func=cmd_embed)

    run = commands.add_parser("run", help="embed (or reuse the cache), train the hybrid head, evaluate, write a run dir")
    add_dataset_arguments(run)
    run.add_argument("--epochs", type=int, metavar="E", help="training epochs; overrides train.epochs")
    run.add_argument("--run-dir", metavar="D", help="where to write the run (default: runs/<time>-<dataset>-<backend>)")
    run.add_argument("--backend", metavar="NAME", help="quantum backend; overrides quantum.backend (aer_simulator)")
    run.add_argument("--json", action="store_true", help="print the run dir and summary.json as one JSON object")
    run.set_defaults(func=cmd_run)

    add_run_dir_commands(commands)

    backends = commands.add_parser("backends", help="list the quantum backends: Aer, fake devices, your IBM Quantum devices")
    backends.add_argument("--config", metavar="F", help="run config whose runtime section names the channel / instance")
    backends.add_argument("--json", action="store_true", help="one JSON object per backend, one per line")
    backends.set_defaults(func=cmd_backends)

    usage = commands.add_parser("usage", help="your IBM Quantum instance's QPU usage in its current window, and "
                                              "what is left (IBM's Open plan: 600 s per rolling 28 days)")
    usage.add_argument("--config", metavar="F", help="run config whose runtime section names the instance / url")
    usage.add_argument("--backend", metavar="NAME", help="also this ibm_<device>'s status and queue")
    usage.add_argument("--set", dest="overrides", action="append", default=[], metavar="runtime.KEY=VALUE",
                       help="override a runtime setting, e.g. --set runtime.url=http://... (repeatable)")
    usage.add_argument("--json", action="store_true", help="the usage as one JSON object")
    usage.set_defaults(func=cmd_usage)

    add_run_listing_commands(commands)
    add_sweep_command(commands)
    estimate = commands.add_parser("estimate", help="jobs, circuits, shots and QPU time a run would cost, before spending any")
    add_dataset_arguments(estimate)
    estimate.add_argument("--epochs", type=int, metavar="E", help="training epochs; overrides train.epochs")
    estimate.add_argument("--backend", metavar="NAME", help="quantum backend; overrides quantum.backend")
    estimate.add_argument("--json", action="store_true", help="the estimate (and a device run's plan) as one JSON object")
    estimate.set_defaults(func=cmd_estimate)
    return parser


RUN_DIR_ADDRESS_HELP = "join this Ray cluster (default: RAY_ADDRESS, else the run's, else a local Ray)"


def add_run_dir_commands(commands) -> None:
    """`resume`, `eval` and `predict`: what works on a run dir that `run` wrote."""
    resume = commands.add_parser("resume", help="continue an interrupted `orchestrate run` from its last checkpoint")
    resume.add_argument("run_dir", metavar="RUN_DIR", help="the run dir of the interrupted run")
    resume.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    resume.add_argument("--ray-address", metavar="ADDR", help=RUN_DIR_ADDRESS_HELP)
    resume.add_argument("--set", dest="overrides", action="append", default=[], metavar="runtime.KEY=VALUE",
                        help="change a runtime setting for the rest of the run, e.g. runtime.max_qpu_seconds=600 "
                             "(other sections are fixed: the resumed run must be the same run)")
    resume.add_argument("--json", action="store_true", help="print the run dir and summary.json as one JSON object")
    resume.set_defaults(func=cmd_resume)

    evaluate = commands.add_parser("eval", help="score a run's best model on its test split or on another labelled file")
    evaluate.add_argument("run_dir", metavar="RUN_DIR", help="a run dir written by orchestrate run")
    evaluate.add_argument("--data", metavar="F", help="a labelled file in the run's format, a Parquet file, a Hugging "
                                                      "Face datasets folder or hf:NAME[:SPLIT], with the run's "
                                                      "columns (default: the run's test split)")
    evaluate.add_argument("--backend", metavar="NAME", help="evaluate on this backend instead of the run's")
    evaluate.add_argument("--cache-dir", metavar="D", help="embedding cache folder; overrides the run's")
    evaluate.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    evaluate.add_argument("--ray-address", metavar="ADDR", help=RUN_DIR_ADDRESS_HELP)
    evaluate.add_argument("--json", action="store_true", help="print the scores as one JSON object")
    evaluate.set_defaults(func=cmd_eval)

    predict = commands.add_parser("predict", help="label texts with a run's best model")
    predict.add_argument("run_dir", metavar="RUN_DIR", help="a run dir written by orchestrate run")
    predict.add_argument("texts", nargs="*", metavar="TEXT", help="texts to classify")
    predict.add_argument("--file", metavar="F", help="classify every line of F ('-': standard input)")
    predict.add_argument("--data", metavar="D", help="classify every text of a labelled dataset (what run's --data "
                                                     "takes), read with the run's columns")
    predict.add_argument("--backend", metavar="NAME", help="predict on this backend instead of the run's")
    predict.add_argument("--json", action="store_true", help="one JSON object per text, with every class's probability")
    predict.set_defaults(func=cmd_predict)


def add_run_listing_commands(commands) -> None:
    """`runs` and `compare`: what the run dirs hold, read without training anything."""
    listing = commands.add_parser("runs", help="list run dirs: finished, resumable or incomplete, with their test numbers")
    listing.add_argument("root", nargs="?", default="runs", metavar="DIR", help="where the run dirs are (default: runs)")
    listing.add_argument("--json", action="store_true", help="one JSON object per run, one per line")
    listing.set_defaults(func=cmd_runs)
    compare = commands.add_parser("compare", help="two or more runs side by side: the config keys that differ, the metrics")
    compare.add_argument("runs", nargs="+", metavar="RUN_DIR")
    compare.add_argument("--json", action="store_true", help="the comparison as one JSON object")
    compare.set_defaults(func=cmd_compare)


def add_sweep_command(commands) -> None:
    sweep = commands.add_parser("sweep", help="the same run over seeds and a grid of settings, as Ray Tune trials; "
                                              "mean, std, min and max over seeds")
    add_dataset_arguments(sweep)
    sweep.add_argument("--seeds", metavar="N", help="seeds 0..N-1 for every setting, or a list: 0,3,7 (default 3)")
    sweep.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                       help="a config key and its values, e.g. --grid train.lr=0.001,0.003 (repeatable); "
                            "every combination runs, or with --samples M, M drawn at random")
    sweep.add_argument("--samples", type=int, metavar="M", help="draw M settings at random from the grid; a value may "
                                                                 "then be a range: loguniform(1e-4,1e-1)")
    sweep.add_argument("--sweep-dir", metavar="D", help="where the trials' run dirs and sweep.json go "
                                                        "(default: sweeps/<time>-<dataset>); an existing sweep resumes")
    sweep.add_argument("--epochs", type=int, metavar="E", help="training epochs; overrides train.epochs")
    sweep.add_argument("--backend", metavar="NAME", help="quantum backend; overrides quantum.backend")
    sweep.add_argument("--trial-cpus", type=float, default=1.0, metavar="C",
                       help="CPUs each trial holds (default 1): trials run as many at once as the cluster's CPUs allow")
    sweep.add_argument("--json", action="store_true", help="print sweep.json instead of the table")
    sweep.set_defaults(func=cmd_sweep)


def loaded_config(args: argparse.Namespace):
    """The config file with every command-line flag folded in as an override (checked with it)."""
    from orchestrator.config import load_config

    return load_config(args.config, resolved_overrides(args))


def resolved_overrides(args: argparse.Namespace) -> list[str]:
    """--set items, then every command-line flag as the config key it overrides."""
    overrides = list(args.overrides)
    flags = (("data", "data.path"), ("limit", "data.limit"), ("cache_dir", "embedding.cache_dir"),
             ("workers", "embedding.workers"), ("ray_address", "ray.address"), ("epochs", "train.epochs"),
             ("backend", "quantum.backend"))
    for flag, key in flags:
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"{key}={json.dumps(value)}")   # quoted: a path is never read as YAML
    if getattr(args, "drop_empty", False):
        overrides.append("data.drop_empty=true")
    return overrides


def train_resumably(run_dir, train):
    """`train()`, turning a backend that gave up, a spent QPU budget, SIGTERM or Ctrl-C into one
    line that says how to continue (the run dir keeps its last checkpoint and job journal)."""
    from orchestrator.core.errors import BackendFailure
    from orchestrator.quantum.journal import QpuBudgetExceeded

    resume = f"continue it with: orchestrate resume {run_dir}"
    try:
        return train()
    except (BackendFailure, QpuBudgetExceeded) as problem:
        raise ResumableStop(f"{problem}. The run stopped; {resume}") from None
    except Terminated:
        raise ResumableStop(f"terminated (SIGTERM). The run stopped; {resume}") from None
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; continue the run with: orchestrate resume {run_dir}") from None


def raise_on_sigterm(signum, frame) -> None:
    raise Terminated()


def cmd_embed(args: argparse.Namespace) -> int:
    from orchestrator.data.datasets import load_dataset
    from orchestrator.pipeline import EMBED, embed_vectors, preflight

    config = loaded_config(args)
    dataset = load_dataset(config.data)
    preflight(config, EMBED)        # an unknown model, a max_length past it: before any output
    counts = ", ".join(f"{name} {int((dataset.labels == i).sum())}" for i, name in enumerate(dataset.label_names))
    dropped = f", {dataset.dropped_empty} empty dropped" if dataset.dropped_empty else ""
    print(f"dataset: {dataset.source}  rows {len(dataset)} ({counts}{dropped})", file=sys.stderr)
    report = embed_vectors(dataset, config, progress=not args.quiet)
    print(report.final_line())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from orchestrator.pipeline import RUN, data_name, preflight, prepare_run
    from orchestrator.run_dir import RunDir, default_run_dir
    from orchestrator.training.phases import train_run
    from orchestrator.training.report import report_table

    config = loaded_config(args)
    preflight(config, RUN)
    name = data_name(config, args.config)
    run_dir = RunDir(args.run_dir) if args.run_dir else default_run_dir(name, config.quantum.backend)
    with run_dir.claimed():     # created and locked first; gone again if this fails before training
        config, prepared, plan = prepare_run(config, name, progress=not args.quiet)
        summary = train_resumably(run_dir, lambda: train_run(config, prepared, run_dir, progress=not args.quiet,
                                                             plan=plan))
    print(json.dumps({"run_dir": str(run_dir), "summary": summary}) if args.json else report_table(summary, run_dir))
    return 0


def address_now(args: argparse.Namespace, saved: str | None) -> str | None:
    """The Ray cluster to use for a run dir: --ray-address or RAY_ADDRESS as given now, else the
    one the run recorded (a resumed run follows the cluster it is resumed on)."""
    return args.ray_address or os.environ.get("RAY_ADDRESS") or saved


def cmd_resume(args: argparse.Namespace) -> int:
    from orchestrator.pipeline import RESUME, preflight, prepare, resolve
    from orchestrator.run_dir import RunDir
    from orchestrator.training.phases import train_run
    from orchestrator.training.report import report_table

    fixed = [item for item in args.overrides if not item.strip().startswith("runtime.")]
    if fixed:
        raise UserError(f"resume --set changes runtime settings only, not {fixed[0]!r}: the resumed run must "
                        f"train the same model on the same data")
    with RunDir(args.run_dir).existing().locked() as run_dir:
        if run_dir.is_finished():
            raise UserError(f"the run in {run_dir} already finished (summary.json exists)")
        if not run_dir.has_started():
            raise UserError(f"the run in {run_dir} stopped before its first checkpoint; start it again with "
                            f"orchestrate run")
        config = run_dir.read_config(args.overrides)
        preflight(config, RESUME)
        config = resolve(config, ray_address=address_now(args, config.ray.address))
        prepared = prepare(config, progress=not args.quiet)
        summary = train_resumably(run_dir, lambda: train_run(config, prepared, run_dir, progress=not args.quiet,
                                                             resume=True))
    print(json.dumps({"run_dir": str(run_dir), "summary": summary}) if args.json else report_table(summary, run_dir))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from orchestrator.run_dir import RunDir

    with RunDir(args.run_dir).existing().locked():     # its evals/ is written to
        return evaluate_run(args)


def evaluate_run(args: argparse.Namespace) -> int:
    from orchestrator.config import derive
    from orchestrator.core.files import write_json_atomically
    from orchestrator.data.datasets import format_for_other_file
    from orchestrator.inference import load_run
    from orchestrator.pipeline import prepare
    from orchestrator.run_dir import RunDir, safe_name

    run = load_run(args.run_dir, backend=args.backend, ray_address=address_now(args, None))
    changes = {"embedding.cache_dir": args.cache_dir} if args.cache_dir else {}
    if args.data:
        # the run's column mapping and label order, so class i means what it meant in training
        changes.update({"data.path": args.data, "data.labels": run.label_names,
                        "data.positive_label": run.positive_label, "data.limit": None,
                        "data.format": format_for_other_file(run.config.data.format, args.data)})
    config = derive(run.config, changes)
    prepared = prepare(config, progress=not args.quiet, whole_file=bool(args.data))
    dataset = prepared.dataset
    rows = prepared.split.test if prepared.split is not None else np.arange(len(dataset))
    name = Path(dataset.source).name if args.data else "test split"
    print(f"evaluating {len(rows)} rows ({name})", file=sys.stderr)
    scores = run.evaluate(run.inputs(prepared, rows), dataset.labels[rows])
    result = {"run_dir": str(run.run_dir), "data": dataset.source if args.data else "test split",
              "rows": int(len(rows)), "backend": config.quantum.backend, "accuracy": scores.accuracy,
              "f1_positive": scores.f1_positive, "f1_macro": scores.f1_macro, "f1_weighted": scores.f1_weighted,
              "confusion": scores.confusion, "per_class": scores.per_class(run.label_names),
              "labels": run.label_names, "positive_label": run.positive_label}
    target = run.run_dir / RunDir.EVALS / f"{safe_name(Path(args.data).stem if args.data else 'test')}.json"
    write_json_atomically(target, result)
    if args.json:
        print(json.dumps(dict(result, written=str(target))))
        return 0
    if scores.n_classes <= 2:
        print(f"{name}: rows {len(rows)}  accuracy {scores.accuracy:.4f}  F1 {run.positive_label} "
              f"{scores.f1_positive:.4f}  F1 macro {scores.f1_macro:.4f}  confusion {scores.confusion}")
    else:     # one class's F1 says little among many: accuracy, macro and weighted F1, then each class
        print(f"{name}: rows {len(rows)}  accuracy {scores.accuracy:.4f}  F1 macro {scores.f1_macro:.4f}  "
              f"F1 weighted {scores.f1_weighted:.4f}")
        for label, c in scores.per_class(run.label_names).items():
            print(f"  {label}: precision {c['precision']:.3f}  recall {c['recall']:.3f}  F1 {c['f1']:.3f}  "
                  f"rows {c['support']}")
    print(f"written: {target}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from orchestrator.inference import check_texts, dataset_texts, load_run, read_texts

    if sum(map(bool, (args.texts, args.file, args.data))) != 1:
        raise UserError("give the texts to classify as arguments or with --file F (or --data D): one of them")
    texts = check_texts(args.texts) if args.texts else read_texts(args.file) if args.file else None
    run = load_run(args.run_dir, backend=args.backend, ray_address=os.environ.get("RAY_ADDRESS"))
    if texts is None:
        texts = dataset_texts(run, args.data)
    probabilities = run.probabilities(run.text_inputs(texts))
    for text, row in zip(texts, probabilities):
        label = run.label_names[int(row.argmax())]
        if args.json:
            print(json.dumps({"text": text, "label": label, "probability": float(row.max()),
                              "probabilities": dict(zip(run.label_names, map(float, row)))}))
        else:
            print(f"{label}\t{row.max():.4f}\t{text}")
    return 0


def cmd_backends(args: argparse.Namespace) -> int:
    from orchestrator.config import load_config
    from orchestrator.quantum.backends import FAMILIES

    config = load_config(args.config)
    rows, notes = [], []
    for family in FAMILIES.values():
        try:
            rows += family.listing(config)
        except UserError as problem:      # no IBM credentials: the rest is listed
            notes.append(f"{family.title}: not listed: {problem}")
    note = "\n".join(notes) or None
    if args.json:
        for row in rows:
            print(json.dumps(row))
        if note:
            print(note, file=sys.stderr)
        return 0
    print(f"{'backend':<22} {'qubits':>6}  {'processor':<13} {'queue':>5}  status")
    for row in rows:
        qubits = "" if row["qubits"] is None else str(row["qubits"])
        queue = "" if row["queue"] is None else str(row["queue"])
        print(f"{row['name']:<22} {qubits:>6}  {row.get('processor') or '':<13} {queue:>5}  {row['status']}")
    if note:
        print(note, file=sys.stderr)
    return 0


def cmd_usage(args: argparse.Namespace) -> int:
    from orchestrator.config import load_config
    from orchestrator.quantum.backends.ibm import describe_usage, instance_usage

    config = load_config(args.config, args.overrides)
    usage = instance_usage(config, args.backend)
    print(json.dumps(usage) if args.json else "\n".join(describe_usage(usage)))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from orchestrator.runs import list_runs, runs_table

    rows = list_runs(args.root)
    if args.json:
        for row in rows:
            print(json.dumps(row))
    else:
        print(runs_table(rows) if rows else f"no run dirs under {args.root}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from orchestrator.runs import compare_runs, comparison_table

    if len(args.runs) < 2:
        raise UserError("compare needs at least two run dirs")
    comparison = compare_runs(args.runs)
    print(json.dumps(comparison) if args.json else comparison_table(comparison))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from orchestrator import sweep
    from orchestrator.pipeline import data_name
    from orchestrator.run_dir import default_run_dir

    # anything that says what to run makes a sweep to compare with the one recorded (where to run does not)
    flags = ("seeds", "samples", "config", "data", "limit", "cache_dir", "epochs", "backend")
    asked = args.grid or args.overrides or args.drop_empty or any(getattr(args, flag) is not None for flag in flags)
    if args.sweep_dir and (Path(args.sweep_dir) / sweep.SPEC_FILE).is_file() and not asked:
        spec = None            # resume the sweep recorded there
    else:
        name = data_name(loaded_config(args), args.config)
        overrides = resolved_overrides(args) + [f"data.name={json.dumps(name)}"]
        grid = sweep.parse_grid(args.grid)
        seeds = sweep.parse_seeds(args.seeds or "3")
        trials = sweep.plan_trials(args.config, overrides, sweep.choose_settings(grid, args.samples), seeds)
        spec = sweep.spec_of(trials, grid, args.samples, seeds)
        if not args.sweep_dir:
            args.sweep_dir = str(default_run_dir(name, "sweep", root="sweeps"))
    if args.trial_cpus <= 0:
        raise UserError("--trial-cpus must be more than 0")
    results = sweep.run_sweep(Path(args.sweep_dir), spec, cpus_per_trial=args.trial_cpus,
                              ray_address=args.ray_address, progress=not args.quiet)
    print(json.dumps(results) if args.json else sweep.sweep_table(results))
    unfinished = sum(trial["status"] != "finished" for trial in results["trials"])
    if unfinished:
        print(f"error: {unfinished} of {len(results['trials'])} trials did not finish (see {args.sweep_dir}/"
              f"{sweep.RESULTS_FILE}); run the same command again to retry them", file=sys.stderr)
        return EXIT_RESUMABLE
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:
    from orchestrator.pipeline import ESTIMATE, preflight, prepare
    from orchestrator.quantum.estimate import describe, estimate_dict
    from orchestrator.training.phases import account_budget, describe_plan, is_planned, plan_run

    config = loaded_config(args)
    preflight(config, ESTIMATE)
    prepared = prepare(config, embed=False)
    config = account_budget(config, prepared.split)
    plan = plan_run(config, prepared.split) if is_planned(config) else None
    if args.json:
        print(json.dumps(dict(estimate_dict(config, prepared.split),
                              plan=[phase.to_dict() for phase in plan] if plan else None)))
        return 0
    print("\n".join(describe(config, prepared.split)))
    if plan:
        print("\n".join(describe_plan(plan, config.runtime.max_qpu_seconds)))
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    invocation.record(["orchestrate", *(sys.argv[1:] if argv is None else argv)])
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "predict" and not any(e.startswith("-") for e in extra):
        args.texts += extra   # texts after an option: predict RUN_DIR --json "text one" "text two"
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    show_messages_on_stderr()
    in_main_thread = threading.current_thread() is threading.main_thread()
    # SIGTERM (a scheduler ending the job) stops a run like Ctrl-C: at a clean point, saying how to resume
    previous = signal.signal(signal.SIGTERM, raise_on_sigterm) if in_main_thread else None
    try:
        return args.func(args)
    except UserError as problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ResumableStop as stop:
        print(f"error: {stop}", file=sys.stderr)
        return stop.exit_code
    except Terminated:
        print("error: terminated (SIGTERM): run the same command again to resume where it stopped", file=sys.stderr)
        return EXIT_RESUMABLE
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume where it stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
