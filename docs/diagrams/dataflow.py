"""Draws docs/dataflow.svg: the data flow of a run, as DESIGN describes it: texts -> the embedding
stage on Ray -> the HDF5 cache -> the coordinator's training loop -> the scheduler -> Aer or IBM
Quantum, with what each step keeps on disk so that a killed run resumes.

    python docs/diagrams/dataflow.py
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["svg.hashsalt"] = "dataflow"   # the same picture gives the same file
matplotlib.rcParams["svg.fonttype"] = "none"        # text stays text: searchable, and small
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

DOCS = Path(__file__).resolve().parents[1]

# (x, y, title, lines, colour): the stages, left to right along the top, then back along the bottom
STAGES = {
    "texts": (0.2, 3.0, "texts", ["UCI TSV · CSV · JSONL", "Parquet · Hugging Face", "checked, hashed"], "#eef3ff"),
    "embed": (3.05, 3.0, "embedding on Ray", ["EmbeddingWorker actors", "GPU when present", "shards, length-sorted"],
              "#e8f6ec"),
    "cache": (5.9, 3.0, "HDF5 cache", ["content-addressed:", "texts × model × pooling", "vectors or layer states"],
              "#fff5e0"),
    "loop": (8.75, 3.0, "coordinator", ["training loop: HybridHead", "(co-trained top layers)", "checkpoints, best.pt"],
             "#f3ecfa"),
    "exact": (8.75, 0.2, "exact simulator", ["one batched torch", "statevector: backprop", "(quantum.gradient auto)"],
              "#e8f6ec"),
    "scheduler": (5.9, 0.2, "scheduler", ["parameter-shift table", "one primitive job per step", "job journal"],
                  "#fff5e0"),
    "backends": (3.05, 0.2, "Aer · IBM Quantum", ["Aer (shots, noise)", "fake devices (local mode)",
                                                  "ibm_* Session / Batch"], "#eef3ff"),
    "run_dir": (0.2, 0.2, "run dir", ["config.yaml, metrics.jsonl", "summary.json, plots", "model.safetensors"],
                "#f3ecfa"),
}
WIDTH, HEIGHT = 2.2, 1.75
# (from, to, label): the arrows
FLOWS = [("texts", "embed", "shards"), ("embed", "cache", "vectors"), ("cache", "loop", "batches"),
         ("loop", "exact", "exact Aer"), ("loop", "scheduler", "shots, noise,\ndevices"),
         ("scheduler", "backends", "jobs"), ("loop", "run_dir", "")]


def centre(name: str) -> tuple[float, float]:
    x, y, *_ = STAGES[name]
    return x + WIDTH / 2, y + HEIGHT / 2


def edge_points(start: str, end: str) -> tuple[tuple[float, float], tuple[float, float]]:
    """Where an arrow from `start` to `end` leaves and meets the boxes (their facing sides)."""
    (x0, y0), (x1, y1) = centre(start), centre(end)
    if abs(y0 - y1) < 0.01:     # side by side
        sign = 1 if x1 > x0 else -1
        return (x0 + sign * WIDTH / 2, y0), (x1 - sign * WIDTH / 2, y1)
    if abs(x0 - x1) < 0.01:     # one above the other
        return (x0, y0 - HEIGHT / 2), (x1, y1 + HEIGHT / 2)
    return (x0 - WIDTH / 2 + 0.3, y0 - HEIGHT / 2), (x1 + WIDTH / 2 - 0.3, y1 + HEIGHT / 2)


def draw(target: Path) -> None:
    figure, axes = plt.subplots(figsize=(11.4, 5.0))
    axes.set_xlim(0, 11.2)
    axes.set_ylim(-0.35, 5.25)
    axes.axis("off")
    for name, (x, y, title, lines, colour) in STAGES.items():
        axes.add_patch(FancyBboxPatch((x, y), WIDTH, HEIGHT, boxstyle="round,pad=0.02,rounding_size=0.12",
                                      facecolor=colour, edgecolor="#334", linewidth=1.1))
        axes.text(x + WIDTH / 2, y + HEIGHT - 0.33, title, fontsize=11, fontweight="bold", ha="center",
                  va="center", family="DejaVu Sans")
        for k, line in enumerate(lines):
            axes.text(x + WIDTH / 2, y + HEIGHT - 0.78 - 0.33 * k, line, fontsize=8.6, ha="center", va="center",
                      family="DejaVu Sans", color="#333")
    for start, end, label in FLOWS:
        (x0, y0), (x1, y1) = edge_points(start, end)
        if start == "loop" and end == "run_dir":     # down, along the gap between the rows, down again
            turn_y, run_x = 2.4, centre("run_dir")[0]
            axes.plot([9.3, 9.3, run_x], [3.0, turn_y, turn_y], color="#7a5c99", linewidth=1.3, linestyle="--")
            axes.add_patch(FancyArrowPatch((run_x, turn_y), (run_x, 1.95), arrowstyle="-|>", mutation_scale=15,
                                           color="#7a5c99", linewidth=1.3, linestyle="--"))
            axes.text(4.6, 2.2, "every checkpoint, metric and model file written atomically: resumable after kill -9",
                      fontsize=8.6, ha="center", va="center", color="#5a3c79", style="italic")
            continue
        axes.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=16, color="#334",
                                       linewidth=1.5))
        if label:
            if abs(y0 - y1) < 0.01:
                axes.text((x0 + x1) / 2, y0 + 0.14, label, fontsize=8.6, ha="center", va="bottom", color="#223")
            else:
                straight = abs(x0 - x1) < 0.01
                axes.text(x0 + 0.1 if straight else (x0 + x1) / 2 - 0.15, (y0 + y1) / 2 + (0 if straight else 0.15),
                          label, fontsize=8.6, ha="left" if straight else "right", va="center", color="#223")
    axes.text(5.6, 5.2, "orchestrate run: texts → Ray embedding → HDF5 cache → coordinator → scheduler → Aer / IBM",
              fontsize=11.5, ha="center", va="top", fontweight="bold", family="DejaVu Sans")
    axes.text(5.6, -0.3, "a killed run resumes from its cache, its checkpoints and its job journal: "
              "no vector embedded twice, no job paid for twice", fontsize=8.8, ha="center", va="bottom",
              color="#444")
    figure.tight_layout()
    figure.savefig(target, format="svg", metadata={"Date": None})
    plt.close(figure)


if __name__ == "__main__":
    draw(DOCS / "dataflow.svg")
    print(DOCS / "dataflow.svg")
