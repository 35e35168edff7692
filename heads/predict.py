"""`heads predict`: a trained run applied to new recordings.

The new items are read by any corpus reader (a `table` of wav files, or a
corpus folder) and extracted with exactly the stage configurations the run's
head read (their configuration ids must match the run's record, so features
never silently differ from the training ones). Every fold model of the run
(all seeds) scores every item; their outputs are averaged: class
probabilities (softmax) for a classification, the value for a regression.
One row per item, in the reader's order; an item whose extraction failed
gets a row with the reason instead.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from . import standardize
from .data import Data
from .head import Head


class PredictError(ValueError):
    """The run cannot be applied (reported before or instead of predicting)."""


class Unlabelled(Data):
    """Every item of a dataset, without labels, with the run's task."""

    def __init__(self, cache, dataset, inputs, task, overrides=None):
        self.fixed_task = task
        super().__init__(cache, dataset, inputs, None, overrides)

    def make_task(self, labelset, items=None):
        return self.fixed_task

    def label_items(self, items) -> list:
        placeholder = 0 if self.task.kind == "classification" else 0.0    # never read: no loss is computed
        return [(it, placeholder) for it in items]


def run_head(record, heads):
    """(head class, its config) of a run record; refuses heads that do not
    predict one output per item."""
    from pipeline.stage import make_config
    cls = heads.get_or_fail(record["head"])
    if cls.open_data.__func__ is not Head.open_data.__func__:
        raise PredictError(f"{cls.name} predicts per frame window, not per item; `heads predict` "
                           "applies heads that give one prediction per item")
    return cls, make_config(cls, record["config"])


def stage_labels(cls, config, record, overrides) -> list:
    """The stage specs the head read, checked against the configuration ids
    the run recorded (a changed default or named configuration is refused);
    `overrides`: the run's stage options (`--set stage.key=value`)."""
    from pipeline.graph import resolve
    labels = cls.stages(config)
    recorded = record.get("features", {})
    for spec in resolve(labels, overrides):
        want = recorded.get(spec.label, {}).get("config_id")
        if spec.label in labels and want and want != spec.config_id:
            raise PredictError(f"{spec.label} now resolves to configuration {spec.config_id}, the run was "
                               f"trained on {want}: the stage's defaults or named configuration changed "
                               "since; restore them to predict with this run")
    return labels


def unusable(cache, dataset, labels, overrides) -> dict:
    """item id -> why it cannot be predicted: a failed extraction (of the
    stage or one it consumes), else an output that is not there."""
    from pipeline.graph import closure, resolve
    specs = [c for s in resolve(labels, overrides) for c in closure(s)]
    reasons, absent = {}, {}
    for spec in specs:
        st = cache.status(spec, dataset)
        for item_id, msg in st["errors"].items():
            reasons.setdefault(item_id, f"{spec.label}: {msg}")
        if spec.label in labels:
            for item_id in st["missing"] + st["stale"]:
                absent.setdefault(item_id, f"{spec.label}: not extracted")
    return {**absent, **reasons}


@torch.no_grad()
def outputs(model, batches, device) -> dict:
    """item id -> the model's output for it: class probabilities, or the value."""
    from .train import to_device
    model.eval()
    out = {}
    for batch in batches:
        raw = model(to_device(batch, device)).float()
        values = torch.softmax(raw, -1) if model.task.kind == "classification" else raw[:, 0]
        out.update(zip(batch["id"], values.cpu().numpy()))
    return out


def average(run_dir, record, data, config, heads, device) -> tuple:
    """(item id -> the mean output of every fold model, the models' names)."""
    from .train import load_checkpoint, loader
    sums, names = {}, []
    for r in record["runs"]:
        model, ckpt = load_checkpoint(Path(run_dir) / r["checkpoint"], heads, device)
        if ckpt["dims"] != data.dims():
            raise PredictError(f"{r['checkpoint']}: trained on input widths {ckpt['dims']}, "
                               f"the new items give {data.dims()}")
        for item_id, value in outputs(model, loader(data.subset(data.ids), config, False, device=device),
                                      device).items():
            sums[item_id] = sums.get(item_id, 0.0) + value
        names.append(f"seed{r['seed']}/{r['fold']}")
    return {i: v / len(names) for i, v in sums.items()}, names


def write_rows(path, item_ids, task, means, models, reasons) -> int:
    """One CSV row per item; returns how many were predicted."""
    regression = task.kind == "regression"
    value_columns = ["value"] if regression else [f"p_{c}" for c in task.classes]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", *value_columns, "prediction", "models", "error"])
        for item_id in item_ids:
            if item_id not in means:
                w.writerow([item_id, *[""] * len(value_columns), "", "",
                            reasons.get(item_id, "no output (not extracted)")])
                continue
            v = np.atleast_1d(means[item_id])
            prediction = f"{v[0]:.4f}" if regression else task.classes[int(np.argmax(v))]
            w.writerow([item_id, *[f"{x:.4f}" for x in v], prediction, ";".join(models), ""])
    return sum(i in means for i in item_ids)


def predict(run, dataset, root, cache_dir=None, out=None, workers=None, scheduler=None, device=None,
            progress=False) -> dict:
    """Extract the new items of corpus `dataset` at `root` into `cache_dir`
    (default RUN/predict/cache) and write the run's predictions to `out`
    (default RUN/predict/predictions.csv); returns {"out", "items", "predicted"}."""
    from pipeline import api
    from .models import load_all
    from .report import load_run
    from .tasks import from_description
    from .train import device_of
    record = load_run(run)
    run_dir = Path(record["_path"])
    heads = load_all()
    cls, config = run_head(record, heads)
    overrides = record.get("stage_overrides") or {}
    labels = stage_labels(cls, config, record, overrides)
    task = from_description(record.get("task") or {"kind": "classification", "classes": record["classes"]})
    device = device_of(device)          # a bad --device fails before extraction
    cache_dir = Path(cache_dir or run_dir / "predict" / "cache")
    tallies = api.extract(dataset, root, cache_dir, labels, overrides, workers=workers, scheduler=scheduler,
                          progress=progress, on_items=_print_reader_notes)
    cache = api.Cache(cache_dir)
    item_ids = [it.id for it in cache.items(tallies.dataset)]
    reasons = unusable(cache, tallies.dataset, labels, overrides)
    means, models = {}, []
    if len(reasons) < len(item_ids):
        inputs = cls.declared_inputs(config)
        data = Unlabelled(cache.leave_out(reasons, tallies.dataset), tallies.dataset, inputs, task, overrides)
        standardize.prepare(cls, config, data)
        means, models = average(run_dir, record, data, config, heads, device)
    out = Path(out or run_dir / "predict" / "predictions.csv")
    predicted = write_rows(out, item_ids, task, means, models, reasons)
    return {"out": str(out), "items": len(item_ids), "predicted": predicted, "models": models}


def _print_reader_notes(items):
    from pipeline.cli import _print_warnings
    _print_warnings(items)
