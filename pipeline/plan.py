"""From a manifest and stage specs to what must be computed, and the extract run.

Nothing here imports numpy, h5py or dask until there is work to do, so a
rerun with nothing to compute takes a fraction of a second.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from .graph import InputDigests, item_keys
from .runner import StageTally
from .digests import FileDigests
from .store import Index


@dataclass
class SpecPlan:
    spec: object
    keys: list
    todo: list = field(default_factory=list)            # item indices to compute
    failed_before: dict = field(default_factory=dict)   # index -> cached error message
    reused: int = 0


def make_plan(index, specs, items, dataset, retry_failed=False) -> list:
    """Per spec, which items to compute: the index's lookup decides what is
    current. A shard found missing or resized is forgotten (and its file
    removed), so its items are computed again."""
    files = FileDigests(index)
    keys = item_keys(specs, items, InputDigests(files), dataset)
    files.save()
    plans = []
    ids = [it.id for it in items]
    for spec in specs:
        p = SpecPlan(spec, keys[spec.label])
        found = index.lookup(spec.config_id, p.keys, ids)
        damaged = {loc.shard for loc in found if loc.shard and loc.state != "current"}
        if damaged:
            index.drop_shards(sorted(damaged))
        for i, loc in enumerate(found):
            if loc.state == "current":
                p.reused += 1
            elif loc.state == "failed" and not retry_failed:
                p.failed_before[i] = loc.reason
            else:
                p.todo.append(i)
        plans.append(p)
    return plans


def levels(plans) -> list:
    """Group plans by depth in the stage graph: a level runs after the one before."""
    depth = {}
    for p in plans:   # plans are in dependency order
        depth[p.spec.label] = 1 + max((depth[u.label] for u in p.spec.upstream.values()), default=-1)
    out = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for p in plans:
        if p.todo:
            out[depth[p.spec.label]].append(p)
    return [lvl for lvl in out if lvl]


def payloads(cache_dir, index, level, items, all_keys, tallies, batch_size=None, gpu=False):
    """Task payloads for one level: specs of one group share a task per batch
    (`gpu`: neural stages run on GPU workers, in their larger batches)."""
    groups = {}
    for p in level:
        groups.setdefault(p.spec.stage.group or p.spec.label, []).append(p)
    item_json = {}
    for group in groups.values():
        rows, want = {}, {}
        for p in group:
            want[p.spec.label] = _with_upstream(index, p, all_keys, rows, tallies[p.spec.label])
        todo = sorted(set().union(*want.values()))
        size = batch_size or min(_batch_items(p.spec.stage, gpu) for p in group)
        for start in range(0, len(todo), size):
            yield _payload(cache_dir, group, todo[start:start + size], items, item_json,
                           want, rows, all_keys)


def _batch_items(stage, gpu) -> int:
    return stage.gpu_batch_items if gpu and stage.gpu and stage.gpu_batch_items else stage.batch_items


def _with_upstream(index, p, all_keys, rows, tally):
    """Items of `p.todo` whose upstream outputs all exist; the others are skipped."""
    ok = set(p.todo)
    for role, up in p.spec.upstream.items():
        up_keys = all_keys[up.label]
        found = index.locations(up_keys[i] for i in p.todo)
        rows[(p.spec.label, role)] = found
        ok = {i for i in ok if up_keys[i] in found}
    tally.skipped += len(p.todo) - len(ok)
    tally.computed -= len(p.todo) - len(ok)
    return ok


def _payload(cache_dir, group, batch, items, item_json, want, rows, all_keys):
    specs, keys, upstream = [], {}, {}
    for p in group:
        label = p.spec.label
        specs.append({"label": label, "stage": p.spec.name, "version": p.spec.stage.version,
                      "config_id": p.spec.config_id, "config": json.loads(p.spec.config_json)})
        keys[label] = [p.keys[i] if i in want[label] else None for i in batch]
        upstream[label] = {role: [rows[(label, role)].get(all_keys[up.label][i]) for i in batch]
                           for role, up in p.spec.upstream.items()}
    for i in batch:
        if i not in item_json:
            item_json[i] = items[i].to_json()
    return {"cache_dir": str(cache_dir), "specs": specs, "items": [item_json[i] for i in batch],
            "keys": keys, "upstream": upstream}


def record_dataset(index, cache_dir, dataset, root, options, items) -> str:
    """Write the manifest into the cache (when it changed) and remember the
    root, in the index and beside the manifest (so the index can be rebuilt)."""
    # The repr of the Items is a faithful, cheap fingerprint (dataclass fields in
    # a fixed order); JSON is written only when it changed.
    digest = hashlib.blake2b(repr(items).encode(), digest_size=16).hexdigest()
    known = index.datasets().get(dataset)
    folder = Path(cache_dir) / "manifests"
    path = folder / f"{dataset}.jsonl"
    changed = not known or known["manifest_digest"] != digest
    if changed or not path.exists():
        _write_atomically(path, "".join(item.to_json() + "\n" for item in items))
    if changed or known["root"] != str(root) or known["options"] != options:
        info = {"root": str(root), "options": options, "manifest_digest": digest, "n_items": len(items)}
        _write_atomically(folder / f"{dataset}.json", json.dumps(info, sort_keys=True) + "\n")
        index.record_dataset(dataset, root, options, digest, len(items))
    return digest


def _write_atomically(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def extract(cache_dir, dataset, items, specs, executor_factory, retry_failed=False,
            batch_size=None, progress=True):
    """Compute what is missing for `specs` over `items`; returns tallies per label."""
    t0 = time.perf_counter()
    index = Index(cache_dir)
    index.adopt_orphans({s.config_id for s in specs})
    for spec in specs:
        index.record_config(spec)
        if retry_failed:
            index.forget_errors(spec.config_id)
    plans = make_plan(index, specs, items, dataset, retry_failed)
    all_keys = {p.spec.label: p.keys for p in plans}
    tallies = {p.spec.label: StageTally(computed=len(p.todo), reused=p.reused,
                                        failed_before=len(p.failed_before)) for p in plans}
    work = levels(plans)
    if work:
        from .runner import run
        executor = executor_factory()
        try:
            gpu = getattr(executor, "gpu_workers", 0) > 0
            run(index, (payloads(cache_dir, index, lvl, items, all_keys, tallies, batch_size, gpu)
                        for lvl in work), tallies, executor, progress)
        finally:
            executor.close()
        # A worker killed while writing leaves a temporary file; its task ran again elsewhere.
        index.adopt_orphans({s.config_id for s in specs})
    for p in plans:
        tallies[p.spec.label].cached_errors = [(items[i].id, m) for i, m in p.failed_before.items()]
    return tallies, time.perf_counter() - t0
