"""Reading the cache from Python: the function heads and users' own code use.

    from pipeline.api import Cache
    cache = Cache(".emocache")
    feats = cache.load("fbank", ["Ses01F_impro01_F000"])
    feats["Ses01F_impro01_F000"].arrays["fbank"]      # (T, 80) float32
    feats["Ses01F_impro01_F000"].times["fbank"]       # (T,) seconds

`Cache.torch_dataset` gives the torch Dataset the heads train on, for a
model of your own; `extract` (below) computes features from Python as
`pipeline extract` does.

`Cache.locate` is the one answer to "where is each item's output, and is it
current?"; `status`, `load` and the heads all go through it. `load` refuses
outputs made from inputs that have changed since (stale) and says which
`pipeline extract` command brings them up to date. A Cache only reads: it
opens the index read-only and writes nothing under the cache folder.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from .digests import FileDigests
from .graph import InputDigests, closure, item_keys, resolve
from .manifest import read_manifest
from .shard import ShardReader
from .store import Index, default_cache_dir

STATES = ("current", "stale", "missing", "failed")


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
        self.index = Index(self.dir, readonly=True)
        self.reader = ShardReader(self.dir)
        self._items = {}
        self._inputs = {}       # dataset -> the InputDigests of the last keys computed

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

    def use_items(self, dataset, items):
        """Judge outputs against these items (a corpus just read) instead of
        the manifest stored in the cache; nothing is written."""
        self._items[dataset] = list(items)

    def leave_out(self, item_ids, dataset=None):
        """Read the dataset as if the items `item_ids` were not in it (nothing is
        written); returns the cache."""
        name = self.dataset(dataset)
        gone = set(item_ids)
        if gone:
            self.use_items(name, [it for it in self.items(name) if it.id not in gone])
        return self

    def spec(self, label, overrides=None):
        """The StageSpec of a label ("fbank@tsin"); a StageSpec passes through."""
        return label if hasattr(label, "config_id") else resolve([label], overrides)[-1]

    def corpus_present(self, dataset=None) -> bool:
        """Whether the dataset's recorded corpus root is there. When it is not,
        outputs are judged by the media digests recorded at extraction
        (`unverified`), so a cache works where its corpus is not mounted."""
        return os.path.exists(self.datasets()[self.dataset(dataset)]["root"])

    def keys_of(self, specs, dataset=None) -> dict:
        """{label: keys aligned with items} for `specs` and what they consume."""
        name = self.dataset(dataset)
        specs = [c for s in specs for c in closure(s)]
        files = FileDigests(self.index, trust_recorded=not self.corpus_present(name))
        digests = InputDigests(files)
        keys = item_keys(specs, self.items(name), digests, name)
        files.save()
        self._inputs[name] = digests
        return keys

    def locate(self, label, dataset=None, items=None, overrides=None) -> dict:
        """item id -> store.Location (shard, row, state, reason) of stage spec
        `label` for `items` (ids; default: every item), in that order."""
        name = self.dataset(dataset)
        spec = self.spec(label, overrides)
        keys = dict(zip((it.id for it in self.items(name)), self.keys_of([spec], name)[spec.label]))
        wanted = list(keys) if items is None else list(items)
        unknown = [i for i in wanted if i not in keys]
        if unknown:
            raise NotInCache(f"items not in dataset {name}: {', '.join(unknown[:5])}")
        inputs = self._inputs[name]
        return {loc.item_id: _judged(loc, inputs)
                for loc in self.index.lookup(spec.config_id, [keys[i] for i in wanted], wanted)}

    def status(self, label, dataset=None, overrides=None) -> dict:
        """Item ids per state (current / stale / missing / failed), the failed
        items' messages, and the spec, for one stage spec."""
        found = self.locate(label, dataset, overrides=overrides)
        out = {state: [i for i, loc in found.items() if loc.state == state] for state in STATES}
        out["unverified"] = [i for i, loc in found.items() if loc.unverified]
        out["errors"] = {i: loc.reason for i, loc in found.items() if loc.state == "failed"}
        out["missing inputs"] = {i: loc.reason for i, loc in found.items() if loc.reason.startswith("input file")}
        out["spec"] = self.spec(label, overrides)
        return out

    def load(self, label, item_ids=None, dataset=None, overrides=None, allow_stale=False) -> dict:
        """item id -> Features for stage spec `label` (e.g. "fbank", "fbank@tsin")."""
        name = self.dataset(dataset)
        spec = self.spec(label, overrides)
        found = self.locate(spec, name, item_ids)
        if allow_stale:
            found = {i: self._any_output(spec, loc) for i, loc in found.items()}
        lacking = [i for i, loc in found.items() if loc.state != "current"]
        if lacking:
            raise NotInCache(f"{len(lacking)} item(s) lack an up-to-date {spec.label} output "
                             f"(e.g. {', '.join(lacking[:3])}: {found[lacking[0]].reason}); run: "
                             f"pipeline extract --cache {self.dir} --dataset {name} --stages {spec.label}")
        return {i: self._features(loc) for i, loc in found.items()}

    def _any_output(self, spec, loc):
        """A stale item's stored output, for looking at (inspect)."""
        if loc.state != "stale":
            return loc
        key, shard, row = self.index.stored_location(spec.config_id, loc.item_id)
        return type(loc)(loc.item_id, key, "current", shard, row)

    def _features(self, loc):
        arrays, meta = self.reader.row(loc.shard, loc.row, loc.key)
        kinds = self.reader.attrs(loc.shard)["arrays"]
        times = {n: self.reader.times(loc.shard, loc.row, n) for n, a in kinds.items() if a["kind"] == "seq"}
        return Features(arrays, meta, times, loc.key)

    def stage_attrs(self, label, dataset=None, overrides=None) -> dict:
        """Facts shared by a stage output (e.g. column names), from any of its shards."""
        spec = self.spec(label, overrides)
        for shard, config_id, n, *_ in self.index.shards():
            if config_id == spec.config_id and n:
                return self.reader.attrs(shard)["stage_attrs"]
        return {}

    def torch_dataset(self, inputs, labelset, dataset=None, items=None, overrides=None):
        """The torch Dataset the heads train on (heads/data.py), for training
        a model of your own on the cache.

        `inputs`: {name: "stage spec/array"} (e.g. {"x": "opensmile@egemaps/functionals",
        "frames": "fbank@tsin/fbank"}; the array's kind, a sequence or one vector,
        is read from the cache) or {name: heads.head.Input}; `overrides` selects
        stage options as `extract` takes them ({"mfcc": {"n_mfcc": 20}}). `labelset`: a label
        set of the dataset's corpus (manifests/labelsets.toml). `items`: item
        ids (default: every item the label set keeps). Example i is a dict:
        "id", "label" (class index, or a number for a regression set) and each
        input as float32 (steps, width) or (width,). Batch with
        `DataLoader(ds, batch_size=16, collate_fn=heads.data.collate)`: sequences
        are zero-padded and `<name>_mask` marks real steps. `ds.data.classes`
        names the classes; items whose extraction failed are left out and
        listed in `ds.data.dropped`. Missing or stale outputs raise NotInCache
        with the `pipeline extract` command that makes them."""
        from heads.data import Data
        from heads.head import Input
        name = self.dataset(dataset)
        wanted = {key: value if isinstance(value, Input) else self._input(value, name, overrides)
                  for key, value in inputs.items()}
        data = Data(self, name, wanted, labelset, overrides)
        return data.subset(data.ids if items is None else [i for i in items if i in data.items])

    def _input(self, text, dataset, overrides=None):
        """heads.head.Input for "stage spec/array", its kind as stored."""
        from heads.head import Input
        label, sep, array = str(text).rpartition("/")
        if not sep or not label or not array:
            raise ValueError(f"input {text!r}: expected 'stage spec/array', e.g. 'fbank@tsin/fbank'")
        spec = self.spec(label, overrides)
        for shard, config_id, n, *_ in self.index.shards():
            if config_id == spec.config_id and n:
                kinds = self.reader.attrs(shard)["arrays"]
                if array not in kinds:
                    raise ValueError(f"input {text!r}: {label} has no array {array!r} "
                                     f"(it has: {', '.join(sorted(kinds))})")
                return Input(label, array, "vec" if kinds[array]["kind"] == "vec" else "seq")
        raise NotInCache(f"nothing of {label} is in the cache {self.dir}; run: pipeline extract "
                         f"--cache {self.dir} --dataset {dataset} --stages {label}")


def _judged(loc, inputs):
    """A location seen in the light of the item's input files: a missing file
    makes it missing (its output is not trusted blindly); a recorded digest
    stands in for an unmounted corpus (unverified)."""
    if loc.item_id in inputs.missing and loc.state in ("current", "stale"):
        paths = ", ".join(inputs.missing[loc.item_id])
        return replace(loc, state="missing", reason=f"input file missing ({paths}); its stored output is not used")
    if loc.item_id in inputs.unverified and loc.state == "current":
        return replace(loc, unverified=True)
    return loc


def load(label, item_ids=None, cache_dir=None, **kw) -> dict:
    """Shortcut: `Cache(cache_dir).load(label, item_ids, ...)`."""
    return Cache(cache_dir).load(label, item_ids, **kw)


class Tallies(dict):
    """stage label -> runner.StageTally (computed, reused, failed, failed_before,
    skipped, seconds, messages), plus the run's dataset, root, item count,
    reader report and seconds."""

    def __init__(self, tallies, dataset, root, n_items, seconds, report=()):
        super().__init__(tallies)
        self.dataset, self.root, self.n_items, self.seconds = dataset, root, n_items, seconds
        self.report = list(report)

    def to_json(self) -> dict:
        """Plain data (what `pipeline extract --json` prints)."""
        stages = {label: {"computed": t.computed, "reused": t.reused, "failed": t.failed,
                          "failed_before": t.failed_before, "skipped": t.skipped,
                          "seconds": round(t.seconds, 3),
                          "errors": [[i, m] for i, m in t.messages + getattr(t, "cached_errors", [])],
                          "ran_on": sorted(f"{w} ({d})" for w, d in t.places)}
                  for label, t in self.items()}
        return {"dataset": self.dataset, "root": self.root, "items": self.n_items,
                "seconds": round(self.seconds, 3), "stages": stages, "reader_report": self.report}


def extract(dataset=None, root=None, cache=None, stages=None, overrides=None, workers=None,
            scheduler=None, gpu_workers=None, retry_failed=False, batch=None, progress=False,
            on_items=None, worker_timeout=60.0) -> Tallies:
    """Compute what is missing for `stages` (stage specs, e.g. ["fbank", "mfcc@tsin"];
    default: the default stages) over the items of corpus `dataset` at `root`
    into the cache folder `cache` (default ./.emocache or $EMOCACHE_DIR), with
    option `overrides` ({stage or spec: {option: value}}). `dataset` and `root`
    default to those the cache recorded. Runs on `workers` local Dask processes,
    or `scheduler` (an address, or "sync": this process); with no live worker
    for `worker_timeout` seconds the run stops. Returns the per-stage
    tallies (`Tallies`); bad items are in them, not raised. Bad options raise
    before any work, naming the problem (stage.ConfigError, registry.UnknownName,
    extraction.UsageError); an infrastructure fault raises faults.InfraFault, whose
    `tallies` say what was done."""
    from .extraction import UsageError, cache_lock, gpu_devices
    from .graph import default_labels, resolve
    from .placement import gpu_placement
    from .plan import extract as run_plan
    from .runner import make_executor
    from .store import Index
    cache = str(cache or default_cache_dir())
    if workers is not None and workers < 1:
        raise UsageError("--workers must be >= 1")
    if batch is not None and batch < 1:
        raise UsageError("--batch must be >= 1")
    if worker_timeout <= 0:
        raise UsageError("--worker-timeout must be > 0")
    if root and not os.path.exists(root):
        raise UsageError(f"corpus root {root} does not exist")      # before the cache folder is made
    gpu_devices = gpu_devices(gpu_workers, scheduler)
    specs = resolve(list(stages or default_labels()), overrides)
    with cache_lock(cache):
        dataset, root, items = _extract_items(Index(cache), dataset, root)
        if on_items:
            on_items(items)
        tallies, seconds = run_plan(cache, dataset, items, specs,
                                    lambda: make_executor(workers, scheduler, (os.path.abspath(cache), root),
                                                          gpu_placement() if gpu_devices is None else gpu_devices,
                                                          worker_timeout),
                                    retry_failed=retry_failed, batch_size=batch, progress=progress)
    return Tallies(tallies, dataset, root, len(items), seconds, getattr(items, "report", ()))


def _extract_items(index, dataset=None, root=None) -> tuple:
    """(dataset, root, items) read from the corpus, recorded in the cache
    (`index`): what `extract` works on. Dataset and root default to the
    cache's own."""
    from .extraction import dataset_and_root, read_items
    from .corpora import load_all
    from .demo import corpus_marks
    from .plan import record_dataset
    if dataset:
        load_all().get_or_fail(dataset)
    dataset, root = dataset_and_root(index, dataset, root)
    items = read_items(dataset, root)
    record_dataset(index, index.root, dataset, root, corpus_marks(root), items)
    return dataset, root, items


def stage_state(st, n_items) -> dict:
    """One stage's status (Cache.status) as plain data: its overall state,
    counts per state, failed items' messages, items whose input file is missing."""
    n = {k: len(st[k]) for k in ("current", "stale", "missing", "failed")}
    state = ("unverified" if st["unverified"] else "up to date") if n["current"] + n["failed"] == n_items \
        else "stale" if n["stale"] else "missing"
    return {"state": state, "counts": n, "config_id": st["spec"].config_id, "errors": st["errors"],
            "missing_inputs": st["missing inputs"], "unverified": len(st["unverified"])}
