"""examples/quickstart.ipynb, executed top to bottom in a real Jupyter kernel (nbclient), and its
outputs checked: the score, the 3 cross-validation scores, the confusion matrix's image, the two
predicted labels. Its cells are found by their tags (data, fit, score, cv, plot, predict)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "examples" / "quickstart.ipynb"

pytestmark = pytest.mark.slow


def tagged(notebook, tag: str):
    [cell] = [cell for cell in notebook.cells if tag in cell.get("metadata", {}).get("tags", [])]
    return cell


def result(cell) -> str:
    """The cell's value: the text of its execute_result."""
    [value] = [output["data"]["text/plain"] for output in cell.outputs if output["output_type"] == "execute_result"]
    return value


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("ipykernel")
    folder = tmp_path_factory.mktemp("notebook")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # not in the notebook itself: the kernel's Ray stops before the kernel does, leaving no process behind
    notebook.cells.append(nbformat.v4.new_code_cell("import ray\nray.shutdown()", metadata={"tags": ["cleanup"]}))
    with pytest.MonkeyPatch.context() as patch:   # the kernel inherits these: its own cache, no usage stats
        patch.setenv("ORCHESTRATOR_CACHE_DIR", str(folder / "cache"))
        patch.setenv("RAY_USAGE_STATS_ENABLED", "0")
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("TOKENIZERS_PARALLELISM", "false")
        patch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
        nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(folder)}}).execute()
    nbformat.write(notebook, folder / "quickstart.executed.ipynb")   # to look at when a check fails
    return notebook


def test_no_cell_failed(executed):
    errors = [output for cell in executed.cells if cell.cell_type == "code" for output in cell.outputs
              if output["output_type"] == "error"]
    assert not errors, errors


def test_the_data_and_the_fit(executed):
    assert ast.literal_eval(result(tagged(executed, "data"))) == (420, 180)
    assert "fit-aer_simulator" in result(tagged(executed, "fit"))


def test_the_score_is_an_accuracy_better_than_chance(executed):
    assert 0.5 < float(result(tagged(executed, "score"))) <= 1


def test_cross_validation_gives_three_scores(executed):
    scores = ast.literal_eval(result(tagged(executed, "cv")))
    assert len(scores) == 3 and all(0.5 < value <= 1 for value in scores)


def test_the_confusion_matrix_is_plotted_inline(executed):
    images = [output for output in tagged(executed, "plot").outputs
              if output["output_type"] == "display_data" and "image/png" in output["data"]]
    assert len(images) == 1 and len(images[0]["data"]["image/png"]) > 1000


def test_two_new_texts_get_labels(executed):
    predicted = ast.literal_eval(result(tagged(executed, "predict")))
    assert len(predicted) == 2 and set(predicted) <= {"ham", "spam"}
