"""Classification metrics as pure functions: integer labels in, numbers out.

Conventions: `confusion[i, j]` counts rows whose true class is i and predicted class is j.
A precision, recall or F1 whose denominator is zero is 0.0 (as scikit-learn's zero_division=0).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) int64 counts; rows = true class, columns = predicted class."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in shape")
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (y_true, y_pred), 1)
    return counts


def accuracy(confusion: np.ndarray) -> float:
    total = confusion.sum()
    return float(np.trace(confusion) / total) if total else 0.0


def safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def precision_per_class(confusion: np.ndarray) -> np.ndarray:
    return safe_ratio(np.diag(confusion), confusion.sum(axis=0))


def recall_per_class(confusion: np.ndarray) -> np.ndarray:
    return safe_ratio(np.diag(confusion), confusion.sum(axis=1))


def f1_per_class(confusion: np.ndarray) -> np.ndarray:
    # 2TP / (2TP + FP + FN): equal to the harmonic mean of precision and recall, without 0/0
    true_positives = np.diag(confusion)
    return safe_ratio(2 * true_positives, confusion.sum(axis=0) + confusion.sum(axis=1))


def f1_macro(confusion: np.ndarray) -> float:
    return float(f1_per_class(confusion).mean())


def support_per_class(confusion: np.ndarray) -> np.ndarray:
    """Rows whose true class is each class."""
    return confusion.sum(axis=1)


def f1_weighted(confusion: np.ndarray) -> float:
    """Per-class F1 weighted by each class's true rows (scikit-learn's average="weighted")."""
    support = support_per_class(confusion)
    return float(np.dot(f1_per_class(confusion), support) / support.sum()) if support.sum() else 0.0


AUTO = "auto"   # train.select_metric's default: f1_positive with two classes, f1_macro with more


def selection_metric(name: str, n_classes: int) -> str:
    """The metric `name` picks the best checkpoint by: itself, or what 'auto' means for `n_classes`."""
    if name != AUTO:
        return name
    return "f1_positive" if n_classes <= 2 else "f1_macro"


def headline_f1(n_classes: int) -> str:
    """The F1 a table leads with: the positive class's with two classes, macro F1 with more."""
    return selection_metric(AUTO, n_classes)


@dataclass(frozen=True)
class Scores:
    accuracy: float
    f1_positive: float          # F1 of the positive class (data.positive_label)
    f1_macro: float
    precision: list[float]      # per class, class-index order
    recall: list[float]
    f1: list[float]
    confusion: list[list[int]]
    f1_weighted: float = 0.0    # per-class F1 weighted by support
    support: list[int] = field(default_factory=list)   # true rows per class

    def metric(self, name: str) -> float:
        return float(getattr(self, selection_metric(name, len(self.f1))))

    @property
    def n_classes(self) -> int:
        return len(self.f1)

    def per_class(self, label_names: list[str]) -> dict[str, dict]:
        """{class name: precision, recall, f1, support}, in class-index order."""
        return {name: {"precision": self.precision[i], "recall": self.recall[i], "f1": self.f1[i],
                       "support": int(self.support[i]) if self.support else 0}
                for i, name in enumerate(label_names)}


def score(y_true, y_pred, n_classes: int, positive: int) -> Scores:
    """Every metric the project reports, for one set of predictions."""
    confusion = confusion_matrix(y_true, y_pred, n_classes)
    f1 = f1_per_class(confusion)
    return Scores(accuracy=accuracy(confusion), f1_positive=float(f1[positive]), f1_macro=float(f1.mean()),
                  precision=precision_per_class(confusion).tolist(), recall=recall_per_class(confusion).tolist(),
                  f1=f1.tolist(), confusion=confusion.tolist(), f1_weighted=f1_weighted(confusion),
                  support=support_per_class(confusion).tolist())
