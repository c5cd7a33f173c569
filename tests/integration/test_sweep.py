"""`orchestrate sweep`: real Ray Tune trials on a small slice, statistics over seeds, a killed
sweep that resumes without rerunning finished trials (the refusals that leave nothing behind, grid
values and trial names: tests/unit/test_sweep_checks.py)."""
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from orchestrator import sweep
from orchestrator.cli import main

SMALL = ["--limit", "200", "--epochs", "2", "-q", "--set", "quantum.n_qubits=2", "--set", "quantum.depth=1",
         "--set", "train.batch_size=32"]


@pytest.fixture(scope="module")
def three_seeds(ray_session, tmp_path_factory):
    """A 3-seed sweep of a 200-message slice, uninterrupted, as Ray Tune trials on the shared session."""
    root = tmp_path_factory.mktemp("sweep")
    sweep_dir, cache = root / "sweep", root / "cache"
    code = main(["sweep", *SMALL, "--seeds", "3", "--cache-dir", str(cache), "--sweep-dir", str(sweep_dir), "--json"])
    assert code == 0
    return sweep_dir, cache


def test_every_trial_is_an_ordinary_run_dir_run_by_ray_tune(three_seeds):
    sweep_dir, cache = three_seeds
    results = json.loads((sweep_dir / "sweep.json").read_text())
    assert [t["seed"] for t in results["trials"]] == [0, 1, 2]
    assert {t["status"] for t in results["trials"]} == {"finished"}
    for trial in results["trials"]:
        run_dir = Path(trial["run_dir"])
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert config["train"]["seed"] == trial["seed"] and config["data"]["limit"] == 200
        summary = json.loads((run_dir / "summary.json").read_text())
        assert trial["test"] == summary["test"] and trial["classical_baseline"] == summary["classical_baseline"]
        assert summary["cache"]["hit"], "the sweep embeds before the trials: every trial reads the cache"
        assert (run_dir / "tensorboard").is_dir()
    # embedded once: one vector file in the shared cache
    assert len(list((cache / "embeddings").glob("*.h5"))) == 1
    # Ray Tune ran them: its experiment folder has one trial folder per run, with the epochs reported
    tune_dirs = list((sweep_dir / "tune").glob("tune-*/s00-seed*"))
    assert len(tune_dirs) == 3
    reported = [json.loads(line) for line in (tune_dirs[0] / "result.json").read_text().splitlines()]
    assert [r.get("epoch") for r in reported[:2]] == [1, 2] and reported[-1]["done"] is True


def test_statistics_over_seeds_are_those_of_the_trials(three_seeds):
    sweep_dir, _ = three_seeds
    results = json.loads((sweep_dir / "sweep.json").read_text())
    [setting] = results["settings"]
    assert setting["finished"] == 3 and setting["seeds"] == [0, 1, 2]
    for name, path in (("quantum_head", ("test",)), ("logistic_regression", ("classical_baseline", "logistic_regression")),
                       ("classical_head", ("classical_baseline", "classical_head"))):
        for metric in ("accuracy", "f1_positive"):
            values = []
            for trial in results["trials"]:
                node = trial
                for key in path:
                    node = node[key]
                values.append(node[metric])
            got = setting[name][metric]
            assert got["mean"] == pytest.approx(statistics.fmean(values))
            assert got["std"] == pytest.approx(statistics.stdev(values))
            assert (got["min"], got["max"], got["n"]) == (min(values), max(values), 3)


def test_the_chart_shows_every_seed_and_the_baselines(three_seeds):
    sweep_dir, _ = three_seeds
    results = json.loads((sweep_dir / "sweep.json").read_text())
    assert results["f1"] == "f1_positive"     # two classes: the positive class's F1 leads
    [setting] = results["settings"]
    assert [(s["seed"], s["f1_positive"], s["f1_macro"]) for s in setting["per_seed"]] == [
        (t["seed"], t["test"]["f1_positive"], t["test"]["f1_macro"]) for t in results["trials"]]
    assert setting["quantum_head"]["f1_macro"]["n"] == 3
    chart = (sweep_dir / "sweep.png").read_bytes()
    assert chart.startswith(b"\x89PNG\r\n\x1a\n") and len(chart) > 5000


def test_the_table_shows_mean_std_and_minimum(three_seeds):
    sweep_dir, _ = three_seeds
    results = json.loads((sweep_dir / "sweep.json").read_text())
    table = sweep.sweep_table(results)
    q = results["settings"][0]["quantum_head"]["f1_positive"]
    assert f"{q['mean']:.3f} ± {q['std']:.3f} ({q['min']:.3f})" in table
    assert "3 of 3 trials finished" in table


def test_a_finished_sweep_run_again_reruns_nothing(three_seeds, capsys):
    sweep_dir, _ = three_seeds
    before = {p: p.stat().st_mtime_ns for p in sweep_dir.glob("*/summary.json")}
    assert main(["sweep", "--sweep-dir", str(sweep_dir), "-q"]) == 0
    assert {p: p.stat().st_mtime_ns for p in sweep_dir.glob("*/summary.json")} == before
    assert "3 of 3 trials finished" in capsys.readouterr().out


def test_another_sweep_in_the_same_folder_is_refused(three_seeds, capsys):
    sweep_dir, cache = three_seeds
    code = main(["sweep", *SMALL, "--seeds", "2", "--cache-dir", str(cache), "--sweep-dir", str(sweep_dir)])
    assert code == 2
    assert "holds another sweep" in capsys.readouterr().err


def sweep_command(sweep_dir: Path, cache: Path) -> list[str]:
    return [sys.executable, "-m", "orchestrator.cli", "sweep", *SMALL, "--seeds", "3", "--cache-dir", str(cache),
            "--sweep-dir", str(sweep_dir)]


def test_a_killed_sweep_resumes_without_rerunning_finished_trials(three_seeds, tmp_path):
    """kill -9 once the first trial has finished; started again, the sweep keeps that trial as it
    is and finishes the others, each to the numbers of the uninterrupted sweep (exact Aer)."""
    reference_dir, cache = three_seeds
    sweep_dir = tmp_path / "killed"
    process = subprocess.Popen(sweep_command(sweep_dir, cache), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while not list(sweep_dir.glob("*/summary.json")) and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)   # the driver and its local Ray, as a kill -9 of the sweep would
    process.wait()
    finished = {p: p.read_bytes() for p in sweep_dir.glob("*/summary.json")}
    assert 1 <= len(finished) < 3, "the kill must land after a trial finished and before the sweep did"

    resumed = subprocess.run(sweep_command(sweep_dir, cache) + ["--json"], capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    for path, content in finished.items():
        assert path.read_bytes() == content, f"{path.parent.name} was run again"
    results = json.loads(resumed.stdout)
    reference = json.loads((reference_dir / "sweep.json").read_text())
    assert [t["test"] for t in results["trials"]] == [t["test"] for t in reference["trials"]]
    assert results["settings"][0]["quantum_head"] == reference["settings"][0]["quantum_head"]
