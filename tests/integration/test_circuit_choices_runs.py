"""A run with other quantum.encoding, quantum.entangler and quantum.observables trains, is saved with
them and evaluates to its summary (the choices themselves: tests/unit/test_circuit_choices.py)."""
import json

from orchestrator.cli import main
from orchestrator.config import load_config
from tests.support.runs import SMALL


def test_a_run_with_other_choices_trains_and_evaluates_to_its_summary(ray_session, tmp_path):
    choices = ["--set", "quantum.n_qubits=3", "--set", "quantum.encoding=rx", "--set", "quantum.entangler=cnot-ring",
               "--set", "quantum.observables=[XIZ, ZZI, IYY]"]     # after SMALL's n_qubits=2: they win
    run_dir = tmp_path / "run"
    assert main(["run", *SMALL, *choices, "--cache-dir", str(tmp_path / "cache"), "--run-dir", str(run_dir)]) == 0
    saved = load_config(str(run_dir / "config.yaml"))
    assert (saved.quantum.encoding, saved.quantum.entangler, saved.quantum.observables) == \
        ("rx", "cnot-ring", ["XIZ", "ZZI", "IYY"])
    assert main(["eval", "-q", str(run_dir), "--cache-dir", str(tmp_path / "cache")]) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert json.loads((run_dir / "evals" / "test.json").read_text())["accuracy"] == summary["test"]["accuracy"]
