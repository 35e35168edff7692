"""Classification and regression metrics and their mean / standard deviation over runs.

WA: overall accuracy (each item counts once, so frequent classes weigh more).
UA: mean per-class recall over the classes present in the reference.
WF1: per-class F1 weighted by reference support. MF1: unweighted mean F1 over
the classes present in the reference or the predictions (scikit-learn's
convention for labels=None). A class with no reference items and no
predictions is left out of UA and MF1 rather than counted as 0 or 1.
MF1all: unweighted mean F1 over every class of the label set, a class never
in the reference nor predicted counting as 0 (Aff-Wild2's challenge measure,
"mean F1 over the 8 expressions"; equal to MF1 when every class occurs).

Regression of a score in a range [lo, hi] (CMU-MOSEI sentiment, [-3, 3]):
MAE, Pearson r, ACC-2 in both conventions and ACC-n over the n rounded
integer scores (`regression`).
"""
from __future__ import annotations

import numpy as np

from pipeline.labels import round_clip

SUMMARY = ("wa", "ua", "wf1", "mf1", "mf1_all")


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
        "mf1_all": float(f1.mean()) if len(f1) else 0.0,
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


def aggregate(runs, classes, names=SUMMARY) -> dict:
    """Overall figures from per-(seed, fold) metrics.

    `runs` is a list of {"seed", "fold", "metrics"}. For each summary metric
    (`names`: SUMMARY, or a regression's `regression_summary`):
    mean and std over folds (of the seed-averaged fold values), over seeds
    (of the fold-averaged seed values), and over all runs; per-class F1 is
    averaged over all runs; the confusion matrix is summed over the folds of
    all seeds.
    """
    seeds = sorted({r["seed"] for r in runs})
    folds = list(dict.fromkeys(r["fold"] for r in runs))
    out = {}
    for name in names:
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


# --- regression --------------------------------------------------------------

def regression_summary(lo, hi) -> tuple:
    """The summary metric names of a regression over [lo, hi] (MOSEI: acc7)."""
    return ("mae", "corr", "acc2", "f1_2", "acc2_nonzero", "f1_2_nonzero", f"acc{hi - lo + 1}")


def regression(y_true, y_pred, lo, hi) -> dict:
    """All metrics of predicted scores against reference scores in [lo, hi].

    mae: mean absolute error. corr: Pearson r (0 when either side is
    constant, where no linear relation can be measured).
    ACC-2, split at the middle m of the range (0 for [-3, 3]), in the two
    conventions papers use (most do not say which):
    - acc2, f1_2: below m ("negative") vs at or above it ("non-negative"),
      every item;
    - acc2_nonzero, f1_2_nonzero: below vs above m, items whose reference
      is exactly m left out (a prediction counts as above only when > m).
    f1_2*: the F1 of the two classes weighted by their reference support.
    acc<n>: both sides clipped to [lo, hi] and rounded to the n = hi - lo + 1
    integers (halves to even, pipeline.labels.round_clip); with that n-class
    confusion matrix and per-class F1, recall and support, for the plots.
    """
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    mid = (lo + hi) / 2
    out = {"mae": float(np.abs(t - p).mean()) if len(t) else 0.0, "corr": pearson(t, p)}
    out.update(_binary(t >= mid, p >= mid, ""))
    nonzero = t != mid
    out.update(_binary(t[nonzero] > mid, p[nonzero] > mid, "_nonzero"))
    classes = [str(k) for k in range(lo, hi + 1)]
    rounded = from_confusion(confusion(round_clip(t, lo, hi) - lo, round_clip(p, lo, hi) - lo, len(classes)),
                             classes)
    out[f"acc{len(classes)}"] = rounded["wa"]
    out.update({k: rounded[k] for k in ("f1", "recall", "support", "confusion")})
    return out


def _binary(t_high, p_high, suffix) -> dict:
    m = from_confusion(confusion(t_high, p_high, 2), ["below", "above"])
    return {f"acc2{suffix}": m["wa"], f"f1_2{suffix}": m["wf1"]}


def pearson(a, b) -> float:
    """Pearson correlation of two equally long sequences; 0 when either is constant."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if len(a) < 2:
        return 0.0
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else 0.0
