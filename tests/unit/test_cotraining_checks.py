"""Co-training's checks that need no run: impossible embedding.train_layers refused before anything is
written, and the learning rate's warmup then cosine (the runs: tests/integration/test_cotraining.py)."""
import re

import pytest

from orchestrator.cli import main
from tests.support.cotraining import args


@pytest.mark.parametrize("value, match", [("3", "train_layers is 3 but model .* has 2 layers"),
                                          ("-1", "train_layers"), ("some", "train_layers")])
def test_impossible_train_layers_are_refused_before_anything_is_written(capsys, tiny_bert, tmp_path, value, match):
    assert main(["run", *args(tiny_bert, tmp_path / "cache", "--set", f"embedding.train_layers={value}"),
                 "--run-dir", str(tmp_path / "run")]) == 2
    error = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(error) == 1 and re.search(match, error[0]), error
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


def test_warmup_rises_linearly_then_the_cosine_falls():
    from orchestrator.training.loop import lr_factor

    factors = [lr_factor(step, 10, "cosine", warmup_steps=4) for step in range(11)]
    assert factors[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert factors[4] == 1.0 and factors[10] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(factors[4:], factors[5:]))
    assert [lr_factor(s, 10, "cosine") for s in range(11)] == [lr_factor(s, 10, "cosine", 0) for s in range(11)]
