"""Two processes on one run dir or one cache key, and folders that cannot be used: run dirs are
claimed and locked before any work, cache keys are computed by one process while the other
waits, a lock dies with its process (an unusable folder, one line, exit 2, nothing left:
tests/unit/test_locks_checks.py)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
import yaml

from orchestrator.cli import main
from orchestrator.core import locks
from orchestrator.core.errors import UserError
from tests.support.cli import one_error_line
from tests.support.runs import SMALL, yaml_of_a_run

REPO = Path(__file__).resolve().parents[2]
HOLDER = """
import sys, time
from pathlib import Path
from orchestrator.core import locks
assert locks.try_lock(Path(sys.argv[1])) is not None
print("held", flush=True)
time.sleep(600)
"""


def hold_elsewhere(lock_path: Path) -> subprocess.Popen:
    """Another process holding the lock at `lock_path` (until killed)."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock_path)], cwd=REPO, stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_lock_names_its_holder_and_dies_with_it(tmp_path):
    lock = tmp_path / ".lock"
    holder = hold_elsewhere(lock)
    try:
        with pytest.raises(UserError, match=rf"busy \(in use by pid {holder.pid} on .* since .*: -c {lock}\)"):
            with locks.held(lock, "busy"):
                pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    with locks.held(lock, "busy"):            # the kernel released it with the process
        assert json.loads(lock.read_text())["pid"] == os.getpid()


def test_a_locked_run_dir_refuses_run_resume_and_eval_at_once(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = hold_elsewhere(run_dir / ".lock")
    try:
        started = time.monotonic()
        assert main(["run", *SMALL, "--cache-dir", str(tmp_path / "cache"), "--run-dir", str(run_dir)]) == 2
        assert f"run dir {run_dir} is locked (in use by pid {holder.pid}" in one_error_line(capsys)
        assert time.monotonic() - started < 5 and not list((tmp_path / "cache").rglob("*.h5*"))   # before any work
        (run_dir / "config.yaml").write_text(yaml_of_a_run())
        for command in (["resume", str(run_dir)], ["eval", str(run_dir)]):
            assert main(command) == 2
            assert "is locked (in use by pid" in one_error_line(capsys)
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock", "config.yaml"]


def test_a_folder_left_by_a_run_killed_while_embedding_can_be_claimed_again(ray_session, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".lock").write_text("{}")      # what a kill -9 before config.yaml leaves
    assert main(["run", *SMALL, "--cache-dir", str(tmp_path / "cache"), "--run-dir", str(run_dir)]) == 0
    assert (run_dir / "summary.json").is_file()


EMBED = ["embed", "-q", "--limit", "300", "--workers", "1", "--set", "embedding.shard_rows=100"]


@pytest.mark.slow
@pytest.mark.parametrize("offset_s", [0.0, 6.0])
def test_two_processes_on_one_cache_key_embed_it_once(tmp_path, offset_s):
    """The second process waits for the first and reads its file: both succeed, the texts are
    encoded once, one cache file and no leftover parts."""
    cache = tmp_path / "cache"
    environment = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_ADDRESS="")
    command = [sys.executable, "-m", "orchestrator.cli", *EMBED, "--cache-dir", str(cache)]
    first = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(offset_s)
    second = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outputs = [process.communicate(timeout=300) for process in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outputs
    finals = [stdout.strip().splitlines()[-1] for stdout, _ in outputs]
    assert sum(line.startswith("cache: ") and "encoded 300 texts" in line for line in finals) == 1, finals
    assert sum(line.startswith("cache hit: ") for line in finals) == 1, finals
    waited = [stderr for _, stderr in outputs if "waiting: pid" in stderr]
    assert len(waited) <= 1
    files = sorted(p.name for p in (cache / "embeddings").iterdir())
    assert [name for name in files if name.endswith(".h5")] and not [name for name in files if "parts" in name]
    assert len([name for name in files if name.endswith(".h5")]) == 1
    with h5py.File(cache / "embeddings" / [n for n in files if n.endswith(".h5")][0]) as f:
        assert f["vectors"].shape == (300, 384)


@pytest.mark.slow
def test_a_second_run_on_the_same_run_dir_is_refused_and_the_first_is_kept(ray_session, tmp_path):
    """As the issue found it: `run --run-dir X --set train.seed=0 &`, then 8 s later the same with
    seed 1. Now the second is refused at once and X holds seed 0's run."""
    run_dir = tmp_path / "run"
    common = [sys.executable, "-m", "orchestrator.cli", "run", *SMALL, "--cache-dir", str(tmp_path / "cache"),
              "--run-dir", str(run_dir)]
    environment = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_ADDRESS="")
    first = subprocess.Popen([*common, "--set", "train.seed=0"], env=environment, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    time.sleep(8)
    second = subprocess.run([*common, "--set", "train.seed=1"], env=environment, capture_output=True, text=True,
                            timeout=120)
    assert second.returncode == 2 and "is locked (in use by pid" in second.stderr, second.stderr
    first.communicate(timeout=300)
    assert first.returncode == 0
    assert (run_dir / "summary.json").is_file()
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["seed"] == 0


def test_a_run_dir_killed_before_its_first_checkpoint_is_claimed_again(ray_session, tmp_path):
    """config.yaml and no checkpoint: nothing to resume (resume says to run again), so the same
    --run-dir is taken again rather than refused as 'not empty'."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".lock").write_text("{}")
    (run_dir / "config.yaml").write_text(yaml_of_a_run())
    assert main(["resume", str(run_dir)]) == 2
    assert main(["run", *SMALL, "--cache-dir", str(tmp_path / "cache"), "--run-dir", str(run_dir)]) == 0
    assert (run_dir / "summary.json").is_file()
    mine = tmp_path / "mine"                 # a folder holding the user's own config.yaml is not taken
    mine.mkdir()
    (mine / "config.yaml").write_text("train: {epochs: 1}\n")
    assert main(["run", *SMALL, "--cache-dir", str(tmp_path / "cache"), "--run-dir", str(mine)]) == 2
    assert (mine / "config.yaml").read_text() == "train: {epochs: 1}\n"
