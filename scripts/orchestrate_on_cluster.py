"""Run an `orchestrate` command on a Ray cluster's head node, joined to that cluster.

    ray submit configs/cluster.yaml scripts/orchestrate_on_cluster.py -- run --config hybrid-orchestrator/configs/sms_spam.yaml

`ray submit` copies this one file to the head node's home folder and runs it there with the
arguments after `--` (the same as `orchestrate`'s). The project itself is installed on every node
by configs/cluster.yaml. Plain `orchestrate` on the head would start a second, one-machine Ray
beside the cluster; this script makes it join the running cluster (RAY_ADDRESS=auto) unless
RAY_ADDRESS or --ray-address says otherwise.
"""
from __future__ import annotations

import os
import sys


def cluster_environment(environ: dict) -> dict:
    """The environment `orchestrate` runs in: RAY_ADDRESS kept if set, else the cluster on this node."""
    return {**environ, "RAY_ADDRESS": environ.get("RAY_ADDRESS") or "auto"}


def main(argv: list[str]) -> int:
    os.environ.update(cluster_environment(dict(os.environ)))
    from orchestrator.cli import main as orchestrate

    return orchestrate(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
