"""The `orchestrate` command.

Every command that reads a dataset accepts --config, --data, --limit, --drop-empty and --set.
Bad input ends with one line `error: ...` on stderr and exit code 2, before anything is written.
"""
from __future__ import annotations

import argparse
import os
import sys

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
    return load_config(args.config, overrides)


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


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
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
