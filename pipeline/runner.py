"""Running a plan: batches of items per task, on Dask (or in-process).

The driver builds task payloads (plain data: items as JSON, keys, upstream
shard locations), workers compute and write one shard per stage
configuration, and the driver commits each returned receipt to the index as
soon as it arrives, so an interrupted run keeps everything finished.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from dataclasses import dataclass, field

from .stage import ItemError

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


@dataclass
class StageTally:
    computed: int = 0
    reused: int = 0
    failed: int = 0
    failed_before: int = 0
    skipped: int = 0
    seconds: float = 0.0
    messages: list = field(default_factory=list)
    meta_sums: dict = field(default_factory=dict)   # meta key -> [sum, count]


# --- worker side -----------------------------------------------------------

_STAGE_CACHE = {}   # config_id -> Stage, so models load once per worker process
_READERS = {}


def _stage_for(spec):
    from .stage import make_config
    from .stages import load_all
    stage = _STAGE_CACHE.get(spec["config_id"])
    if stage is None:
        cls = load_all()[spec["stage"]]
        stage = cls(make_config(cls, spec["config"]))
        _STAGE_CACHE[spec["config_id"]] = stage
    return stage


def _reader(cache_dir):
    from .shard import ShardReader
    if cache_dir not in _READERS:
        _READERS[cache_dir] = ShardReader(cache_dir)
    return _READERS[cache_dir]


def execute_task(payload) -> list:
    """Compute every spec of the task for its items; one shard per spec."""
    from .manifest import Item
    from .shard import check_consistent, write_shard
    cache_dir = payload["cache_dir"]
    items = [Item.from_dict(json.loads(s)) for s in payload["items"]]
    memos = [dict() for _ in items]
    outcomes, seconds = {}, {}
    specs = payload["specs"]
    per_item = [s for s in specs if not _stage_for(s).batched]
    batched = [s for s in specs if _stage_for(s).batched]
    # Item-major for per-item stages: intermediates of one item (audio, STFT)
    # are shared between stages and freed before the next item.
    for i, item in enumerate(items):
        for spec in per_item:
            if payload["keys"][spec["label"]][i] is None:
                continue
            ctx = _context(payload, spec, item, i, memos[i], cache_dir)
            t0 = time.perf_counter()
            outcomes.setdefault(spec["label"], {})[i] = _guarded(spec, lambda: _stage_for(spec).compute(ctx))
            seconds[spec["label"]] = seconds.get(spec["label"], 0.0) + time.perf_counter() - t0
        memos[i] = None
    for spec in batched:
        idx = [i for i, k in enumerate(payload["keys"][spec["label"]]) if k is not None]
        ctxs = [_context(payload, spec, items[i], i, {}, cache_dir) for i in idx]
        t0 = time.perf_counter()
        try:
            results = _stage_for(spec).compute_batch(ctxs)
        except Exception as e:
            results = [_internal_error(spec, e)] * len(idx)
        outcomes[spec["label"]] = dict(zip(idx, results))
        seconds[spec["label"]] = time.perf_counter() - t0
    receipts = []
    for spec in specs:
        done = outcomes.get(spec["label"], {})
        if not done:
            continue
        keys = payload["keys"][spec["label"]]
        ok = [(keys[i], items[i].id, r) for i, r in sorted(done.items()) if not isinstance(r, Exception)]
        errs = [(keys[i], items[i].id, str(r)) for i, r in sorted(done.items()) if isinstance(r, Exception)]
        problem = check_consistent([r for *_, r in ok]) if ok else None
        if problem:   # a stage bug, not an input problem: fail the whole batch loudly
            errs += [(k, i, f"internal error in stage {spec['stage']}: {problem}") for k, i, _ in ok]
            ok = []
        receipt = write_shard(cache_dir, spec, [k for k, _, _ in ok], [i for _, i, _ in ok],
                              [r for *_, r in ok], errs, _stage_for(spec).shard_attrs())
        receipt["worker"] = _worker_name()
        receipt["label"] = spec["label"]
        receipt["seconds"] = seconds.get(spec["label"], 0.0)
        receipt["summary"] = _meta_sums(_stage_for(spec).summary_meta, [r for *_, r in ok])
        receipts.append(receipt)
    return receipts


def _worker_name():
    """The Dask worker's name (for placement checks), or 'local' outside Dask."""
    try:
        from distributed import get_worker
        return str(get_worker().name)
    except (ImportError, ValueError):
        return "local"


def _meta_sums(names, results):
    sums = {}
    for name in names:
        values = [r.meta[name] for r in results if r.meta.get(name) is not None]
        sums[name] = [float(sum(values)), len(values)]
    return sums


def _context(payload, spec, item, i, memo, cache_dir):
    from .context import ItemContext
    ups = {}
    for role, locs in payload["upstream"].get(spec["label"], {}).items():
        shard, row = locs[i]
        ups[role] = lambda shard=shard, row=row: _reader(cache_dir).row(shard, row)
    return ItemContext(item, memo, ups)


def _guarded(spec, fn):
    try:
        return fn()
    except ItemError as e:
        return e
    except Exception as e:   # a crash on one odd item must not lose the batch
        return _internal_error(spec, e)


def _internal_error(spec, e):
    where = traceback.extract_tb(e.__traceback__)[-1]
    return ItemError(f"{spec['stage']} failed: {type(e).__name__}: {e} "
                     f"(at {os.path.basename(where.filename)}:{where.lineno})")


# --- driver side -----------------------------------------------------------

class SyncExecutor:
    """Runs tasks in this process, one after another (`--scheduler sync`)."""
    workers = 1

    def map_unordered(self, payloads):
        for p in payloads:
            try:
                yield p, execute_task(p), None
            except Exception as e:
                yield p, None, e

    def close(self):
        pass


class DaskExecutor:
    """A local cluster (processes, one thread each) or an existing scheduler."""

    def __init__(self, workers=None, scheduler=None, shared_paths=()):
        import logging
        import warnings
        from distributed import Client, LocalCluster
        # The dashboard is off; distributed still warns when its default port is taken.
        warnings.filterwarnings("ignore", message="Port .* is already in use")
        for var in _THREAD_VARS:   # inherited by worker processes
            os.environ.setdefault(var, "1")
        self.cluster = None
        if scheduler:
            self.client = Client(scheduler, timeout="30s")
        else:
            n = workers or os.cpu_count() or 1
            self.cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                        dashboard_address=None, silence_logs=logging.ERROR)
            self.client = Client(self.cluster)
        info = self.client.scheduler_info(n_workers=-1)["workers"]
        self.workers = max(1, len(info))
        # Neural stages go to workers that declare a GPU resource, when any does.
        self.gpu_workers = sum(1 for w in info.values() if w.get("resources", {}).get("GPU"))
        if scheduler and shared_paths:
            self._check_shared(shared_paths)

    def _check_shared(self, paths):
        """Every worker must see the corpus and be able to write the cache."""
        seen = self.client.run(_path_report, [str(p) for p in paths])
        problems = [f"worker {w}: {msg}" for w, msgs in seen.items() for msg in msgs]
        if problems:
            self.close()
            from .stage import ConfigError
            raise ConfigError("shared storage check failed (workers must see the same corpus and cache "
                              "paths):\n  " + "\n  ".join(problems))

    def _resources(self, payload):
        wants_gpu = any(_stage_for(s).gpu for s in payload["specs"])
        return {"GPU": 1} if wants_gpu and self.gpu_workers else None

    def map_unordered(self, payloads):
        from distributed import as_completed
        payloads = iter(payloads)
        pending = as_completed()
        live = {}

        def submit_next():
            p = next(payloads, None)
            if p is not None:
                fut = self.client.submit(execute_task, p, pure=False, resources=self._resources(p))
                live[fut.key] = p
                pending.add(fut)

        for _ in range(2 * self.workers):   # bounded in flight: memory stays flat
            submit_next()
        for fut in pending:
            p = live.pop(fut.key)
            try:
                yield p, fut.result(), None
            except Exception as e:
                yield p, None, e
            submit_next()

    def close(self):
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def make_executor(workers=None, scheduler=None, shared_paths=()):
    if scheduler == "sync":
        return SyncExecutor()
    return DaskExecutor(workers, scheduler, shared_paths)


def _path_report(paths) -> list:
    """Run on each worker: which shared paths it cannot see or write."""
    msgs = []
    cache, *rest = paths
    if not os.path.isdir(cache) or not os.access(cache, os.W_OK):
        msgs.append(f"cannot write the cache folder {cache}")
    msgs += [f"cannot see {p}" for p in rest if not os.path.exists(p)]
    return msgs


def run(index, levels, tallies, executor, progress=True) -> dict:
    """Execute the levels in order; `levels` yields, per level, an iterable of
    payloads built once the previous level is committed (it needs the
    upstream shard locations)."""
    bars = {label: _bar(label, t.computed, progress) for label, t in tallies.items()}
    try:
        for payloads in levels:
            for payload, receipts, error in executor.map_unordered(payloads):
                if error is not None:
                    _task_failed(payload, error, tallies, bars)
                    continue
                for r in receipts:
                    index.commit_receipt(r)
                    t = tallies[r["label"]]
                    t.seconds += r["seconds"]
                    t.failed += len(r["errors"])
                    t.computed -= len(r["errors"])
                    t.messages += [(i, m) for _k, i, m in r["errors"]]
                    for name, (total, n) in r.get("summary", {}).items():
                        acc = t.meta_sums.setdefault(name, [0.0, 0])
                        acc[0] += total
                        acc[1] += n
                    bars[r["label"]].update(len(r["keys"]) + len(r["errors"]))
    finally:
        for bar in bars.values():
            bar.close()
    return tallies


def _task_failed(payload, error, tallies, bars):
    """A task died (not an item problem): its items stay missing and are retried next run."""
    msg = f"task failed: {type(error).__name__}: {error}"
    for spec in payload["specs"]:
        ids = [json.loads(s)["id"] for s, k in zip(payload["items"], payload["keys"][spec["label"]]) if k]
        t = tallies[spec["label"]]
        t.failed += len(ids)
        t.computed -= len(ids)
        t.messages += [(i, msg) for i in ids]
        bars[spec["label"]].update(len(ids))


def _bar(label, total, enabled):
    from tqdm import tqdm
    return tqdm(total=total, desc=f"{label:>16}", unit="item", file=sys.stderr,
                disable=not enabled or total == 0, mininterval=0.5, leave=True)
