"""What a finished run reports: summary.json, the plots and the table `orchestrate run` prints.

Pure assembly of numbers the loop measured; the only I/O is writing the run dir's files.
"""
from __future__ import annotations

import datetime
import io
import statistics
from pathlib import Path

import numpy as np

from orchestrator.config import Config
from orchestrator.core import invocation
from orchestrator.core.files import write_bytes_atomically
from orchestrator.data.datasets import Dataset
from orchestrator.data.splits import Split
from orchestrator.quantum.runner import CircuitRunner
from orchestrator.run_dir import RunDir
from orchestrator.training.metrics import Scores
from orchestrator.training.state import TrainState


def quantum_usage(runner: CircuitRunner) -> dict:
    """summary.json's "quantum" block: jobs, circuits, shots, QPU seconds, and on a remote
    backend what the journal saved and how the jobs ran."""
    counters = runner.counters
    usage = {"jobs": counters.total.jobs, "circuits": counters.total.circuits, "shots": counters.total.shots,
             "gradient": runner.gradient.name, "qpu_seconds": 0.0}   # a simulator uses no QPU time
    journal = runner.job_hook.usage()           # {} without a job journal
    usage.update(journal)
    usage.update(runner.backend.usage())
    if journal:
        usage.update(transpilations=runner.transpilations, jobs_from_journal=counters.from_journal,
                     jobs_reattached=counters.reattached, jobs_resubmitted=counters.resubmitted)
    return usage


def summary(config: Config, dataset: Dataset, split: Split, state: TrainState, test: Scores, baselines: dict[str, Scores],
            quantum: dict, train_seconds: float, requests: int, encoder_parameters: int = 0) -> dict:
    """summary.json (its JSON Schema: docs/summary.schema.json)."""
    logistic = baselines["logistic_regression"]
    embed = state.embed_info
    return {
        "dataset": config.data.name,
        "model": config.embedding.model,
        "backend": config.quantum.backend,
        "n_qubits": config.quantum.n_qubits,
        "depth": config.quantum.depth,
        "test": brief(test, dataset.label_names),
        "classical_baseline": {"accuracy": logistic.accuracy, "f1_positive": logistic.f1_positive,
                               "f1_macro": logistic.f1_macro,
                               **{name: brief(scores, dataset.label_names) for name, scores in baselines.items()}},
        "quantum": quantum,
        "timing": {"embed_s": embed["seconds"], "train_s": train_seconds, "steps": state.step,
                   "step_s_median": statistics.median(state.step_seconds) if state.step_seconds else 0.0,
                   "epoch_s_mean": statistics.fmean(row["seconds"] for row in state.history) if state.history else 0.0},
        "cache": {"path": embed["path"], "key": embed["key"], "hit": embed["hit"], "bytes": embed.get("bytes", 0)},
        "encoder": encoder_block(config, encoder_parameters),
        "labels": list(dataset.label_names),
        "positive_label": dataset.positive_label,
        "split": {"train": len(split.train), "val": len(split.val), "test": len(split.test),
                  "duplicates_merged": split.duplicates_merged, "policy": split.policy},
        "best": state.best.to_dict(),
        "epochs_run": len(state.history),
        "requests": {"train_steps": state.step, "train_batches": state.train_requests,
                     "evaluations": requests - state.train_requests},
        "run": run_block(state),
    }


def run_block(state: TrainState) -> dict:
    """When and by what the run was made: summary.json's provenance."""
    finished_by = invocation.command_line()
    return {"started_at": state.started_at or None, "finished_at": now(), "command": state.command or None,
            "finished_by": finished_by if finished_by != state.command else None,
            "version": invocation.package_version(), "commit": invocation.git_commit()}


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def encoder_block(config: Config, trainable_parameters: int) -> dict:
    """What of the encoder trained: train_layers 0 (frozen), k (the top k layers) or all."""
    e = config.embedding
    return {"train_layers": e.train_layers, "trainable_parameters": trainable_parameters, "pooling": e.pooling,
            "baselines_on": "the frozen encoder's vectors"}


def write_report(run_dir: RunDir, summary_: dict, history: list[dict], test: Scores, label_names: list[str]) -> None:
    run_dir.write_summary(summary_)
    write_plots(run_dir, history, test, label_names, summary_["best"])


def brief(scores: Scores, label_names: list[str] | None = None) -> dict:
    """A scores block of summary.json: accuracy, F1 of the positive class, macro and weighted F1, the
    confusion and, given the class names, each class's precision, recall, F1 and support."""
    block = {"accuracy": scores.accuracy, "f1_positive": scores.f1_positive, "f1_macro": scores.f1_macro,
             "f1_weighted": scores.f1_weighted, "confusion": scores.confusion}
    if label_names is not None:
        block["per_class"] = scores.per_class(list(label_names))
    return block


SELECTION_COLUMNS = {"f1_positive": ("val_f1", "validation F1 (positive class)"),
                     "f1_macro": ("val_f1_macro", "validation F1 (macro)"), "accuracy": ("val_acc", "validation accuracy")}


def write_plots(run_dir: Path, history: list[dict], test: Scores, label_names: list[str],
                best: dict | None = None) -> list[Path]:
    """loss.png, accuracy.png (train / validation per epoch, the metric that picks the best model and
    the best epoch marked), confusion.png and per_class.png (test: each class's precision, recall and F1,
    macro and weighted F1); none without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        return []
    written = []
    epochs = [row["epoch"] for row in history]
    for name, key in (("loss", "loss"), ("accuracy", "acc")):
        figure, axes = plt.subplots(figsize=(5.5, 3.8))
        axes.plot(epochs, [row[f"train_{key}"] for row in history], marker="o", label="train")
        axes.plot(epochs, [row[f"val_{key}"] for row in history], marker="o", label="validation")
        if name == "accuracy" and best and best.get("metric") in SELECTION_COLUMNS and best["metric"] != "accuracy":
            column, label = SELECTION_COLUMNS[best["metric"]]
            axes.plot(epochs, [row[column] for row in history], marker="s", linestyle="--", label=label)
        if best and best.get("epoch"):
            axes.axvline(best["epoch"], color="grey", linestyle=":",
                         label=f"best epoch {best['epoch']} ({best['metric']} {best['value']:.3f})")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))   # epochs are whole numbers
        axes.set_xlabel("epoch")
        axes.set_ylabel(name)
        axes.set_title(f"{name} per epoch" + (" and the selection metric" if name == "accuracy" else ""))
        axes.legend(fontsize="small")
        figure.tight_layout()
        written.append(save_figure(figure, run_dir / f"{name}.png"))
        plt.close(figure)
    written.append(confusion_figure(plt, np.array(test.confusion), label_names, run_dir / "confusion.png"))
    written.append(per_class_figure(plt, test, label_names, run_dir / "per_class.png"))
    return written


def short_label(name: str, limit: int = 24) -> str:
    return name if len(name) <= limit else name[:limit - 1] + "…"


def confusion_figure(plt, confusion: np.ndarray, label_names: list[str], target: Path) -> Path:
    """The test confusion matrix, each count large and in a colour that reads on its cell; the figure
    grows with the classes, the counts and labels shrink (10 classes read as well as 2)."""
    n = len(label_names)
    side = max(4.5, 2.5 + 0.62 * n)
    figure, axes = plt.subplots(figsize=(side, side - 0.5))     # 4.5 x 4 up to 3 classes, as before
    axes.imshow(confusion, cmap="Blues")
    count_size = 14 if n <= 4 else max(8, 17 - n)
    for (i, j), count in np.ndenumerate(confusion):
        dark = count > confusion.max() / 2
        axes.text(j, i, str(count), ha="center", va="center", fontsize=count_size, color="white" if dark else "black")
    names = [short_label(name) for name in label_names]
    label_size = 10 if n <= 6 else 8
    rotate = n > 3 or max(map(len, names), default=0) > 8
    axes.set_xticks(range(n), names, fontsize=label_size, rotation=45 if rotate else 0,
                    ha="right" if rotate else "center", rotation_mode="anchor")
    axes.set_yticks(range(n), names, fontsize=label_size)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(f"test confusion ({int(confusion.sum())} rows)")
    figure.tight_layout()
    save_figure(figure, target)
    plt.close(figure)
    return target


def per_class_figure(plt, test: Scores, label_names: list[str], target: Path) -> Path:
    """Each class's test precision, recall and F1 as bars, macro and weighted F1 as lines."""
    n = len(label_names)
    figure, axes = plt.subplots(figsize=(max(5.5, 1.5 + 0.75 * n), 3.8))
    x, width = np.arange(n), 0.27
    for k, (name, values) in enumerate((("precision", test.precision), ("recall", test.recall), ("F1", test.f1))):
        axes.bar(x + (k - 1) * width, values, width, label=name)
    axes.axhline(test.f1_macro, color="black", linestyle="--", linewidth=1, label=f"macro F1 {test.f1_macro:.3f}")
    axes.axhline(test.f1_weighted, color="grey", linestyle=":", linewidth=1.2,
                 label=f"weighted F1 {test.f1_weighted:.3f}")
    names = [short_label(name) for name in label_names]
    rotate = n > 4 or max(map(len, names), default=0) > 10
    axes.set_xticks(x, names, fontsize=10 if n <= 6 else 8, rotation=45 if rotate else 0,
                    ha="right" if rotate else "center", rotation_mode="anchor")
    axes.set_ylim(0, 1.3)            # room for the legend above the bars
    axes.set_yticks(np.linspace(0, 1, 6))
    axes.set_ylabel("test")
    axes.set_title(f"per class, test split (accuracy {test.accuracy:.3f})")
    axes.legend(fontsize="small", loc="upper center", ncol=5, frameon=False)
    figure.tight_layout()
    save_figure(figure, target)
    plt.close(figure)
    return target


def save_figure(figure, target: Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    write_bytes_atomically(target, buffer.getvalue())
    return target


def report_table(summary: dict, run_dir: Path) -> str:
    """The short comparison printed at the end of `orchestrate run`."""
    rows = [(phase_label(phase), phase["test"]) for phase in summary.get("phases", [])] or [("quantum head", summary["test"])]
    rows += [("logistic regression", summary["classical_baseline"]["logistic_regression"]),
             ("classical head (no circuit)", summary["classical_baseline"]["classical_head"])]
    width = max(28, *(len(name) for name, _ in rows))
    if len(summary["labels"]) <= 2:
        lines = [f"{'test split':<{width}} {'accuracy':>8} {'F1 ' + summary['positive_label']:>10} {'F1 macro':>9}"]
        lines += [f"{name:<{width}} {s['accuracy']:>8.3f} {s['f1_positive']:>10.3f} {s['f1_macro']:>9.3f}"
                  for name, s in rows]
    else:      # one class's F1 says little among many: accuracy and macro F1 lead
        lines = [f"{'test split':<{width}} {'accuracy':>8} {'F1 macro':>9} {'F1 weighted':>12}"]
        lines += [f"{name:<{width}} {s['accuracy']:>8.3f} {s['f1_macro']:>9.3f} {weighted(s):>12}" for name, s in rows]
    lines += per_class_lines(summary["test"], width)
    q, timing = summary["quantum"], summary["timing"]
    where = "device phase" if "phases" in summary else "quantum"
    lines.append(f"{where}: {q['jobs']} jobs, {q['circuits']} circuits; {timing['steps']} steps in all "
                 f"(median {timing['step_s_median'] * 1000:.0f} ms), train {timing['train_s']:.1f} s, "
                 f"embed {timing['embed_s']:.1f} s ({'cache hit' if summary['cache']['hit'] else 'computed'})")
    encoder = summary.get("encoder", {})
    if encoder.get("train_layers", 0) != 0:
        cached = f"layer states cached: {summary['cache']['bytes'] / 2**20:.0f} MiB" if summary["cache"]["path"] \
            else "nothing cached"
        lines.append(f"encoder: train_layers {encoder['train_layers']}, {encoder['trainable_parameters']:,} trainable "
                     f"parameters, {timing['epoch_s_mean']:.0f} s per epoch; {cached}")
    if "phases" in summary:
        spent = [f"{p['phase']} {qpu_spent(p['quantum'])}" for p in summary["phases"]
                 if p["quantum"].get("qpu_seconds_estimated") is not None]
        lines.append(f"QPU: {', '.join(spent) or 'none'}")
    lines.append(f"run dir: {run_dir}")
    return "\n".join(lines)


def weighted(scores: dict) -> str:
    return f"{scores['f1_weighted']:.3f}" if "f1_weighted" in scores else "-"


def per_class_lines(test: dict, width: int) -> list[str]:
    """The quantum head's test precision, recall, F1 and support per class (none in an older summary)."""
    if "per_class" not in test:
        return []
    lines = [f"{'per class (quantum head)':<{width}} {'precision':>9} {'recall':>7} {'F1':>6} {'rows':>6}"]
    lines += [f"{name:<{width}} {c['precision']:>9.3f} {c['recall']:>7.3f} {c['f1']:>6.3f} {c['support']:>6}"
              for name, c in test["per_class"].items()]
    return lines


def qpu_spent(quantum: dict) -> str:
    """'74 s billed (estimated 78 s)', or '78 s estimated' where nothing was billed (local testing mode)."""
    estimated = quantum["qpu_seconds_estimated"]
    if quantum.get("qpu_seconds"):
        return f"{quantum['qpu_seconds']:.0f} s billed (estimated {estimated:.0f} s)"
    return f"{estimated:.0f} s estimated"


def phase_label(phase: dict) -> str:
    """'quantum head, exact Aer', '... fake_fez noise on Aer, 0 steps', '... on fake_fez, 12 steps'."""
    if phase["phase"] == "simulator":
        return "quantum head, exact Aer"
    where = f"{phase['noise_model']} noise on Aer" if phase["noise_model"] else f"on {phase['backend']}"
    return f"quantum head, {where}, {phase['steps_run']} steps"
