"""Splits without leaks: stratified by class and seeded.

Identical texts are the trap: the SMS collection repeats 403 of its 5,574 messages, and a plain
random split (policy `keep`, what the reference notebook did) scores the model on messages it was
trained on. `merge` (default) keeps only the first copy of each text; `group` keeps every copy
but sends each group of copies to one split.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from orchestrator.config import SplitConfig
from orchestrator.core.errors import UserError
from orchestrator.data.datasets import Dataset

TRAIN, VAL, TEST = 0, 1, 2


@dataclass(frozen=True, eq=False)
class Split:
    train: np.ndarray           # int64 row indices into the Dataset, sorted ascending
    val: np.ndarray
    test: np.ndarray
    duplicates_merged: int      # rows repeating an earlier text: dropped (merge) or kept with it (group)
    policy: str
    label_conflicts: int = 0    # of those, rows whose label differs from the first copy's

    def describe(self) -> str:
        sizes = f"split {len(self.train)}/{len(self.val)}/{len(self.test)} (train/val/test)"
        if self.policy == "keep":
            return f"{sizes}, duplicate texts treated as independent rows (policy keep)"
        action = "merged" if self.policy == "merge" else "kept with their first copy"
        line = f"{sizes}, {self.duplicates_merged} duplicate rows {action} (policy {self.policy})"
        if self.label_conflicts:
            line += f"; {self.label_conflicts} of them had a different label than their first copy"
        return line


def split_dataset(ds: Dataset, split: SplitConfig, duplicates: str) -> Split:
    """Stratified, seeded train/val/test split of `ds` under a duplicate-text policy (merge, group,
    keep). The fractions and the policy were checked with the config (orchestrator/config/sections.py)."""

    groups = duplicate_groups(ds.texts) if duplicates != "keep" else [[i] for i in range(len(ds))]
    repeats = [row for group in groups for row in group[1:]]
    conflicts = sum(int(ds.labels[row] != ds.labels[group[0]]) for group in groups for row in group[1:])
    if duplicates == "merge":
        groups = [group[:1] for group in groups]

    group_labels = np.array([ds.labels[group[0]] for group in groups], dtype=np.int64)
    group_sizes = np.array([len(group) for group in groups], dtype=np.int64)
    assignment = stratified_assignment(group_labels, group_sizes, split.val, split.test,
                                       np.random.default_rng(split.seed))
    parts = [rows_of(groups, np.flatnonzero(assignment == part)) for part in (TRAIN, VAL, TEST)]
    check_every_class_in_every_split(ds, parts, split)
    return Split(*parts, duplicates_merged=len(repeats), policy=duplicates,
                 label_conflicts=conflicts)


def check_every_class_in_every_split(ds: Dataset, parts: list[np.ndarray], split: SplitConfig) -> None:
    """Refuse a class too rare to be trained, validated and tested: a label on one row (a typo in
    the file, most often) would otherwise become a class of its own, and the positive one."""
    missing = [name for label, name in enumerate(ds.label_names)
               if any(not np.any(ds.labels[rows] == label) for rows in parts if len(rows))]
    if missing:
        counts = ", ".join(f"{name} {int((ds.labels == label).sum())}" for label, name in enumerate(ds.label_names))
        raise UserError(f"label {', '.join(map(repr, missing))} has too few rows to stratify into "
                        f"train/val/test at {1 - split.val - split.test:g}/{split.val:g}/{split.test:g} "
                        f"(rows per label: {counts}); fix those rows, or give the labels to expect with data.labels")



def duplicate_groups(texts: list[str]) -> list[list[int]]:
    """Row indices grouped by identical text, groups ordered by their first row."""
    groups: dict[str, list[int]] = {}
    for row, text in enumerate(texts):
        groups.setdefault(text, []).append(row)
    return list(groups.values())


def stratified_assignment(labels: np.ndarray, sizes: np.ndarray, val: float, test: float,
                          rng: np.random.Generator) -> np.ndarray:
    """TRAIN/VAL/TEST for each unit (a row or a group of rows), stratified by the unit's label.

    Per class the units are shuffled and laid end to end; the first round(rows * test) rows go to
    test, the next round(rows * val) to val, the rest to train. A group goes where its first row
    falls, so with single-row units this is an exact cut, and groups move the cut by at most one
    group.
    """
    assignment = np.full(len(labels), TRAIN, dtype=np.int64)
    for label in np.unique(labels):
        units = rng.permutation(np.flatnonzero(labels == label))
        starts = np.cumsum(sizes[units]) - sizes[units]
        n_rows = int(sizes[units].sum())
        n_test = round(n_rows * test)
        n_val = min(round(n_rows * val), n_rows - n_test)
        assignment[units[starts < n_test + n_val]] = VAL
        assignment[units[starts < n_test]] = TEST
    return assignment


def rows_of(groups: list[list[int]], chosen: Iterable[int]) -> np.ndarray:
    return np.sort(np.array([row for g in chosen for row in groups[g]], dtype=np.int64))
