"""`orchestrate sweep` without trials: the refusals that leave nothing behind, grid values and ranges,
trial names (real Ray Tune trials: tests/integration/test_sweep.py)."""
import pytest

from orchestrator import sweep
from orchestrator.cli import main
from orchestrator.core.errors import UserError


@pytest.mark.parametrize("argv, match", [
    (["--grid", "train.lr"], "must look like section.key=value1,value2"),
    (["--grid", "train.lrr=0.1,0.2"], "lrr"),
    (["--grid", "train.lr=loguniform(1e-4,1e-1)"], "give --samples M"),
    (["--seeds", "two"], "--seeds 'two'"),
    (["--grid", "train.lr=0.1", "--grid", "train.lr=0.2"], "train.lr twice"),
    (["--backend", "ibm_nowhere"], ""),
])
def test_bad_sweeps_exit_2_and_write_nothing(capsys, tmp_path, argv, match):
    sweep_dir = tmp_path / "sweep"
    assert main(["sweep", "--limit", "100", "--sweep-dir", str(sweep_dir), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and match in err and len(err.strip().splitlines()) == 1
    assert not sweep_dir.exists()


def test_grid_values_and_ranges():
    grid = sweep.parse_grid(["train.lr=0.001,3e-3", "quantum.n_qubits=2,4", "train.trackers=[],[tensorboard]"])
    assert grid == {"train.lr": [0.001, 0.003], "quantum.n_qubits": [2, 4], "train.trackers": [[], ["tensorboard"]]}
    settings = sweep.choose_settings(grid, None)
    assert len(settings) == 8 and settings[0] == {"train.lr": 0.001, "quantum.n_qubits": 2, "train.trackers": []}
    ranged = sweep.parse_grid(["train.lr=loguniform(1e-4,1e-1)", "train.batch_size=randint(8,32)",
                               "train.weight_decay=0,0.5"])
    drawn = sweep.choose_settings(ranged, 20)
    assert drawn == sweep.choose_settings(ranged, 20), "drawn from a fixed seed: a resumed sweep draws the same"
    assert all(1e-4 <= s["train.lr"] <= 1e-1 and 8 <= s["train.batch_size"] <= 32 and s["train.weight_decay"] in (0, 0.5)
               for s in drawn)
    assert len({s["train.lr"] for s in drawn}) == 20
    with pytest.raises(UserError, match="low < high"):
        sweep.parse_grid(["train.lr=uniform(1,0)"])
    assert sweep.parse_seeds("3") == [0, 1, 2] and sweep.parse_seeds("0,3,7") == [0, 3, 7]
    with pytest.raises(UserError):
        sweep.parse_seeds("1,1")


def test_trial_names_are_distinct_file_names():
    settings = sweep.choose_settings(sweep.parse_grid(["train.lr=0.001,0.01", "data.path=a/b.tsv,c d.tsv"]), None)
    names = [sweep.trial_name(i, s, seed) for i, s in enumerate(settings) for seed in (0, 1)]
    assert len(set(names)) == len(names)
    assert all("/" not in n and " " not in n for n in names)
