"""`orchestrate run`'s refusals that leave no run dir behind, and the pure pieces of the training loop
and the baselines (tests/integration/test_run.py runs it end to end)."""
import pytest
import torch

from orchestrator.cli import main


@pytest.mark.parametrize("argv, match", [
    (["--backend", "qasm_simulator"], "unknown backend 'qasm_simulator': use aer_simulator, fake_<device>"),
    (["--set", "quantum.backend=fake_nowhere"], "unknown fake device 'fake_nowhere'; known: fake_aachen"),
    (["--set", "train.optimiser=sgd"], "did you mean 'train.optimizer'"),
    (["--epochs", "0"], "train.epochs must be at least 1"),
])
def test_bad_input_exits_2_before_any_run_dir(capsys, tmp_path, argv, match):
    run_dir = tmp_path / "run"
    code = main(["run", "-q", "--cache-dir", str(tmp_path / "cache"), "--run-dir", str(run_dir), *argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], err
    assert not run_dir.exists()
    assert not (tmp_path / "cache").exists()


def test_a_non_empty_run_dir_is_refused(capsys, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "summary.json").write_text("{}")
    code = main(["run", "-q", "--cache-dir", str(tmp_path / "cache"), "--run-dir", str(run_dir), "--limit", "50"])
    assert code == 2 and "already exists" in capsys.readouterr().err
    assert (run_dir / "summary.json").read_text() == "{}"


# --- the pure pieces of the training loop and the baselines ------------------------------------------

def test_standardise_uses_the_train_statistics_only():
    import numpy as np

    from orchestrator.training.features import Standardiser

    train = np.array([[1.0, 5.0], [3.0, 5.0]], dtype=np.float32)
    standardiser = Standardiser.fit(train)
    assert standardiser.mean.tolist() == [2.0, 5.0] and standardiser.std.tolist() == [1.0, 1.0]   # a constant feature keeps std 1
    features = standardiser.apply(np.array([[4.0, 6.0]], dtype=np.float32), np.array([1]))
    assert features.x.tolist() == [[2.0, 1.0]] and features.y.tolist() == [1]


def test_class_weights_balance_only_when_asked_or_imbalanced():
    import numpy as np

    from orchestrator.training.features import class_weights

    imbalanced = np.array([0] * 8 + [1] * 2)
    assert class_weights(imbalanced, 2, "auto").tolist() == pytest.approx([10 / 16, 10 / 4])
    assert class_weights(imbalanced, 2, "none") is None
    balanced = np.array([0] * 5 + [1] * 5)
    assert class_weights(balanced, 2, "auto") is None
    assert class_weights(balanced, 2, "balanced").tolist() == [1.0, 1.0]


def test_cosine_schedule_goes_from_one_to_zero():
    from orchestrator.training.loop import lr_factor

    assert lr_factor(0, 100, "cosine") == 1.0
    assert lr_factor(50, 100, "cosine") == pytest.approx(0.5)
    assert lr_factor(100, 100, "cosine") == pytest.approx(0.0)
    assert lr_factor(70, 100, "none") == 1.0


def test_epoch_order_depends_on_seed_and_epoch_only():
    from orchestrator.training.state import epoch_order

    assert epoch_order(10, 0, 3).tolist() == epoch_order(10, 0, 3).tolist()
    assert sorted(epoch_order(10, 0, 3).tolist()) == list(range(10))
    assert epoch_order(10, 0, 3).tolist() != epoch_order(10, 0, 4).tolist()


def test_logistic_regression_separates_a_separable_set():
    from orchestrator.training.baselines import fit_logistic_regression, predict

    torch.manual_seed(0)
    x = torch.randn(200, 5)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    model = fit_logistic_regression(x, y, 2, class_weights=None)
    assert (predict(model, x) == y.numpy()).mean() > 0.97
