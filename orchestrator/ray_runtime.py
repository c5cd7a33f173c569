"""Joining a Ray cluster, or starting a local one, the same way for every command."""
from __future__ import annotations

import logging
import os
from typing import Optional


def connect(address: Optional[str] = None):
    """Join the cluster at `address` (or RAY_ADDRESS); otherwise start a local Ray on this machine."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    else:
        # Ray starts workers at niceness 15: on a machine doing anything else, the actors that do
        # all the work would starve behind it. Our own local cluster runs them at normal priority.
        os.environ.setdefault("RAY_worker_niceness", "0")
        ray.init(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False,
                 configure_logging=True)
    return ray
