"""Training data from the cache: a torch Dataset over any set of stage outputs.

`Data(cache, dataset, inputs, labelset)` asks the cache (`Cache.locate`)
where each needed output lives (shard, row) for every item the label set
keeps, and refuses missing or stale outputs with the `pipeline extract`
command that makes them. Items whose extraction failed are dropped and listed.

Rows are read on demand through `pipeline.shard.ShardReader`, which keeps a
bounded number of shard files open per process and opens its own in each
DataLoader worker, so memory does not grow with the corpus.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline import labels as labelsets
from pipeline.api import NotInCache
from pipeline.shard import ShardReader

from . import tasks


@dataclass
class Source:
    """Where one stage spec's output lives for each item, under current keys."""
    label: str
    config_id: str
    keys: dict                          # item id -> cache key
    locations: dict                     # item id -> (shard, row)
    failed: dict = field(default_factory=dict)   # item id -> extraction error


def locate(cache, dataset, label, item_ids, overrides=None) -> Source:
    """Source for `label` (with stage `overrides`, as `--set STAGE.KEY=VALUE`
    gives them); raises NotInCache (with the command to run) when any wanted
    item lacks an up-to-date output."""
    spec = cache.spec(label, overrides)
    found = cache.locate(spec, dataset, item_ids)
    lacking = [i for i, loc in found.items() if loc.state in ("missing", "stale")]
    if lacking:
        raise NotInCache(f"{len(lacking)} item(s) lack an up-to-date {label} output "
                         f"(e.g. {', '.join(lacking[:3])}: {found[lacking[0]].reason})")
    return Source(label, spec.config_id, {i: loc.key for i, loc in found.items()},
                  {i: (loc.shard, loc.row) for i, loc in found.items() if loc.state == "current"},
                  {i: loc.reason for i, loc in found.items() if loc.state == "failed"})


class Data:
    """The labelled items of a dataset with the inputs a head needs."""

    def __init__(self, cache, dataset, inputs: dict, labelset: str, overrides=None):
        self.cache_dir = cache.dir
        self.reader = ShardReader(cache.dir)
        self.dataset = cache.dataset(dataset)
        self.inputs = dict(inputs)
        items = cache.items(self.dataset)
        if not items:
            raise NotInCache(f"dataset {self.dataset} has no items")
        self.corpus = items[0].corpus
        self.labelset = labelset
        self.task = self.make_task(labelset, items)        # classification or regression
        self.classes = self.task.classes
        kept = self.label_items(items)
        ids = [it.id for it, _ in kept]
        self.sources = {}
        for stage in sorted({i.stage for i in self.inputs.values()}):
            self.sources[stage] = locate(cache, self.dataset, stage, ids, overrides)
        self.dropped = {i: f"{s.label}: {msg}" for s in self.sources.values() for i, msg in s.failed.items()}
        kept = [(it, c) for it, c in kept if it.id not in self.dropped]
        self.items = {it.id: it for it, _ in kept}
        self.labels = {it.id: label for it, label in kept}
        self.item_stats = None              # item id -> {input: (mean, std)} when normalising per speaker

    def make_task(self, labelset, items=None):
        """The label set's task (data without labels, for prediction, brings
        its own); a set whose classes come from the data reads `items`."""
        return tasks.for_labelset(self.corpus, labelset, items)

    def label_items(self, items) -> list:
        """[(item, label)] for the items the label set keeps (per-frame data
        overrides this: one label per frame)."""
        kept = [(it, labelsets.apply(it, self.labelset)) for it in items]
        return [(it, self.task.target(c)) for it, c in kept if c is not None]

    def normalise_per_speaker(self, names=(), center="mean"):
        """Standardise every item's inputs `names` (empty: all) with its
        speaker's statistics (over all of that speaker's items, centred by
        `center` as in `input_stats`; labels are not used)."""
        if self.item_stats is not None:
            return
        by_speaker = {}
        for item_id, item in self.items.items():
            by_speaker.setdefault(item.speaker or "", []).append(item_id)
        per_item = {}
        for ids in by_speaker.values():
            stats = {n: s for n, s in input_stats(self.subset(ids), center).items() if not names or n in names}
            per_item.update({i: stats for i in ids})
        self.item_stats = per_item

    @property
    def ids(self) -> list:
        return list(self.items)

    def dims(self) -> dict:
        """feature input name -> trailing width (1 for scalars per step);
        "ids" and "raw" inputs are not features and have no entry."""
        out = {}
        for name, inp in self.inputs.items():
            if not inp.is_feature:
                continue
            src = self.sources[inp.stage]
            shard = next(iter(src.locations.values()))[0]
            dims = self.reader.dims(shard, inp.array)
            out[name] = int(np.prod(dims)) if dims else 1
        return out

    def provenance(self) -> dict:
        """Per stage spec: its configuration id and the cache key of every item used."""
        return {label: {"config_id": s.config_id, "keys": {i: s.keys[i] for i in self.items}}
                for label, s in self.sources.items()}

    def subset(self, ids, train=False) -> "CachedDataset":
        """The items `ids` as a Dataset (`train`: the training part, for data
        that samples its training examples differently from its test ones)."""
        return CachedDataset(self, list(ids))

    def item_of(self, example_id) -> str:
        """The item an example (a prediction's id) comes from."""
        return example_id

    def read(self, item_id, inp, array, cap=None):
        """One array of an item's output of `inp`'s stage (the row's key checked)."""
        src = self.sources[inp.stage]
        shard, row = src.locations[item_id]
        return self.reader.array(shard, row, array, src.keys[item_id], cap or None)

    def times(self, item_id, inp, array):
        src = self.sources[inp.stage]
        shard, row = src.locations[item_id]
        return self.reader.times(shard, row, array, src.keys[item_id])


class CachedDataset(Dataset):
    """Items as dicts: {"id", "label", <input name>: float32 array (steps, width) or (width,)}."""

    def __init__(self, data: Data, ids):
        self.data = data
        self.ids = ids

    def __len__(self):
        return len(self.ids)

    def targets(self) -> list:
        """Every example's label, in order, without reading its inputs."""
        return [self.data.labels[i] for i in self.ids]

    def __getitem__(self, i):
        item_id = self.ids[i]
        out = {"id": item_id, "label": self.data.labels[item_id]}
        for name, inp in self.data.inputs.items():
            out[name] = _as_features(self.data.read(item_id, inp, inp.array, inp.cap), inp.kind)
            if self.data.item_stats is not None and name in self.data.item_stats[item_id]:
                mean, std = self.data.item_stats[item_id][name]
                out[name] = (out[name] - mean) / std
        return out


def _as_features(x, kind):
    x = np.asarray(x, dtype=np.int64 if kind == "ids" else np.float32)
    if kind != "vec":
        return x.reshape(len(x), -1)
    return x.reshape(-1)


def collate(batch):
    """Pad sequences to the longest in the batch; `<name>_mask` is True on real steps."""
    out = {"id": [b["id"] for b in batch], "label": torch.tensor([b["label"] for b in batch])}
    for name in batch[0]:
        if name in ("id", "label"):
            continue
        arrays = [b[name] for b in batch]
        if arrays[0].ndim == 1:
            out[name] = torch.from_numpy(np.stack(arrays))
            continue
        lengths = [len(a) for a in arrays]
        padded = np.zeros((len(arrays), max(max(lengths), 1), arrays[0].shape[1]), dtype=arrays[0].dtype)
        mask = np.zeros(padded.shape[:2], dtype=bool)
        for j, a in enumerate(arrays):
            padded[j, :len(a)] = a
            mask[j, :len(a)] = True
        out[name] = torch.from_numpy(padded)
        out[f"{name}_mask"] = torch.from_numpy(mask)
    return out


def input_stats(dataset: "CachedDataset", center="mean") -> dict:
    """input name -> (centre, spread) per feature over every valid step of
    every item (training fold only: test statistics must not leak into the
    model). `center`: "mean" (spread: the std), or "median": the median of
    the items' means, the spread being the root mean square distance of the
    steps from it. Only feature inputs ("seq", "vec") have statistics."""
    sums, sqs, counts, item_means = {}, {}, {}, {}
    features = {name for name, inp in dataset.data.inputs.items() if inp.is_feature}
    for i in range(len(dataset)):
        for name, x in dataset[i].items():
            if name not in features:
                continue
            x = np.asarray(x, dtype=np.float64).reshape(-1, x.shape[-1])
            sums[name] = sums.get(name, 0.0) + x.sum(0)
            sqs[name] = sqs.get(name, 0.0) + (x * x).sum(0)
            counts[name] = counts.get(name, 0) + len(x)
            if len(x):
                item_means.setdefault(name, []).append(x.mean(0))
    out = {}
    for name in sums:
        n = max(counts[name], 1)
        mean = sums[name] / n
        loc = np.median(item_means[name], 0) if center == "median" and name in item_means else mean
        # E[(x - loc)^2] = E[x^2] - 2 loc E[x] + loc^2: the std when loc is the mean
        spread = np.sqrt(np.maximum(sqs[name] / n - 2 * loc * mean + loc * loc, 0.0))
        out[name] = (loc.astype(np.float32), np.maximum(spread, 1e-5).astype(np.float32))
    return out
