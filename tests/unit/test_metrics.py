"""Metrics against hand-computed cases."""
import numpy as np
import pytest

from orchestrator.training.metrics import (accuracy, confusion_matrix, f1_macro, f1_per_class, precision_per_class,
                                  recall_per_class, score)

# 10 rows, class 1 positive: TP 3, FN 1, FP 2, TN 4
Y_TRUE = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
Y_PRED = [1, 1, 1, 0, 1, 1, 0, 0, 0, 0]


def test_confusion_rows_are_true_classes_columns_predictions():
    assert confusion_matrix(Y_TRUE, Y_PRED, 2).tolist() == [[4, 2], [1, 3]]


def test_binary_case_by_hand():
    c = confusion_matrix(Y_TRUE, Y_PRED, 2)
    assert accuracy(c) == pytest.approx(7 / 10)
    assert precision_per_class(c).tolist() == pytest.approx([4 / 5, 3 / 5])
    assert recall_per_class(c).tolist() == pytest.approx([4 / 6, 3 / 4])
    f1_negative = 2 * (4 / 5) * (4 / 6) / (4 / 5 + 4 / 6)     # 8/11
    f1_positive = 2 * (3 / 5) * (3 / 4) / (3 / 5 + 3 / 4)     # 2/3
    assert f1_per_class(c).tolist() == pytest.approx([f1_negative, f1_positive])
    assert f1_macro(c) == pytest.approx((f1_negative + f1_positive) / 2)


def test_three_classes_by_hand():
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [0, 1, 1, 1, 0, 2]
    c = confusion_matrix(y_true, y_pred, 3)
    assert c.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert accuracy(c) == pytest.approx(4 / 6)
    # class 0: P 1/2 R 1/2 F1 1/2; class 1: P 2/3 R 1 F1 4/5; class 2: P 1 R 1/2 F1 2/3
    assert f1_per_class(c).tolist() == pytest.approx([1 / 2, 4 / 5, 2 / 3])
    s = score(y_true, y_pred, 3, positive=2)
    assert s.f1_positive == pytest.approx(2 / 3)
    assert s.f1_macro == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)


def test_a_class_never_predicted_nor_present_scores_zero_not_nan():
    c = confusion_matrix([0, 0, 0], [0, 0, 0], 2)
    assert precision_per_class(c).tolist() == [1.0, 0.0]
    assert f1_per_class(c).tolist() == [1.0, 0.0]
    assert not np.isnan(f1_macro(c))
    assert accuracy(np.zeros((2, 2), dtype=int)) == 0.0


def test_perfect_and_all_wrong():
    perfect = score([0, 1, 1], [0, 1, 1], 2, positive=1)
    assert (perfect.accuracy, perfect.f1_positive, perfect.f1_macro) == (1.0, 1.0, 1.0)
    wrong = score([0, 1, 1], [1, 0, 0], 2, positive=1)
    assert (wrong.accuracy, wrong.f1_positive, wrong.f1_macro) == (0.0, 0.0, 0.0)


def test_shapes_must_match():
    with pytest.raises(ValueError):
        confusion_matrix([0, 1], [0], 2)
