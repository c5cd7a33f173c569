"""RunDir: the one owner of a run dir's file names and of the questions asked of it."""
import re
from pathlib import Path

import pytest

from orchestrator.config import derive, load_config
from orchestrator.core.errors import UserError
from orchestrator.run_dir import RunDir

REPO = Path(__file__).resolve().parents[2]


def test_a_run_dir_says_whether_it_is_a_run_has_started_and_finished(tmp_path):
    run = RunDir(tmp_path / "run")
    assert not run.is_run() and not run.has_started() and not run.is_finished() and run.state() == "incomplete"
    with pytest.raises(UserError, match=r"is not a run dir \(no config.yaml\)"):
        run.read_config()
    run.path.mkdir()
    run.write_config(load_config())
    assert run.is_run() and run.read_config() == load_config()
    (run.phase("3-hardware").path).mkdir(parents=True)
    (run.phase("3-hardware") / RunDir.PREVIOUS_CHECKPOINT).write_bytes(b"")
    assert run.has_started() and not run.has_checkpoint() and run.state() == "resumable"
    finished = RunDir(tmp_path / "finished")       # (a summary beside a config.yaml is checked against its schema)
    finished.write_summary({"test": {}})
    assert finished.is_finished() and finished.read_summary() == {"test": {}} and finished.state() == "finished"


def test_config_yaml_is_rewritten_only_when_the_config_changes(tmp_path):
    run = RunDir(tmp_path)
    config = load_config()
    run.write_config(config)
    first = (run / RunDir.CONFIG).stat().st_mtime_ns
    run.write_config(config)
    assert (run / RunDir.CONFIG).stat().st_mtime_ns == first
    run.write_config(derive(config, {"runtime.max_qpu_seconds": 600.0}))
    assert run.read_config().runtime.max_qpu_seconds == 600.0


def test_only_run_dir_py_spells_a_run_dirs_file_names():
    names = [value for key, value in vars(RunDir).items() if key.isupper() and isinstance(value, str) and "." in value]
    pattern = re.compile("|".join(re.escape(f'"{name}"') for name in names))
    spelled = [f"{path.relative_to(REPO)}:{n}" for package in ("orchestrator", "workers")   # (the cache has its own plan.json)
               for path in (REPO / package).rglob("*.py") if path.name != "run_dir.py"
               for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
               if pattern.search(line)]
    assert not spelled, spelled


def test_locking_a_run_dir_removes_what_a_killed_writer_left_half_written(tmp_path):
    """A kill -9 inside an atomic write leaves `.checkpoint.pt.XXXX.tmp`; whoever locks the run dir
    next (resume, eval) removes it, and nothing else."""
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    (run.path / "checkpoint.pt").write_bytes(b"kept")
    (run.path / ".checkpoint.pt.ab12cd.tmp").write_bytes(b"half")
    (run.path / "jobs").mkdir()
    (run.path / "jobs" / ".results.jsonl.x1.tmp").write_bytes(b"half")
    with run.locked():
        pass
    left = {p.relative_to(run.path).as_posix() for p in run.path.rglob("*") if p.is_file()}
    assert left - {RunDir.LOCK} == {"checkpoint.pt"}
