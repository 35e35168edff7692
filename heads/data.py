"""Training data from the cache: a torch Dataset over any set of stage outputs.

`Data(cache, dataset, inputs, labelset)` asks the cache (`Cache.locate`)
where each needed output lives (shard, row) for every item the label set
keeps, and refuses missing or stale outputs with the `pipeline extract`
command that makes them. Items whose extraction failed are dropped and listed.

An input's `pool` and `track` (heads/head.py `Input`) are resolved here, in
numpy: the track's steps are taken at the input's step times and joined
feature-wise, then every `pool` consecutive steps are averaged.

Rows are read on demand through `pipeline.shard.ShardReader`, which keeps a
bounded number of shard files open per process and opens its own in each
DataLoader worker, so memory does not grow with the corpus.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline import labels as labelsets
from pipeline.api import NotInCache
from pipeline.shard import ShardReader
from pipeline.stage import ConfigError

from . import tasks
from .head import Input
from .standardize import apply_speaker_stats


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
        for stage in sorted({s for i in self.inputs.values() for s in i.stages}):
            self.sources[stage] = locate(cache, self.dataset, stage, ids, overrides)
        self.dropped = {i: f"{s.label}: {msg}" for s in self.sources.values() for i, msg in s.failed.items()}
        kept = [(it, c) for it, c in kept if it.id not in self.dropped]
        self.items = {it.id: it for it, _ in kept}
        self.labels = {it.id: label for it, label in kept}
        self.item_stats = None              # item id -> {input: (mean, std)}: heads/standardize.py per speaker

    def make_task(self, labelset, items=None):
        """The label set's task (data without labels, for prediction, brings
        its own); a set whose classes come from the data reads `items`."""
        return tasks.for_labelset(self.corpus, labelset, items)

    def label_items(self, items) -> list:
        """[(item, label)] for the items the label set keeps (per-frame data
        overrides this: one label per frame)."""
        kept = [(it, labelsets.apply(it, self.labelset)) for it in items]
        return [(it, self.task.target(c)) for it, c in kept if c is not None]

    @property
    def ids(self) -> list:
        return list(self.items)

    def dims(self) -> dict:
        """feature input name -> trailing width (1 for scalars per step);
        "ids" and "raw" inputs are not features and have no entry."""
        return {name: self.width(inp) for name, inp in self.inputs.items() if inp.is_feature}

    def width(self, inp) -> int:
        """Trailing width of an input as read: its array's, plus its track's."""
        src = self.sources[inp.stage]
        shard = next(iter(src.locations.values()))[0]
        dims = self.reader.dims(shard, inp.array)
        return (int(np.prod(dims)) if dims else 1) + (self.width(inp.track) if inp.track else 0)

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

    def steps(self, item_id, inp, pooled=True):
        """An input's features for one item, as the head reads them: its
        capped array, with its track joined, pooled (see `join_track`, `pool`;
        `pooled=False`: the steps before pooling)."""
        x = _as_features(self.read(item_id, inp, inp.array, inp.cap), inp.kind)
        if inp.track is not None:
            track = _as_features(self.read(item_id, inp.track, inp.track.array, inp.track.cap), "seq")
            x = join_track(x, track, frame_ratio(inp.stage, inp.track.stage, "frame_track"))
        return pool(x, inp.pool) if pooled and inp.kind != "vec" else x

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
        return self.example(i)

    def unpooled(self, i) -> dict:
        """Example i with its steps before pooling (what statistics are taken over)."""
        return self.example(i, pooled=False)

    def example(self, i, pooled=True) -> dict:
        item_id = self.ids[i]
        out = {"id": item_id, "label": self.data.labels[item_id]}
        for name, inp in self.data.inputs.items():
            out[name] = self.data.steps(item_id, inp, pooled)
        return apply_speaker_stats(self.data, item_id, out)


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


@functools.lru_cache(maxsize=None)
def stage_rate(spec):
    """Steps per second of a stage spec's output (None when it has no fixed
    frame rate, e.g. utterance vectors)."""
    from pipeline.graph import resolve
    return getattr(resolve([spec])[-1].stage, "rate", None)


def frame_ratio(spec, track_spec, option):
    """How many `track_spec` steps one `spec` step lasts (for `join_track`);
    ConfigError (naming the head option) when either has no frame rate."""
    rates = {s: stage_rate(s) for s in (spec, track_spec)}
    lacking = [s for s, r in rates.items() if not r]
    if lacking:
        raise ConfigError(f"{option}: {', '.join(lacking)} has no frame rate; a second track must be a "
                          "frame sequence timed like the first (e.g. opensmile@egemaps_lld)")
    return rates[track_spec] / rates[spec]


def join_track(x, track, ratio):
    """x (n, D) with, beside each step j, the track's step at the same time
    (round(j * ratio), both from the item's start): (m, D + E). Steps past the
    track's end are left out (only one track has them), so m <= n."""
    index = np.round(np.arange(len(x)) * ratio).astype(np.int64)
    index = index[index < len(track)]
    return np.concatenate([x[:len(index)], track[index].astype(x.dtype)], axis=1)


def pool(x, k):
    """The mean of every k consecutive steps of x (n, D): ceil(n / k) steps,
    the last one over the steps left."""
    if k <= 1 or not len(x):
        return x
    starts = np.arange(0, len(x), k)
    sums = np.add.reduceat(x, starts, axis=0)
    return (sums / np.diff(np.append(starts, len(x)))[:, None]).astype(x.dtype)


def track_input(frame, spec: str):
    """The Input of `frame_track` ("STAGE_SPEC:ARRAY") read beside the frame
    input, capped to the span the frame input's cap covers (through the track
    step taken at the last capped frame); ConfigError for a bad form or a
    stage without a frame rate."""
    stage, sep, array = spec.rpartition(":")
    if not (sep and stage and array):
        raise ConfigError(f"frame_track: {spec!r} is not STAGE_SPEC:ARRAY (e.g. opensmile@egemaps_lld:lld)")
    ratio = frame_ratio(frame.stage, stage, "frame_track")
    cap = round((frame.cap - 1) * ratio) + 1 if frame.cap else None
    return Input(stage, array, "seq", cap)
