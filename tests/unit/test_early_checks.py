"""Values that pass the config's own checks but cannot run: each is one line and exit 2 before
anything is written (no run dir, no cache file), instead of a failure after writing."""
import pytest

from orchestrator.cli import main
from tests.support.runs import SMALL


def refused(capsys, tmp_path, *argv) -> str:
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    code = main(["run", *SMALL, "--cache-dir", str(cache), "--run-dir", str(run_dir), *argv])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith(("error", "Traceback"))]
    assert code == 2 and len(errors) == 1, errors
    assert not run_dir.exists() and not list(cache.rglob("*.h5*")) and not list(cache.rglob("*.parts"))
    return errors[0]


@pytest.mark.parametrize("argv, match", [
    (["--set", "quantum.n_qubits=40"], "quantum.n_qubits = 40 is more than aer_simulator can hold in this "
                                       "machine's memory as a statevector: at most"),
    (["--set", "quantum.n_qubits=25", "--set", "quantum.noise_model=fake_fez"],
     "as a density matrix, with a noise model: at most"),
    (["--backend", "fake_manila", "--set", "quantum.n_qubits=6"], "quantum.n_qubits = 6 is more than fake_manila has "
                                                                   "(5 qubits)"),
    (["--backend", "fake_manila", "--set", "quantum.shots=200000"], "200000 shots per parameter set is more than "
                                                                    "fake_manila allows (100000)"),
    (["--set", "embedding.max_length=100000"], "embedding.max_length is 100000 but model 'all-MiniLM-L6-v2' reads "
                                               "at most 512 tokens"),
])
def test_what_the_backend_or_the_model_cannot_do_is_refused_first(capsys, tmp_path, argv, match):
    assert match in refused(capsys, tmp_path, *argv)


def test_a_planned_run_checks_its_aer_phases_too(capsys, tmp_path):
    line = refused(capsys, tmp_path, "--backend", "fake_fez", "--set", "quantum.n_qubits=20")
    assert "as a density matrix, with a noise model: at most" in line      # the noisy-simulator phase


def test_a_label_on_one_row_is_named_with_the_counts(capsys, tmp_path):
    data = tmp_path / "sms.tsv"
    rows = [f"ham\tan ordinary message number {i}" for i in range(40)] + \
           [f"spam\tWIN a prize now, number {i}" for i in range(20)] + ["spma\tWIN a typo"]
    data.write_text("\n".join(rows) + "\n")
    line = refused(capsys, tmp_path, "--data", str(data), "--set", "data.format=uci")
    assert "label 'spma' has too few rows to stratify into train/val/test at 0.7/0.15/0.15" in line
    assert "rows per label: ham 40, spam 20, spma 1" in line or "rows per label: ham 40, spma 1, spam 20" in line
