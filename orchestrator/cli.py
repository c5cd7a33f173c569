"""The `orchestrate` command.

Every command that reads a dataset accepts --config, --data, --limit, --drop-empty and --set.
Bad input ends with one line `error: ...` on stderr and exit code 2, before anything is written.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from orchestrator.errors import UserError


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="F", help="YAML run config (see configs/)")
    parser.add_argument("--data", metavar="PATH", help="dataset file (UCI TSV, CSV, TSV or JSONL); overrides data.path")
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
    run.set_defaults(func=cmd_run)

    resume = commands.add_parser("resume", help="continue an interrupted `orchestrate run` from its last checkpoint")
    resume.add_argument("run_dir", metavar="RUN_DIR", help="the run dir of the interrupted run")
    resume.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    resume.add_argument("--set", dest="overrides", action="append", default=[], metavar="runtime.KEY=VALUE",
                        help="change a runtime setting for the rest of the run, e.g. runtime.max_qpu_seconds=600 "
                             "(other sections are fixed: the resumed run must be the same run)")
    resume.set_defaults(func=cmd_resume)

    evaluate = commands.add_parser("eval", help="score a run's best model on its test split or on another labelled file")
    evaluate.add_argument("run_dir", metavar="RUN_DIR", help="a run dir written by orchestrate run")
    evaluate.add_argument("--data", metavar="F", help="a labelled file in the run's format (default: the run's test split)")
    evaluate.add_argument("--backend", metavar="NAME", help="evaluate on this backend instead of the run's")
    evaluate.add_argument("--cache-dir", metavar="D", help="embedding cache folder; overrides the run's")
    evaluate.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    evaluate.set_defaults(func=cmd_eval)

    predict = commands.add_parser("predict", help="label texts with a run's best model")
    predict.add_argument("run_dir", metavar="RUN_DIR", help="a run dir written by orchestrate run")
    predict.add_argument("texts", nargs="*", metavar="TEXT", help="texts to classify")
    predict.add_argument("--file", metavar="F", help="classify every line of F ('-': standard input)")
    predict.add_argument("--backend", metavar="NAME", help="predict on this backend instead of the run's")
    predict.add_argument("--json", action="store_true", help="one JSON object per text, with every class's probability")
    predict.set_defaults(func=cmd_predict)

    backends = commands.add_parser("backends", help="list the quantum backends: Aer, fake devices, your IBM Quantum devices")
    backends.add_argument("--config", metavar="F", help="run config whose runtime section names the channel / instance")
    backends.set_defaults(func=cmd_backends)

    estimate = commands.add_parser("estimate", help="jobs, circuits, shots and QPU time a run would cost, before spending any")
    add_dataset_arguments(estimate)
    estimate.add_argument("--epochs", type=int, metavar="E", help="training epochs; overrides train.epochs")
    estimate.add_argument("--backend", metavar="NAME", help="quantum backend; overrides quantum.backend")
    estimate.set_defaults(func=cmd_estimate)
    return parser


def resolved_config(args: argparse.Namespace):
    from orchestrator.config import load_config

    overrides = list(args.overrides)
    if args.cache_dir:
        overrides.append(f"embedding.cache_dir={args.cache_dir}")
    if getattr(args, "workers", None) is not None:
        if args.workers < 1:
            raise UserError(f"--workers must be at least 1, not {args.workers}")
        overrides.append(f"embedding.workers={args.workers}")
    if args.ray_address:
        overrides.append(f"ray.address={args.ray_address}")
    if getattr(args, "epochs", None) is not None:
        overrides.append(f"train.epochs={args.epochs}")
    if getattr(args, "backend", None) is not None:
        overrides.append(f"quantum.backend={args.backend}")   # checked with the config (backends.backend_kind)
    return load_config(args.config, overrides)


def check_ibm_backend(config) -> None:
    """For ibm_<device>: credentials and the device checked now, before anything is embedded or written."""
    from orchestrator.backends import backend_kind

    if backend_kind(config.quantum.backend) == "ibm":
        from orchestrator.backends.ibm import connect_service, service_device

        service_device(connect_service(config.runtime.channel, config.runtime.instance), config.quantum.backend)


def train_resumably(run_dir, train):
    """`train()`, turning a backend that gave up, a spent QPU budget or Ctrl-C into one line
    that says how to continue (the run dir keeps its last checkpoint and job journal)."""
    from orchestrator.journal import QpuBudgetExceeded
    from orchestrator.scheduler import BackendFailure

    try:
        return train()
    except (BackendFailure, QpuBudgetExceeded) as problem:
        raise UserError(f"{problem}. The run stopped; continue it with: orchestrate resume {run_dir}") from None
    except KeyboardInterrupt:
        raise UserError(f"interrupted; continue the run with: orchestrate resume {run_dir}") from None


def load_data(args: argparse.Namespace, config):
    from orchestrator.data import load_dataset

    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be at least 1, not {args.limit}")
    return load_dataset(config.data, path=args.data, limit=args.limit, drop_empty=True if args.drop_empty else None)


def cmd_embed(args: argparse.Namespace) -> int:
    from embeddings.models import resolve_model
    from orchestrator.embed import embed_dataset

    config = resolved_config(args)
    dataset = load_data(args, config)
    resolve_model(config.embedding.model, config.embedding.revision)  # refuse an unknown model before any output
    counts = ", ".join(f"{name} {int((dataset.labels == i).sum())}" for i, name in enumerate(dataset.label_names))
    dropped = f", {dataset.dropped_empty} empty dropped" if dataset.dropped_empty else ""
    print(f"dataset: {dataset.source}  rows {len(dataset)} ({counts}{dropped})", file=sys.stderr)
    report = embed_dataset(dataset, config.embedding, ray_address=config.ray.address, progress=not args.quiet)
    print(report.final_line())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from embeddings.models import resolve_model
    from orchestrator import runs
    from orchestrator.coordinator import report_table, train_and_report
    from orchestrator.data import split_dataset
    from orchestrator.embed import embed_dataset

    config = resolved_config(args)
    check_ibm_backend(config)
    dataset = load_data(args, config)
    model = resolve_model(config.embedding.model, config.embedding.revision)
    config.embedding.pooling = model.pooling(config.embedding.pooling)  # config.yaml records the concrete one
    split = split_dataset(dataset, config.data.split, config.data.duplicates)
    if min(len(split.train), len(split.val), len(split.test)) == 0:
        raise UserError(f"{split.describe()}: every split needs rows; use more data or other data.split fractions")
    if args.data or config.data.path:
        # a file wins over data.name, which then only labels the run: after the config, else the file
        config.data.name = Path(args.config).stem if args.config else Path(dataset.source).stem
    run_dir = Path(args.run_dir) if args.run_dir else runs.default_run_dir(config.data.name, config.quantum.backend)
    runs.check_run_dir_free(run_dir)
    print(f"dataset: {dataset.source}  rows {len(dataset)}  {split.describe()}", file=sys.stderr)

    report = embed_dataset(dataset, config.embedding, ray_address=config.ray.address, progress=not args.quiet)
    print(report.final_line(), file=sys.stderr)
    # the run dir appears only now, after every input was checked and the vectors exist
    run_dir.mkdir(parents=True, exist_ok=True)
    # config.yaml records what was run, command-line flags included
    if args.data:
        config.data.path = dataset.source
    if args.limit is not None:
        config.data.limit = args.limit
    if args.drop_empty:
        config.data.drop_empty = True
    config.data.format = dataset.format  # what 'auto' was, so eval reads another file the same way
    embed_info = {"seconds": report.seconds, "path": str(report.cache.path), "key": report.key, "hit": report.hit}
    summary = train_resumably(run_dir, lambda: train_and_report(config, dataset, report.cache.vectors, split,
                                                                run_dir, embed_info, progress=not args.quiet))
    print(report_table(summary, run_dir))
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from pathlib import Path

    from orchestrator import runs
    from orchestrator.config import load_config, to_dict
    from orchestrator.coordinator import report_table, train_and_report
    from orchestrator.data import load_dataset, split_dataset
    from orchestrator.embed import embed_dataset

    run_dir = Path(args.run_dir)
    fixed = [item for item in args.overrides if not item.strip().startswith("runtime.")]
    if fixed:
        raise UserError(f"resume --set changes runtime settings only, not {fixed[0]!r}: the resumed run must "
                        f"train the same model on the same data")
    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"{run_dir} is not a run dir (no config.yaml)")
    if (run_dir / "summary.json").is_file():
        raise UserError(f"the run in {run_dir} already finished (summary.json exists)")
    if not (run_dir / runs.CHECKPOINT).is_file():
        raise UserError(f"the run in {run_dir} stopped before its first checkpoint; start it again with orchestrate run")
    config = load_config(str(run_dir / "config.yaml"), args.overrides)
    if args.overrides:
        runs.write_yaml_atomically(run_dir / "config.yaml", to_dict(config))
    check_ibm_backend(config)
    dataset = load_dataset(config.data)
    split = split_dataset(dataset, config.data.split, config.data.duplicates)
    report = embed_dataset(dataset, config.embedding, ray_address=config.ray.address, progress=not args.quiet)
    print(report.final_line(), file=sys.stderr)
    summary = train_resumably(run_dir, lambda: train_and_report(config, dataset, report.cache.vectors, split, run_dir,
                                                                embed_info={}, progress=not args.quiet, resume=True))
    print(report_table(summary, run_dir))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import dataclasses

    import numpy as np

    from orchestrator import runs
    from orchestrator.data import load_dataset, split_dataset
    from orchestrator.embed import embed_dataset
    from orchestrator.inference import load_run

    run = load_run(args.run_dir, backend=args.backend)
    config = run.config
    if args.cache_dir:
        config.embedding.cache_dir = args.cache_dir
    if args.data:
        # the run's column mapping and label order, so class i means what it meant in training
        data_config = dataclasses.replace(config.data, labels=run.label_names, positive_label=run.positive_label,
                                          limit=None)
        dataset = load_dataset(data_config, path=args.data, min_classes=1)
        rows, name = np.arange(len(dataset)), Path(dataset.source).name
    else:
        dataset = load_dataset(config.data)
        rows, name = split_dataset(dataset, config.data.split, config.data.duplicates).test, "test split"
    print(f"dataset: {dataset.source}  evaluating {len(rows)} rows ({name})", file=sys.stderr)
    report = embed_dataset(dataset, config.embedding, ray_address=config.ray.address, progress=not args.quiet)
    print(report.final_line(), file=sys.stderr)
    scores = run.evaluate(report.cache.vectors[rows], dataset.labels[rows])
    result = {"run_dir": str(run.run_dir), "data": dataset.source if args.data else "test split",
              "rows": int(len(rows)), "backend": config.quantum.backend, "accuracy": scores.accuracy,
              "f1_positive": scores.f1_positive, "f1_macro": scores.f1_macro, "confusion": scores.confusion,
              "labels": run.label_names, "positive_label": run.positive_label}
    target = run.run_dir / "evals" / f"{runs.safe_name(Path(args.data).stem if args.data else 'test')}.json"
    target.parent.mkdir(exist_ok=True)
    runs.write_json_atomically(target, result)
    print(f"{name}: rows {len(rows)}  accuracy {scores.accuracy:.4f}  F1 {run.positive_label} "
          f"{scores.f1_positive:.4f}  F1 macro {scores.f1_macro:.4f}  confusion {scores.confusion}")
    print(f"written: {target}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import json

    from orchestrator.inference import check_texts, encode_texts, load_run, read_texts

    if bool(args.texts) == bool(args.file):
        raise UserError("give the texts to classify as arguments or with --file F, not both and not neither")
    texts = check_texts(args.texts) if args.texts else read_texts(args.file)
    run = load_run(args.run_dir, backend=args.backend)
    probabilities = run.probabilities(encode_texts(texts, run))
    for text, row in zip(texts, probabilities):
        label = run.label_names[int(row.argmax())]
        if args.json:
            print(json.dumps({"text": text, "label": label, "probability": float(row.max()),
                              "probabilities": dict(zip(run.label_names, map(float, row)))}))
        else:
            print(f"{label}\t{row.max():.4f}\t{text}")
    return 0


def cmd_backends(args: argparse.Namespace) -> int:
    from orchestrator.backends import AER_SIMULATOR, fake_device_names, resolve_fake_device
    from orchestrator.backends.ibm import connect_service, describe_backends
    from orchestrator.config import load_config

    config = load_config(args.config)
    rows = [{"name": AER_SIMULATOR, "qubits": None, "status": "local simulator", "queue": None}]
    for name in fake_device_names():
        rows.append({"name": name, "qubits": resolve_fake_device(name).num_qubits,
                     "status": "local (fake device: its noise, offline)", "queue": None})
    note = None
    try:
        service = connect_service(config.runtime.channel, config.runtime.instance)
        rows += describe_backends(service)
    except UserError as problem:
        note = f"IBM Quantum devices: not listed: {problem}"
    print(f"{'backend':<22} {'qubits':>6}  {'queue':>5}  status")
    for row in rows:
        qubits = "" if row["qubits"] is None else str(row["qubits"])
        queue = "" if row["queue"] is None else str(row["queue"])
        print(f"{row['name']:<22} {qubits:>6}  {queue:>5}  {row['status']}")
    if note:
        print(note, file=sys.stderr)
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:
    from orchestrator.backends import backend_kind
    from orchestrator.circuits import QuantumSpec
    from orchestrator.data import split_dataset
    from orchestrator.estimate import duration, estimate_run, qpu_seconds

    config = resolved_config(args)
    dataset = load_data(args, config)
    split = split_dataset(dataset, config.data.split, config.data.duplicates)
    q, t = config.quantum, config.train
    spec = QuantumSpec(n_qubits=q.n_qubits, depth=q.depth)
    kind = backend_kind(q.backend)
    shots = q.shots if kind == "aer" else (q.shots or config.runtime.default_shots)
    plan = estimate_run(len(split.train), len(split.val), len(split.test), spec, t.batch_size, t.epochs,
                        q.max_parameter_sets_per_job)
    shots_text = f"{shots} shots per parameter set" if shots else "exact (no shots)"
    print(f"backend {q.backend}: {spec.n_qubits} qubits, depth {spec.depth}, {shots_text}; {split.describe()}")
    print(f"{'':<36} {'jobs':>8} {'circuits':>12} {'shots':>16}")
    step = plan.step
    for label, work in (("one training step", step), (f"one epoch ({plan.steps_per_epoch} steps + validation)", plan.epoch),
                        (f"whole run ({t.epochs} epochs + test)", plan.run)):
        print(f"{label:<36} {work.jobs:>8,} {work.circuits:>12,} {work.shots(shots):>16,}")
    if kind == "aer":
        print("QPU time: none (a local simulator)")
        return 0
    from orchestrator.backends.ibm import JOB_OVERHEAD_S, RuntimeBackend, runtime_options
    from orchestrator.circuits import DEFAULT_TRANSPILE_CACHE, build_dressed_circuit

    backend = RuntimeBackend(q.backend, runtime_options(config))
    circuit = DEFAULT_TRANSPILE_CACHE.get(build_dressed_circuit(spec), backend.name, backend.transpile_target,
                                          q.optimization_level).circuit
    per_shot = backend.seconds_per_shot(circuit)
    print(f"QPU time (estimate: {JOB_OVERHEAD_S:g} s per job + shots x {per_shot * 1e6:.0f} us per shot, "
          f"repetition delay + circuit duration on {q.backend}):")
    for label, work in (("one training step", step), ("one epoch", plan.epoch), ("whole run", plan.run)):
        print(f"  {label:<22} {duration(qpu_seconds(work, shots, per_shot, JOB_OVERHEAD_S))}")
    budget = config.runtime.max_qpu_seconds
    if budget is not None:
        per_step = qpu_seconds(step, shots, per_shot, JOB_OVERHEAD_S)
        print(f"budget runtime.max_qpu_seconds = {budget:g} s: about {int(budget // per_step):,} training steps, "
              f"then the run stops (resumable)")
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "predict" and not any(e.startswith("-") for e in extra):
        args.texts += extra   # texts after an option: predict RUN_DIR --json "text one" "text two"
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args)
    except UserError as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume where it stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
