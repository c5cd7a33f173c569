"""The installed `orchestrate` console script, in a subprocess, on bad input: one clear line, exit code 2,
nothing written to the cache (the same refusals in-process: tests/unit/test_cli.py)."""
import subprocess
import sys
from pathlib import Path

import pytest


def test_the_console_script_exits_2_with_one_line(tmp_path):
    script = Path(sys.executable).with_name("orchestrate")
    if not script.exists():
        pytest.skip("console script not installed in this environment")
    result = subprocess.run([str(script), "embed", "--data", str(tmp_path / "missing.tsv"),
                             "--cache-dir", str(tmp_path / "cache")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: data file not found: {tmp_path / 'missing.tsv'}"]
    assert not (tmp_path / "cache").exists()
