"""Classification metrics and their mean / standard deviation over runs.

WA: overall accuracy (each item counts once, so frequent classes weigh more).
UA: mean per-class recall over the classes present in the reference.
WF1: per-class F1 weighted by reference support. MF1: unweighted mean F1 over
the classes present in the reference or the predictions (scikit-learn's
convention for labels=None). A class with no reference items and no
predictions is left out of UA and MF1 rather than counted as 0 or 1.
"""
from __future__ import annotations

import numpy as np

SUMMARY = ("wa", "ua", "wf1", "mf1")


def confusion(y_true, y_pred, n_classes) -> np.ndarray:
    """(C, C) counts: rows are the reference class, columns the prediction."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)), 1)
    return m


def from_confusion(m, classes) -> dict:
    m = np.asarray(m, dtype=np.float64)
    support = m.sum(1)
    predicted = m.sum(0)
    tp = np.diag(m)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    present = support > 0
    seen = present | (predicted > 0)
    total = support.sum()
    return {
        "wa": float(tp.sum() / total) if total else 0.0,
        "ua": float(recall[present].mean()) if present.any() else 0.0,
        "wf1": float((f1 * support).sum() / total) if total else 0.0,
        "mf1": float(f1[seen].mean()) if seen.any() else 0.0,
        "f1": {c: float(v) for c, v in zip(classes, f1)},
        "recall": {c: float(v) for c, v in zip(classes, recall)},
        "support": {c: int(v) for c, v in zip(classes, support)},
        "confusion": m.astype(np.int64).tolist(),
    }


def classification(y_true, y_pred, classes) -> dict:
    """All metrics for one test part."""
    return from_confusion(confusion(y_true, y_pred, len(classes)), classes)


def mean_std(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=0)), "n": int(len(v))}


def aggregate(runs, classes) -> dict:
    """Overall figures from per-(seed, fold) metrics.

    `runs` is a list of {"seed", "fold", "metrics"}. For each summary metric:
    mean and std over folds (of the seed-averaged fold values), over seeds
    (of the fold-averaged seed values), and over all runs; per-class F1 is
    averaged over all runs; the confusion matrix is summed over the folds of
    all seeds.
    """
    seeds = sorted({r["seed"] for r in runs})
    folds = list(dict.fromkeys(r["fold"] for r in runs))
    out = {}
    for name in SUMMARY:
        table = {(r["seed"], r["fold"]): r["metrics"][name] for r in runs}
        per_fold = [np.mean([table[s, f] for s in seeds if (s, f) in table]) for f in folds]
        per_seed = [np.mean([table[s, f] for f in folds if (s, f) in table]) for s in seeds]
        out[name] = {"mean": float(np.mean(list(table.values()))),
                     "std_folds": mean_std(per_fold)["std"], "std_seeds": mean_std(per_seed)["std"],
                     "per_fold": dict(zip(folds, map(float, per_fold))),
                     "per_seed": {str(s): float(v) for s, v in zip(seeds, per_seed)}}
    out["f1"] = {c: float(np.mean([r["metrics"]["f1"][c] for r in runs])) for c in classes}
    out["confusion"] = np.sum([np.asarray(r["metrics"]["confusion"]) for r in runs], axis=0).tolist()
    return out
