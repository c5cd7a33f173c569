"""From cached vectors to what the head trains on: standardised features and class weights."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

IMBALANCE_RATIO = 1.5  # class_weights auto: balance when the largest class is this many times the smallest
CONSTANT_FEATURE = 1e-3  # a feature whose std is under this x the median std is constant (Standardiser.fit)


@dataclass(frozen=True)
class Features:
    """Standardised vectors and labels of one split: the SplitInputs of a frozen encoder
    (training/model.py)."""

    x: torch.Tensor     # (rows, F) float32
    y: torch.Tensor     # (rows,) int64

    def __len__(self) -> int:
        return len(self.y)

    def batch(self, rows: np.ndarray) -> torch.Tensor:
        """The features of `rows` (positions in this split): what HybridHead.logits takes."""
        return self.x[torch.from_numpy(np.asarray(rows))]


@dataclass(frozen=True)
class Standardiser:
    """Per-feature mean and std of the train split; `apply` maps any split (or new texts) with them."""

    mean: np.ndarray    # (F,) float64
    std: np.ndarray     # (F,) float64, 1 where a feature is constant

    @classmethod
    def fit(cls, train_vectors: np.ndarray, relative_floor: float = CONSTANT_FEATURE) -> "Standardiser":
        """A feature whose std is at most 1e-12, or `relative_floor` x the median std, counts as
        constant: it is centred, not scaled. MiniLM has features constant up to rounding (std 1e-9):
        scaled to unit std they are pure rounding noise that the head and the baselines fit, and
        with a co-trained encoder its first small step becomes a jump that saturates the head."""
        mean = train_vectors.mean(axis=0, dtype=np.float64)
        std = train_vectors.std(axis=0, dtype=np.float64)
        floor = max(1e-12, relative_floor * float(np.median(std))) if len(std) else 1e-12
        return cls(mean=mean, std=np.where(std > floor, std, 1.0))

    def apply(self, vectors: np.ndarray, labels: Optional[np.ndarray] = None) -> Features:
        """Standardised float32 features; labels default to zeros (texts without labels)."""
        x = ((vectors.astype(np.float64) - self.mean) / self.std).astype(np.float32)
        y = np.zeros(len(vectors), dtype=np.int64) if labels is None else labels.astype(np.int64)
        return Features(x=torch.from_numpy(x), y=torch.from_numpy(y))

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std}


@dataclass(frozen=True)
class FittedInputs:
    """What a run trains on, made by its RunEncoder (training/model.py) before the head exists."""

    standardiser: Standardiser
    splits: tuple            # train, val, test SplitInputs (Features, or a co-trained encoder's EncoderInputs)
    baseline_features: tuple[Features, Features, Features]   # the frozen encoder's vectors: the baselines' inputs


def class_weights(labels: np.ndarray, n_classes: int, policy: str) -> torch.Tensor | None:
    """'balanced' weights n / (C * count_c); 'auto' uses them only when the classes are imbalanced."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    imbalanced = counts.max() > IMBALANCE_RATIO * max(counts.min(), 1.0)
    if policy == "none" or (policy == "auto" and not imbalanced):
        return None
    weights = len(labels) / (n_classes * np.maximum(counts, 1.0))
    return torch.tensor(weights, dtype=torch.float32)
