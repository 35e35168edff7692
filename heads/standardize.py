"""Standardisation of a head's feature inputs (`TrainConfig.standardize`).

"fold": every feature input takes the training fold's per-feature mean and
std, kept in the model's buffers (so they travel with the checkpoint and
`Head.forward` applies them). "speaker": every feature input takes its
speaker's own statistics over all of the speaker's items (no labels used),
applied as the data is read, except `fold_inputs`, which take the fold's.
"none": the inputs as cached.

Training, `heads evaluate` and `heads predict` all call `prepare` on their
data and training `fit_fold` on each model, so the three standardise alike.
"""
from __future__ import annotations

import numpy as np
import torch


def speaker_inputs(cls, config) -> tuple:
    """The feature inputs standardised per speaker: none unless
    standardize=speaker; then every feature input but `fold_inputs`."""
    if config.standardize != "speaker":
        return ()
    return tuple(n for n, i in cls.declared_inputs(config).items() if i.is_feature and n not in config.fold_inputs)


def fold_inputs(cls, config, dims) -> set:
    """The feature inputs (of `dims`) that take the training fold's statistics."""
    if config.standardize == "none":
        return set()
    return set(dims) - set(speaker_inputs(cls, config))


def prepare(cls, config, data):
    """Normalise `data` per speaker where the config asks for it (a no-op otherwise)."""
    names = speaker_inputs(cls, config)
    if names and data.item_stats is None:
        data.item_stats = speaker_stats(data, names)


def speaker_stats(data, names) -> dict:
    """item id -> {input: (mean, std)} of the item's speaker, over all of that
    speaker's items, for the inputs `names`."""
    by_speaker = {}
    for item_id, item in data.items.items():
        by_speaker.setdefault(item.speaker or "", []).append(item_id)
    per_item = {}
    for ids in by_speaker.values():
        stats = {n: s for n, s in input_stats(data.subset(ids)).items() if n in names}
        per_item.update({i: stats for i in ids})
    return per_item


def apply_speaker_stats(data, item_id, example: dict) -> dict:
    """An example's inputs standardised with its item's speaker statistics
    (the example unchanged when the data is not normalised per speaker)."""
    for name, (mean, std) in (data.item_stats or {}).get(item_id, {}).items():
        example[name] = (example[name] - mean) / std
    return example


def fit_fold(model, cls, config, train_set):
    """Put the training fold's statistics of the fold-standardised inputs
    into the model's buffers (the others stay the identity)."""
    names = fold_inputs(cls, config, model.dims)
    if not names:
        return
    for name, (mean, std) in input_stats(train_set).items():
        if name in names:
            getattr(model, f"mean_{name}").copy_(torch.as_tensor(mean))
            getattr(model, f"std_{name}").copy_(torch.as_tensor(std))


def input_stats(dataset) -> dict:
    """input name -> (mean, std) per feature over every valid step of every
    example of `dataset` (for a fold: its training part only, so test
    statistics do not leak into the model). Only feature inputs have
    statistics. They are taken over the steps before pooling (`frame_pool`):
    a pooled step standardised with them is the mean of its standardised
    steps, whatever the pooling."""
    sums, sqs, counts = {}, {}, {}
    features = {name for name, inp in dataset.data.inputs.items() if inp.is_feature}
    read = getattr(dataset, "unpooled", dataset.__getitem__)     # per-frame windows are never pooled
    for i in range(len(dataset)):
        for name, x in read(i).items():
            if name not in features:
                continue
            x = np.asarray(x, dtype=np.float64).reshape(-1, x.shape[-1])
            sums[name] = sums.get(name, 0.0) + x.sum(0)
            sqs[name] = sqs.get(name, 0.0) + (x * x).sum(0)
            counts[name] = counts.get(name, 0) + len(x)
    out = {}
    for name in sums:
        n = max(counts[name], 1)
        mean = sums[name] / n
        std = np.sqrt(np.maximum(sqs[name] / n - mean * mean, 0.0))
        out[name] = (mean.astype(np.float32), np.maximum(std, 1e-5).astype(np.float32))
    return out
