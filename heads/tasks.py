"""Tasks: what a head's outputs mean, and how they are trained and scored.

The label set decides the task (its kind in manifests/labelsets.toml, see
pipeline/labels.py). A classification over the set's classes: one output
per class, cross-entropy, the argmax as prediction, WA / UA / WF1 / MF1. The
regression of a score in a range (CMU-MOSEI sentiment in [-3, 3]): one
output, an L1 loss, the output itself as prediction, MAE / Pearson r /
ACC-2 / ACC-n (heads/metrics.py).

Heads stay task-agnostic: a head is built with `task.n_outputs` outputs, and
`Head.loss` takes its base objective from the model's task (set by the
training loop and saved with the checkpoint) before adding the head's own
auxiliary terms. A task is saved in run records and checkpoints as its
`describe()` dict and rebuilt with `from_description`.
"""
from __future__ import annotations

import torch
from torch import nn

from pipeline import labels as labelsets
from pipeline.registry import Registry
from pipeline.stage import ConfigError

from .metrics import SUMMARY, classification, regression, regression_summary

TASKS = Registry("task")

# Dev metrics where a smaller value is better (model selection, early stopping).
LOWER_IS_BETTER = {"loss", "mae"}


@TASKS.register("classification")
class Classification:
    kind = "classification"
    train_metric = "wa"             # the training-set figure logged per epoch

    def __init__(self, classes=()):
        self.classes = list(classes)
        self.n_outputs = len(self.classes)
        self.summary = SUMMARY
        self.select = (*SUMMARY, "loss")

    def target(self, label):
        return self.classes.index(label)

    def loss(self, outputs, labels, weight=None):
        if weight is not None:
            weight = weight.to(outputs.device, outputs.dtype)
        return nn.functional.cross_entropy(outputs, labels, weight=weight)

    def balanced_weights(self, targets):
        """n / (classes * n_c) per class c over `targets` (class indices);
        0 for a class with no example."""
        counts = torch.bincount(torch.as_tensor(targets, dtype=torch.long), minlength=self.n_outputs).float()
        return torch.where(counts > 0, counts.sum() / (self.n_outputs * counts.clamp(min=1)), 0.0)

    def decode(self, outputs) -> list:
        return outputs.argmax(-1).tolist()

    def batch_sum(self, outputs, labels) -> float:
        """Sum over the batch of the per-item `train_metric` (right answers)."""
        return (outputs.argmax(-1) == labels).sum().item()

    def score(self, y_true, y_pred) -> dict:
        return classification(y_true, y_pred, self.classes)

    def headline(self, m) -> str:
        return f"WA {m['wa']:.3f} UA {m['ua']:.3f} WF1 {m['wf1']:.3f}"

    def describe(self) -> dict:
        return {"kind": self.kind, "classes": self.classes}


@TASKS.register("regression")
class Regression:
    """A score in [lo, hi]; `classes` names the rounded integer scores
    (the ACC-n classes), used for the confusion matrix of the plots."""
    kind = "regression"
    train_metric = "mae"

    def __init__(self, value_range):
        self.range = tuple(int(v) for v in value_range)
        lo, hi = self.range
        self.classes = [str(k) for k in range(lo, hi + 1)]
        self.n_outputs = 1
        self.summary = regression_summary(lo, hi)
        self.select = (*self.summary, "loss")

    def target(self, label):
        return float(label)

    def loss(self, outputs, labels, weight=None):
        # weight: class weights, which a regression has none of (refused by check_options)
        return nn.functional.l1_loss(outputs[:, 0], labels.to(outputs.dtype))

    def decode(self, outputs) -> list:
        return outputs[:, 0].tolist()

    def batch_sum(self, outputs, labels) -> float:
        """Sum over the batch of the absolute errors."""
        return (outputs[:, 0] - labels.to(outputs.dtype)).abs().sum().item()

    def score(self, y_true, y_pred) -> dict:
        return regression(y_true, y_pred, *self.range)

    def headline(self, m) -> str:
        n = len(self.classes)
        return (f"MAE {m['mae']:.3f} r {m['corr']:.3f} ACC-2 {m['acc2']:.3f} "
                f"(non-zero {m['acc2_nonzero']:.3f}) ACC-{n} {m[f'acc{n}']:.3f}")

    def describe(self) -> dict:
        return {"kind": self.kind, "value_range": list(self.range)}


def for_labelset(corpus, name, items=None):
    """The task of training on label set `name` of `corpus` (a set whose
    classes come from the data, a user's table, reads them from `items`)."""
    if labelsets.kind(corpus, name) == "regression":
        return Regression(labelsets.value_range(corpus, name))
    return Classification(labelsets.classes(corpus, name, items))


def from_description(description: dict):
    params = dict(description)
    return TASKS.get_or_fail(params.pop("kind"))(**params)


def as_task(task_or_classes):
    """A task as it is, or a list of class names as their classification
    (what callers that only know classes pass)."""
    if isinstance(task_or_classes, (list, tuple)):
        return Classification(task_or_classes)
    return task_or_classes


def check_select_metric(task, config, head=""):
    """ConfigError when the dev selection metric does not exist for the task
    (e.g. select_metric=ua on a regression)."""
    if config.select_metric not in task.select:
        raise ConfigError(f"head {head}: select_metric={config.select_metric} is not a {task.kind} metric; "
                          f"with label set {config.labelset} use one of {', '.join(task.select)}")


def check_options(task, config, head=""):
    """ConfigError, before any work, for training options the task cannot
    take: its dev selection metric, and class weights for a regression."""
    check_select_metric(task, config, head)
    if config.class_weights != "none" and not hasattr(task, "balanced_weights"):
        raise ConfigError(f"head {head}: class_weights={config.class_weights} needs a classification; "
                          f"label set {config.labelset} is a {task.kind}")


def better(metric, new, best) -> bool:
    """Is dev value `new` of `metric` an improvement on `best` (None: nothing yet)?"""
    if best is None:
        return True
    return new < best if metric in LOWER_IS_BETTER else new > best
