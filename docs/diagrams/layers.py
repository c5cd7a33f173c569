"""Draws docs/layers.svg: the project's layers, lowest at the bottom, and
the seams each one offers. A module imports its own layer and the layers below, never above
(tests/unit/test_architecture.py checks the source; test_docs checks this picture names every layer).

    python docs/diagrams/layers.py
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["svg.hashsalt"] = "layers"     # the same picture gives the same file
matplotlib.rcParams["svg.fonttype"] = "none"        # text stays text: searchable, and small
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

DOCS = Path(__file__).resolve().parents[1]

# (layer, modules, the seams it offers), top to bottom: what `orchestrate` walks down through
LAYERS = [
    ("orchestrator.cli · orchestrator (the Python API)", "cli.py  api.py  __init__.py",
     "argument parsing; one line, exit 2 / 75 / 130 · HybridTextClassifier: a scikit-learn estimator"),
    ("orchestrator.pipeline · runs · inference · sweep", "pipeline.py  runs.py  inference.py  sweep.py",
     "preflight(config, needs) · prepare · resolve (the final config) · eval / predict · sweeps"),
    ("orchestrator.training", "loop.py  model.py  encoder.py  phases.py  state.py  report.py ...",
     "RunEncoder (frozen | co-trained) · SplitInputs · build_model · PHASES of a device run"),
    ("orchestrator.quantum", "runner.py  model.py  circuits.py  journal.py  estimate.py  backends/",
     "CircuitRunner · HybridHead · backend registry: FAMILIES aer | fake | ibm"),
    ("orchestrator.config · data · run_dir", "config/  data/datasets.py  data/splits.py  run_dir.py",
     "frozen Config + derive · Dataset, Split · RunDir (file names, lock, state)"),
    ("workers", "cluster.py  embedding.py  circuits.py  sweep.py", "Ray and only here: actors and their pools"),
    ("embeddings", "models.py  encode.py  content.py  store.py  stage.py",
     "Vectors | LayerStates (the cache's content) · EncoderSource · the HDF5 store"),
    ("orchestrator.quantum: gradients · shift_rule · ansatz; orchestrator.data.readers",
     "pure: numpy and the standard library", "GRADIENT_METHODS · ENCODINGS · ENTANGLERS · READERS: the config's choices"),
    ("orchestrator.core", "errors  files  locks  log  paulis  backend_names  invocation",
     "imports nothing of the project: exit codes, atomic writes, flock, backend name rules"),
]


def draw(target: Path) -> None:
    height = 0.9
    figure, axes = plt.subplots(figsize=(11, 0.95 * len(LAYERS) + 0.6))
    axes.set_xlim(0, 11)
    axes.set_ylim(-0.2, len(LAYERS) + 0.2)
    axes.axis("off")
    for index, (layer, modules, seams) in enumerate(LAYERS):
        y = len(LAYERS) - 1 - index
        shade = 0.93 - 0.05 * (index % 2)
        axes.add_patch(FancyBboxPatch((0.1, y + 0.05), 9.6, height - 0.1, boxstyle="round,pad=0.02,rounding_size=0.08",
                                      facecolor=(shade, shade, 1.0), edgecolor="#334", linewidth=1))
        axes.text(0.3, y + 0.66, layer, fontsize=10.5, fontweight="bold", va="center", family="DejaVu Sans")
        axes.text(0.3, y + 0.42, modules, fontsize=8.5, va="center", family="DejaVu Sans Mono", color="#333")
        axes.text(0.3, y + 0.2, seams, fontsize=8.5, va="center", family="DejaVu Sans", color="#1a4d1a")
    axes.add_patch(FancyArrowPatch((10.25, len(LAYERS) - 0.1), (10.25, 0.1), arrowstyle="-|>", mutation_scale=18,
                                   color="#334", linewidth=1.5))
    axes.text(10.55, len(LAYERS) / 2, "imports go down only", rotation=90, va="center", ha="center", fontsize=10)
    figure.tight_layout()
    figure.savefig(target, format="svg", metadata={"Date": None})
    plt.close(figure)


if __name__ == "__main__":
    draw(DOCS / "layers.svg")
    print(DOCS / "layers.svg")
