"""`orchestrate eval` and `orchestrate predict` on a folder that is not a run dir: one line, exit 2
(on a finished run: tests/integration/test_eval_predict.py)."""
from orchestrator.cli import main
from tests.support.cli import one_error_line


def test_predict_and_eval_refuse_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["predict", str(tmp_path), "hi"]) == 2
    assert "is not a run dir" in one_error_line(capsys)
    assert main(["eval", str(tmp_path)]) == 2
    assert "is not a run dir" in one_error_line(capsys)
