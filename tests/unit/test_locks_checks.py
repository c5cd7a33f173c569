"""Folders a run cannot use are one line, exit 2, nothing left; a run dir's saved Ray address gives way
to one given now (two processes on one run dir or cache key: tests/integration/test_locks.py)."""
import pytest

from orchestrator.cli import main
from orchestrator.core.errors import UserError
from tests.support.cli import one_error_line
from tests.support.runs import SMALL, yaml_of_a_run


@pytest.mark.parametrize("where, problem", [("file", "is a file"), ("under_a_file", "is a file")])
def test_an_unusable_cache_or_run_location_is_one_line(tmp_path, capsys, where, problem):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    unusable = blocker if where == "file" else blocker / "inside"
    run_dir = tmp_path / "run"
    assert main(["run", *SMALL, "--cache-dir", str(unusable), "--run-dir", str(run_dir)]) == 2
    line = one_error_line(capsys)
    assert f"cache dir {unusable} " in line and problem in line
    assert not run_dir.exists()                # claimed, then given back: a failed command leaves none
    assert main(["run", *SMALL, "--cache-dir", str(tmp_path / "cache"), "--run-dir", str(unusable)]) == 2
    line = one_error_line(capsys)
    assert f"run dir {unusable}" in line and problem in line
    assert not list((tmp_path / "cache").rglob("*.h5*"))


@pytest.mark.parametrize("given", ["flag", "environment", "neither"])
def test_an_address_given_now_wins_over_the_one_the_run_saved(tmp_path, monkeypatch, given):
    import orchestrator.pipeline

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(yaml_of_a_run().replace("address: null", "address: 10.0.0.9:6379"))
    (run_dir / "checkpoint.pt").write_bytes(b"")          # has_started: resume goes on to prepare
    seen = []

    def stop(config, **kwargs):
        seen.append(config.ray.address)
        raise UserError("stop here")

    monkeypatch.setattr(orchestrator.pipeline, "prepare", stop)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    if given == "environment":
        monkeypatch.setenv("RAY_ADDRESS", "10.0.0.2:6379")
    flag = ["--ray-address", "10.0.0.1:6379"] if given == "flag" else []
    assert main(["resume", str(run_dir), *flag]) == 2
    assert seen == [{"flag": "10.0.0.1:6379", "environment": "10.0.0.2:6379", "neither": "10.0.0.9:6379"}[given]]
