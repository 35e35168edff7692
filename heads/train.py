"""One training loop for every head, and the folds x seeds experiment around it.

Per fold and seed: seed everything, build the head, train for the recipe's
epochs (Adam/AdamW/SGD, optional step or plateau schedule, optional gradient
clipping). With a dev part the model of the best dev epoch (config
`select_metric`) is kept and `patience` may stop early; without one the last
epoch's model is kept — the test part is never used to choose anything. The
kept model is written as a checkpoint and then scored on the test part.
"""
from __future__ import annotations

import os
import random
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader

from .data import collate, input_stats
from .tasks import as_task, better, check_options, from_description

OPTIMIZERS = {
    "adam": lambda params, c: torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay),
    "adamw": lambda params, c: torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay),
    "sgd": lambda params, c: torch.optim.SGD(params, lr=c.lr, momentum=0.9, weight_decay=c.weight_decay),
}

SCHEDULES = {
    "none": lambda opt, c: None,
    "step": lambda opt, c: torch.optim.lr_scheduler.StepLR(opt, step_size=c.lr_step, gamma=c.lr_gamma),
    "plateau": lambda opt, c: torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=c.lr_gamma, patience=max(1, c.patience // 2)),
}


def device_of(name=None) -> torch.device:
    """CUDA when present (or asked for), CPU otherwise."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int):
    """Same seed, same folds' models and batches (on CPU; CUDA kernels that
    have no deterministic version only warn)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


@contextmanager
def cpu_threads(config, device):
    """Use `config.threads` torch threads on CPU for the block, then restore."""
    before = torch.get_num_threads()
    if device.type == "cpu" and config.threads:
        torch.set_num_threads(config.threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _worker_init(worker_id):
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def loader(dataset, config, shuffle, seed=0):
    g = torch.Generator()
    g.manual_seed(seed)
    return DataLoader(dataset, batch_size=config.batch_size, shuffle=shuffle, collate_fn=collate,
                      num_workers=config.num_workers, worker_init_fn=_worker_init, generator=g,
                      persistent_workers=config.num_workers > 0)


def to_device(batch, device):
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


@torch.no_grad()
def predict(model, batches, device) -> dict:
    """ids, references and predictions (class indices, or scores for a
    regression: the model's task decodes its outputs), and the mean loss."""
    model.eval()
    ids, y_true, y_pred, loss_sum = [], [], [], 0.0
    for batch in batches:
        batch = to_device(batch, device)
        logits = model(batch)
        loss_sum += model.loss(logits, batch).item() * len(batch["id"])
        ids += batch["id"]
        y_true += batch["label"].tolist()
        y_pred += model.task.decode(logits)
    return {"ids": ids, "y_true": y_true, "y_pred": y_pred, "loss": loss_sum / max(len(ids), 1)}


def score(pred, task) -> dict:
    """The task's metrics of a prediction (`task`: a Task, or class names
    for a classification), with its loss."""
    out = as_task(task).score(pred["y_true"], pred["y_pred"])
    out["loss"] = pred["loss"]
    return out


def fit(model, train_batches, dev_batches, config, task, device, checkpoint: Path,
        desc="", progress=True, extra=None) -> dict:
    """Train `model` on `task` (a Task, or class names for a classification:
    it sets the loss and the metrics); write the kept model to `checkpoint`;
    return the history."""
    model.task = as_task(task)
    check_options(model.task, config, model.name)
    with cpu_threads(config, device):
        return _fit(model, train_batches, dev_batches, config, model.task, device, checkpoint, desc,
                    progress, extra)


def _fit(model, train_batches, dev_batches, config, task, device, checkpoint, desc, progress, extra):
    from tqdm import tqdm
    model.to(device)
    opt = OPTIMIZERS[config.optimizer](model.parameters(), config)
    sched = SCHEDULES[config.schedule](opt, config)
    history, best, best_epoch, waited = [], None, 0, 0
    # Without a dev part to pick an epoch, the mean of the last epochs' weights is steadier than the last alone.
    average = AveragedModel(model) if dev_batches is None and config.average_last else None
    for epoch in range(1, config.epochs + 1):
        model.train()
        total, metric_sum, loss_sum = 0, 0.0, 0.0
        bar = tqdm(train_batches, desc=f"{desc} epoch {epoch}/{config.epochs}", leave=False,
                   disable=not progress, unit="batch")
        for batch in bar:
            batch = to_device(batch, device)
            logits = model(batch)
            loss = model.loss(logits, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), config.clip)
            opt.step()
            n = len(batch["id"])
            total += n
            loss_sum += loss.item() * n
            metric_sum += task.batch_sum(logits.detach(), batch["label"])
            bar.set_postfix(loss=f"{loss_sum / total:.3f}")
        row = {"epoch": epoch, "lr": opt.param_groups[0]["lr"], "train_loss": loss_sum / total,
               f"train_{task.train_metric}": metric_sum / total}
        if dev_batches is not None:
            dev = score(predict(model, dev_batches, device), task)
            row.update({f"dev_{k}": dev[k] for k in ("loss", *task.summary)})
        history.append(row)
        _step_schedule(sched, row, config)
        if dev_batches is None:
            if average is not None and epoch > config.epochs - config.average_last:
                average.update_parameters(model)
            continue
        value = row[f"dev_{config.select_metric}"]
        if better(config.select_metric, value, best):
            best, best_epoch, waited = value, epoch, 0
            save_checkpoint(checkpoint, model, config, epoch, extra)
        else:
            waited += 1
            if config.patience and waited >= config.patience:
                break
    if dev_batches is None:
        best_epoch = history[-1]["epoch"]
        if average is not None:
            nn.utils.vector_to_parameters(nn.utils.parameters_to_vector(average.module.parameters()),
                                          model.parameters())
        save_checkpoint(checkpoint, model, config, best_epoch, extra)
    return {"history": history, "kept_epoch": best_epoch, "selected_on": _selected_on(config, dev_batches)}


def _selected_on(config, dev_batches):
    if dev_batches is not None:
        return f"dev {config.select_metric}"
    if config.average_last:
        return f"mean weights of the last {min(config.average_last, config.epochs)} epochs (no dev part)"
    return "last epoch (no dev part)"


def _step_schedule(sched, row, config):
    if sched is None:
        return
    if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
        sched.step(row.get("dev_loss", row["train_loss"]))
    else:
        sched.step()


def save_checkpoint(path, model, config, epoch, extra=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"head": model.name, "config": asdict(config), "dims": model.dims,
                "n_classes": model.n_classes, "task": model.task.describe(), "epoch": epoch,
                "state_dict": model.state_dict(), **(extra or {})}, path)


def load_checkpoint(path, heads, device="cpu"):
    """(model with the saved weights, checkpoint dict)."""
    from pipeline.stage import make_config
    ckpt = torch.load(path, map_location=device, weights_only=False)
    cls = heads.get_or_fail(ckpt["head"])
    config = make_config(cls, ckpt["config"])
    model = cls(config, ckpt["dims"], ckpt["n_classes"])
    # Checkpoints from before tasks existed are classifications over their classes.
    model.task = from_description(ckpt.get("task") or {"kind": "classification", "classes": ckpt["classes"]})
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device), ckpt


def run_folds(head_cls, config, data, folds, seeds, out_dir: Path, device, progress=True, log=print) -> list:
    """Train and test every (seed, fold); returns one record per run."""
    dims = data.dims()
    per_speaker = head_cls.speaker_normalised(config)
    if per_speaker:
        data.normalise_per_speaker(per_speaker, config.speaker_center)
    # The other feature inputs take the training fold's statistics (kept in the model's buffers).
    by_fold = set(dims) - set(per_speaker) if config.standardize != "none" else set()
    runs = []
    for seed in seeds:
        for i, fold in enumerate(folds):
            seed_everything(seed)
            model = head_cls(config, dims, data.task.n_outputs)
            desc = f"seed {seed} {fold.name}"
            ckpt = out_dir / "checkpoints" / f"seed{seed}_fold{i + 1}.pt"
            train_set = data.subset(fold.train, train=True)
            if by_fold:
                model.set_input_stats({n: s for n, s in input_stats(train_set).items() if n in by_fold})
            if config.class_weights == "balanced":
                model.class_weight = data.task.balanced_weights(train_set.targets())
            train = loader(train_set, config, shuffle=True, seed=seed)
            dev = loader(data.subset(fold.dev), config, shuffle=False) if fold.dev else None
            fitted = fit(model, train, dev, config, data.task, device, ckpt, desc, progress,
                         extra={"classes": data.classes, "fold": fold.name, "seed": seed})
            model.load_state_dict(torch.load(ckpt, map_location=device, weights_only=False)["state_dict"])
            with cpu_threads(config, device):
                pred = predict(model, loader(data.subset(fold.test), config, shuffle=False), device)
            metrics = score(pred, data.task)
            log(f"{desc}: test {data.task.headline(metrics)} "
                f"(kept epoch {fitted['kept_epoch']}, {fitted['selected_on']})")
            runs.append({"seed": seed, "fold": fold.name, "metrics": metrics,
                         "sizes": {"train": len(fold.train), "dev": len(fold.dev), "test": len(fold.test)},
                         "checkpoint": str(ckpt.relative_to(out_dir)), **fitted, "learned": model.learned(),
                         "predictions": dict(zip(pred["ids"], pred["y_pred"]))})
    return runs
