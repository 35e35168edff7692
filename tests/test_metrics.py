"""Metrics against hand-computed values and scikit-learn."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from heads.metrics import aggregate, classification

CLASSES = ["ang", "hap", "sad", "neu"]


def test_hand_computed():
    # ang: 3 items, 2 right (one called hap); hap: 1 item, right; sad: 2, both called neu; neu: 2, right.
    y_true = [0, 0, 0, 1, 2, 2, 3, 3]
    y_pred = [0, 0, 1, 1, 3, 3, 3, 3]
    m = classification(y_true, y_pred, CLASSES)
    assert m["wa"] == pytest.approx(5 / 8)
    assert m["ua"] == pytest.approx((2 / 3 + 1 + 0 + 1) / 4)
    # F1: ang p=1 r=2/3 -> 0.8; hap p=1/2 r=1 -> 2/3; sad 0; neu p=1/2 r=1 -> 2/3.
    f1 = [0.8, 2 / 3, 0.0, 2 / 3]
    assert [m["f1"][c] for c in CLASSES] == pytest.approx(f1)
    assert m["mf1"] == pytest.approx(np.mean(f1))
    assert m["wf1"] == pytest.approx(np.dot(f1, [3, 1, 2, 2]) / 8)
    assert m["confusion"] == [[2, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 2], [0, 0, 0, 2]]


@pytest.mark.parametrize("seed", range(5))
def test_against_sklearn(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 4, 200)
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, 4, 200))
    if seed == 4:   # a class never predicted and one never present
        y_true[y_true == 3] = 2
        y_pred[y_pred == 1] = 0
    m = classification(y_true, y_pred, CLASSES)
    assert m["wa"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert m["ua"] == pytest.approx(skm.balanced_accuracy_score(y_true, y_pred))
    assert m["wf1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="weighted", zero_division=0))
    assert m["mf1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro", zero_division=0))
    assert np.array_equal(m["confusion"], skm.confusion_matrix(y_true, y_pred, labels=range(4)))
    present = skm.f1_score(y_true, y_pred, average=None, labels=range(4), zero_division=0)
    assert [m["f1"][c] for c in CLASSES] == pytest.approx(present)


def test_aggregate_over_folds_and_seeds():
    def run(seed, fold, wa):
        n_right = int(round(wa * 10))
        y_pred = [0] * n_right + [1] * (10 - n_right)
        return {"seed": seed, "fold": fold, "metrics": classification([0] * 10, y_pred, CLASSES)}
    runs = [run(0, "a", 0.6), run(0, "b", 0.8), run(1, "a", 0.7), run(1, "b", 0.9)]
    out = aggregate(runs, CLASSES)
    assert out["wa"]["mean"] == pytest.approx(0.75)
    assert out["wa"]["per_fold"] == pytest.approx({"a": 0.65, "b": 0.85})
    assert out["wa"]["std_folds"] == pytest.approx(0.1)           # std of 0.65, 0.85
    assert out["wa"]["per_seed"] == pytest.approx({"0": 0.7, "1": 0.8})
    assert out["wa"]["std_seeds"] == pytest.approx(0.05)
    assert np.sum(out["confusion"]) == 40
