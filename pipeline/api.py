"""Reading the cache from Python: the function heads and users' own code use.

    from pipeline.api import Cache
    cache = Cache(".emocache")
    feats = cache.load("fbank", ["Ses01F_impro01_F000"])
    feats["Ses01F_impro01_F000"].arrays["fbank"]      # (T, 80) float32
    feats["Ses01F_impro01_F000"].times["fbank"]       # (T,) seconds

`load` refuses outputs made from inputs that have changed since (stale) and
says which `pipeline extract` command brings them up to date.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .graph import InputDigests, closure, item_keys, resolve
from .manifest import read_manifest
from .store import FileDigests, Index, ShardReader, default_cache_dir


class NotInCache(LookupError):
    """Some requested outputs are missing or stale."""


@dataclass
class Features:
    arrays: dict
    meta: dict
    times: dict = field(default_factory=dict)   # seq arrays: seconds of each step
    key: str = ""


class Cache:
    def __init__(self, cache_dir=None):
        self.dir = Path(cache_dir or default_cache_dir())
        if not (self.dir / "index.sqlite").exists():
            raise FileNotFoundError(f"no emocache cache at {self.dir} (run `pipeline extract` first)")
        self.index = Index(self.dir)
        self.reader = ShardReader(self.dir)
        self._items = {}

    def datasets(self) -> dict:
        return self.index.datasets()

    def dataset(self, name=None) -> str:
        known = self.datasets()
        if name:
            if name not in known:
                raise NotInCache(f"dataset {name!r} is not in the cache {self.dir} "
                                 f"(it has: {', '.join(known) or 'none'})")
            return name
        if len(known) != 1:
            raise NotInCache(f"the cache {self.dir} holds {len(known)} datasets "
                             f"({', '.join(known) or 'none'}): name one")
        return next(iter(known))

    def items(self, dataset=None) -> list:
        name = self.dataset(dataset)
        if name not in self._items:
            self._items[name] = read_manifest(self.dir / "manifests" / f"{name}.jsonl")
        return self._items[name]

    def keys(self, labels, dataset=None, overrides=None) -> tuple:
        """(specs, {label: keys aligned with items}) for the current manifest."""
        return self.keys_of(resolve(labels, overrides), dataset)

    def keys_of(self, specs, dataset=None) -> tuple:
        name = self.dataset(dataset)
        specs = [c for s in specs for c in closure(s)]
        files = FileDigests(self.index)
        keys = item_keys(specs, self.items(name), InputDigests(files), name)
        files.save()
        return specs, keys

    def status(self, label, dataset=None, overrides=None) -> dict:
        """Item ids that are up to date / stale / missing / failed for one stage spec."""
        return self.status_of(resolve([label], overrides)[-1], dataset)

    def status_of(self, spec, dataset=None) -> dict:
        _, keys = self.keys_of([spec], dataset)
        label = spec.label
        done, failed = self.index.existing(spec.config_id)
        stored = self.index.item_keys(spec.config_id)
        out = {"up to date": [], "stale": [], "missing": [], "failed": []}
        for item, key in zip(self.items(dataset), keys[label]):
            state = ("up to date" if key in done else "failed" if key in failed
                     else "stale" if item.id in stored else "missing")
            out[state].append(item.id)
        out["errors"] = {i: failed[k] for i, k in zip((it.id for it in self.items(dataset)), keys[label])
                         if k in failed}
        out["spec"] = spec
        return out

    def load(self, label, item_ids=None, dataset=None, overrides=None, allow_stale=False) -> dict:
        """item id -> Features for stage spec `label` (e.g. "fbank", "fbank@tsin")."""
        name = self.dataset(dataset)
        specs, keys = self.keys([label], name, overrides)
        spec = specs[-1]
        by_id = {it.id: k for it, k in zip(self.items(name), keys[label])}
        wanted = list(by_id) if item_ids is None else list(item_ids)
        unknown = [i for i in wanted if i not in by_id]
        if unknown:
            raise NotInCache(f"items not in dataset {name}: {', '.join(unknown[:5])}")
        locs = self.index.locations(by_id[i] for i in wanted)
        lacking = [i for i in wanted if by_id[i] not in locs]
        if lacking and allow_stale:
            stored = self.index.item_keys(spec.config_id)
            locs.update(self.index.locations(stored[i] for i in lacking if i in stored))
            by_id.update({i: stored[i] for i in lacking if i in stored})
            lacking = [i for i in wanted if by_id[i] not in locs]
        if lacking:
            raise NotInCache(f"{len(lacking)} item(s) lack an up-to-date {label} output "
                             f"(e.g. {', '.join(lacking[:3])}); run: pipeline extract --cache {self.dir} "
                             f"--dataset {name} --stages {label}")
        return {i: self._features(*locs[by_id[i]], by_id[i]) for i in wanted}

    def _features(self, shard, row, key):
        arrays, meta = self.reader.row(shard, row)
        attrs = self.reader.attrs(shard)["arrays"]
        times = {n: self.reader.times(shard, row, n) for n, a in attrs.items() if a["kind"] == "seq"}
        return Features(arrays, meta, times, key)

    def stage_attrs(self, label, dataset=None, overrides=None) -> dict:
        """Facts shared by a stage output (e.g. column names), from any of its shards."""
        spec = resolve([label], overrides)[-1]
        for shard, config_id, n, _d in self.index.shards():
            if config_id == spec.config_id and n:
                return self.reader.attrs(shard)["stage_attrs"]
        return {}


def load(label, item_ids=None, cache_dir=None, **kw) -> dict:
    """Shortcut: `Cache(cache_dir).load(label, item_ids, ...)`."""
    return Cache(cache_dir).load(label, item_ids, **kw)
