"""What Ray workers print or log reaches the driver's output (a cluster's `ray job logs`), named by
worker and pid, without colour codes when nobody reads it on a terminal."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]

DRIVER = """
import logging
from workers.cluster import connect

ray = connect()

@ray.remote
def shard():
    logging.getLogger("workers.embedding").warning("an embedding worker warns")
    print("an embedding worker prints")
    return 1

assert ray.get(shard.remote()) == 1
ray.shutdown()      # flushes the workers' last lines to the driver
"""


def test_worker_warnings_and_prints_reach_the_driver(tmp_path):
    environment = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=str(REPO), RAY_ADDRESS="")
    environment.pop("RAY_COLOR_PREFIX", None)
    done = subprocess.run([sys.executable, "-c", DRIVER], cwd=tmp_path, env=environment, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    lines = [line for line in output.splitlines() if "an embedding worker" in line]
    assert any("(shard pid=" in line and line.endswith("an embedding worker warns") for line in lines), output
    assert any("(shard pid=" in line and line.endswith("an embedding worker prints") for line in lines), output
    assert "\x1b[" not in output
