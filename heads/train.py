"""One training loop for every head, and the folds x seeds experiment around it.

Per fold and seed: seed everything, build the head, train for the recipe's
epochs (Adam/AdamW/SGD, optional step or plateau schedule, optional gradient
clipping). With a dev part the model of the best dev epoch (config
`select_metric`) is kept and `patience` may stop early; without one the last
epoch's model is kept — the test part is never used to choose anything. The
kept model is written as a checkpoint and then scored on the test part.

Each epoch appends a row to the fold's metrics.csv and leaves the state the
next epoch starts from, so a killed run continues where it stopped
(heads/resume.py); checkpoints are tensors and plain data (heads/checkpoint.py).
`--precision bf16|fp16` runs forward and loss under autocast.
"""
from __future__ import annotations

import os
import random
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader

from . import checkpoint
from . import standardize
from .data import collate
from .resume import FoldLog, claim
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


# --precision: the dtype autocast runs the forward pass and loss in (None: plain fp32).
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device, precision):
    dtype = PRECISIONS[precision]
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


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


def loader(dataset, config, shuffle, seed=0, device=None):
    g = torch.Generator()
    g.manual_seed(seed)
    pin = device is not None and torch.device(device).type == "cuda"     # page-locked: faster copies to the GPU
    return DataLoader(dataset, batch_size=config.batch_size, shuffle=shuffle, collate_fn=collate,
                      num_workers=config.num_workers, worker_init_fn=_worker_init, generator=g,
                      persistent_workers=config.num_workers > 0, pin_memory=pin)


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
        desc="", progress=True, extra=None, log=None, precision="fp32") -> dict:
    """Train `model` on `task` (a Task, or class names for a classification:
    it sets the loss and the metrics); write the kept model to `checkpoint`;
    return the history. With `log` (a resume.FoldLog) each epoch adds a row
    to its metrics.csv and leaves a state training continues from."""
    model.task = as_task(task)
    check_options(model.task, config, model.name)
    with cpu_threads(config, device):
        return _fit(model, train_batches, dev_batches, config, model.task, device, checkpoint, desc,
                    progress, extra, log, precision)


class _Loop:
    """The optimiser, schedule, gradient scaler and weight average of one fit."""

    def __init__(self, model, config, device, precision, average):
        self.opt = OPTIMIZERS[config.optimizer](model.parameters(), config)
        self.sched = SCHEDULES[config.schedule](self.opt, config)
        # fp16 gradients underflow without loss scaling; bf16 has fp32's range and needs none.
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        # Without a dev part to pick an epoch, the mean of the last epochs' weights is steadier than the last alone.
        self.average = AveragedModel(model) if average else None

    def tensors(self, model, batches) -> dict:
        out = {"state_dict": model.state_dict(), "optimizer": self.opt.state_dict(),
               "scaler": self.scaler.state_dict(), "loader_rng": batches.generator.get_state()}
        if self.sched is not None:
            out["scheduler"] = self.sched.state_dict()
        if self.average is not None:
            out["average"] = self.average.state_dict()
        return out

    def restore(self, model, batches, ckpt):
        model.load_state_dict(ckpt["state_dict"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        batches.generator.set_state(ckpt["loader_rng"].cpu())
        if self.sched is not None:
            self.sched.load_state_dict(ckpt["scheduler"])
        if self.average is not None:
            self.average.load_state_dict(ckpt["average"])


def _fit(model, train_batches, dev_batches, config, task, device, checkpoint, desc, progress, extra, log,
         precision):
    model.to(device)
    loop = _Loop(model, config, device, precision, dev_batches is None and config.average_last)
    st = _resume(log, model, loop, train_batches, device)
    for epoch in range(st["epoch"] + 1, config.epochs + 1):
        if st["stopped"]:
            break
        t0 = time.perf_counter()
        train, data_seconds = _train_epoch(model, train_batches, loop, config, task, device, precision,
                                           f"{desc} epoch {epoch}/{config.epochs}", progress)
        row = {"epoch": epoch, "lr": loop.opt.param_groups[0]["lr"], **train}
        if dev_batches is not None:
            dev = score(predict(model, dev_batches, device), task)
            row.update({f"dev_{k}": dev[k] for k in ("loss", *task.summary)})
        _step_schedule(loop.sched, row, config)
        if dev_batches is None:
            if loop.average is not None and epoch > config.epochs - config.average_last:
                loop.average.update_parameters(model)
        elif better(config.select_metric, row[f"dev_{config.select_metric}"], st["best"]):
            st.update(best=row[f"dev_{config.select_metric}"], best_epoch=epoch, waited=0)
            save_checkpoint(checkpoint, model, config, epoch, extra)
        else:
            st["waited"] += 1
            st["stopped"] = bool(config.patience and st["waited"] >= config.patience)
        st["history"].append(row)
        # Timings go to metrics.csv only: the history stays the same for the same seed.
        st["timings"].append({"seconds": round(time.perf_counter() - t0, 3), "data_seconds": data_seconds})
        st["epoch"] = epoch
        _save_epoch(log, st, model, loop, train_batches)
    history = st["history"]
    best_epoch = st["best_epoch"]
    if dev_batches is None:
        best_epoch = history[-1]["epoch"]
        if loop.average is not None:
            nn.utils.vector_to_parameters(nn.utils.parameters_to_vector(loop.average.module.parameters()),
                                          model.parameters())
        save_checkpoint(checkpoint, model, config, best_epoch, extra)
    return {"history": history, "kept_epoch": best_epoch, "selected_on": _selected_on(config, dev_batches)}


def _train_epoch(model, batches, loop, config, task, device, precision, desc, progress) -> tuple:
    """(the epoch's training loss and metric, seconds spent waiting for batches)."""
    from tqdm import tqdm
    model.train()
    total, metric_sum, loss_sum = 0, 0.0, 0.0
    bar = tqdm(batches, desc=desc, leave=False, disable=not progress, unit="batch")
    waited, t = 0.0, time.perf_counter()
    for batch in bar:
        waited += time.perf_counter() - t       # time the loop waited for this batch
        batch = to_device(batch, device)
        with autocast(device, precision):
            logits = model(batch)
            loss = model.loss(logits, batch)
        loop.opt.zero_grad(set_to_none=True)
        loop.scaler.scale(loss).backward()
        if config.clip > 0:
            loop.scaler.unscale_(loop.opt)      # clip the true gradients, not the scaled ones
            nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        loop.scaler.step(loop.opt)
        loop.scaler.update()
        n = len(batch["id"])
        total += n
        loss_sum += loss.item() * n
        metric_sum += task.batch_sum(logits.detach().float(), batch["label"])
        bar.set_postfix(loss=f"{loss_sum / total:.3f}")
        t = time.perf_counter()
    return {"train_loss": loss_sum / total, f"train_{task.train_metric}": metric_sum / total}, round(waited, 3)


def _resume(log, model, loop, batches, device) -> dict:
    """Where the fit starts: epoch 0, or the state `log` kept after its last finished epoch."""
    fresh = {"epoch": 0, "history": [], "timings": [], "best": None, "best_epoch": 0, "waited": 0,
             "stopped": False}
    if log is None:
        return fresh
    if not log.state.exists():
        log.start([])
        return fresh
    ckpt = checkpoint.load(log.state, device)
    loop.restore(model, batches, ckpt)
    checkpoint.set_rng_states(ckpt)
    st = ckpt["progress"]
    log.start([{**row, **t} for row, t in zip(st["history"], st["timings"])])
    return st


def _save_epoch(log, st, model, loop, batches):
    """The epoch's metrics row, then everything the next epoch starts from
    (a kill between the two runs the epoch again and rewrites the row)."""
    if log is None:
        return
    log.add_row({**st["history"][-1], **st["timings"][-1]})
    rng_tensors, rng_meta = checkpoint.rng_states()
    checkpoint.save(log.state, {**loop.tensors(model, batches), **rng_tensors}, {"progress": st, **rng_meta})


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
    checkpoint.save(path, {"state_dict": model.state_dict()},
                    {"head": model.name, "config": asdict(config), "dims": model.dims,
                     "n_classes": model.n_classes, "task": model.task.describe(), "epoch": epoch,
                     **(extra or {})})


def load_checkpoint(path, heads, device="cpu"):
    """(model with the saved weights, checkpoint dict); raises
    checkpoint.UnsafeCheckpoint for a file that is not tensors and plain data."""
    from pipeline.stage import make_config
    ckpt = checkpoint.load(path, device)
    cls = heads.get_or_fail(ckpt["head"])
    config = make_config(cls, ckpt["config"])
    model = cls(config, ckpt["dims"], ckpt["n_classes"])
    # Checkpoints from before tasks existed are classifications over their classes.
    model.task = from_description(ckpt.get("task") or {"kind": "classification", "classes": ckpt["classes"]})
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device), ckpt


def run_folds(head_cls, config, data, folds, seeds, out_dir: Path, device, progress=True, log=print,
              precision="fp32") -> list:
    """Train and test every (seed, fold); returns one record per run. A
    (seed, fold) tested before under `out_dir` is kept, an unfinished one
    continues from its last epoch (heads/resume.py)."""
    device = torch.device(device)
    dims = data.dims()
    claim(Path(out_dir), _experiment(head_cls, config, data, folds, dims, precision))
    standardize.prepare(head_cls, config, data)
    runs = []
    for seed in seeds:
        for i, fold in enumerate(folds):
            desc = f"seed {seed} {fold.name}"
            fold_log = FoldLog(out_dir, seed, i + 1)
            record = fold_log.finished()
            if record is None:
                record = _train_fold(head_cls, config, data, fold, seed, dims, device,
                                     Path(out_dir) / "checkpoints" / f"seed{seed}_fold{i + 1}.pt",
                                     fold_log, progress, precision)
                fold_log.finish(record)
                log(f"{desc}: test {data.task.headline(record['metrics'])} "
                    f"(kept epoch {record['kept_epoch']}, {record['selected_on']})")
            else:
                log(f"{desc}: trained and tested before (kept from {fold_log.record})")
            runs.append(checkpoint.plain(record))
    return runs


def _train_fold(head_cls, config, data, fold, seed, dims, device, ckpt, fold_log, progress, precision):
    seed_everything(seed)
    model = head_cls(config, dims, data.task.n_outputs)
    train_set = data.subset(fold.train, train=True)
    standardize.fit_fold(model, head_cls, config, train_set)
    if config.class_weights == "balanced":
        model.class_weight = data.task.balanced_weights(train_set.targets())
    train = loader(train_set, config, shuffle=True, seed=seed, device=device)
    dev = loader(data.subset(fold.dev), config, shuffle=False, device=device) if fold.dev else None
    fitted = fit(model, train, dev, config, data.task, device, ckpt, f"seed {seed} {fold.name}", progress,
                 extra={"classes": data.classes, "fold": fold.name, "seed": seed}, log=fold_log,
                 precision=precision)
    model.load_state_dict(checkpoint.load(ckpt, device)["state_dict"])
    with cpu_threads(config, device):
        pred = predict(model, loader(data.subset(fold.test), config, shuffle=False, device=device), device)
    return {"seed": seed, "fold": fold.name, "metrics": score(pred, data.task),
            "sizes": {"train": len(fold.train), "dev": len(fold.dev), "test": len(fold.test)},
            "checkpoint": str(ckpt.relative_to(ckpt.parent.parent)), **fitted, "learned": model.learned(),
            "predictions": dict(zip(pred["ids"], pred["y_pred"]))}


def _experiment(head_cls, config, data, folds, dims, precision) -> dict:
    """What decides a run's results: a run folder holds one of these only."""
    return {"head": head_cls.name, "config": asdict(config), "precision": precision, "dims": dims,
            "folds": [[f.name, f.train, f.dev, f.test] for f in folds], "features": data.provenance()}
