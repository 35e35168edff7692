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

from .faults import OOM, InfraFault, fault_kind, free_device_memory
from .placement import local_cluster
from .stage import ItemError

RETRIES = 2            # tries of a task after an infrastructure fault, before the run stops
RETRY_PAUSE_S = 0.5    # before the first retry; doubled for each next one
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
    stored: int = 0            # items whose outputs this run committed
    not_done: int = 0          # items a stopped run left (retried by the next run)
    places: set = field(default_factory=set)   # (worker, device) pairs the stage ran on
    meta_sums: dict = field(default_factory=dict)   # meta key -> [sum, count]


# --- worker side -----------------------------------------------------------

_STAGE_CACHE = {}   # config_id -> Stage, so models load once per worker process
_READERS = {}


def _stage_for(spec):
    from .stage import make_config
    from .stages import load_all
    # Runtime options (batch size, device) are not in the config id but are in the stage.
    key = (spec["config_id"], json.dumps(spec["config"], sort_keys=True))
    stage = _STAGE_CACHE.get(key)
    if stage is None:
        cls = load_all()[spec["stage"]]
        stage = cls(make_config(cls, spec["config"]))
        _STAGE_CACHE[key] = stage
    return stage


def _reader(cache_dir):
    from .shard import ShardReader
    if cache_dir not in _READERS:
        _READERS[cache_dir] = ShardReader(cache_dir)
    return _READERS[cache_dir]


def execute_task(payload) -> list:
    """Compute every spec of the task for its items; one shard per spec.
    An infrastructure fault (pipeline/faults.py) is tried again a few times,
    then raised as InfraFault: it is never recorded against the items."""
    for attempt in range(RETRIES + 1):
        try:
            return _execute(payload)
        except Exception as e:
            kind = fault_kind(e, payload["cache_dir"])
            if kind is None:
                raise           # not an item's problem either: the driver stops the run with it
            if attempt == RETRIES:
                raise InfraFault(f"{_described(e)} (tried {RETRIES + 1} times)") from None
            free_device_memory()
            time.sleep(RETRY_PAUSE_S * 2 ** attempt)


def _execute(payload) -> list:
    from .manifest import Item
    cache_dir = payload["cache_dir"]
    items = [Item.from_dict(json.loads(s)) for s in payload["items"]]
    memos = [dict() for _ in items]
    outcomes, seconds = {}, {}
    specs = payload["specs"]
    for spec in specs:
        _load_model(spec)
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
            outcomes.setdefault(spec["label"], {})[i] = _guarded(spec, lambda: _stage_for(spec).compute(ctx),
                                                                 cache_dir)
            seconds[spec["label"]] = seconds.get(spec["label"], 0.0) + time.perf_counter() - t0
        memos[i] = None
    for spec in batched:
        idx = [i for i, k in enumerate(payload["keys"][spec["label"]]) if k is not None]
        ctxs = [_context(payload, spec, items[i], i, {}, cache_dir) for i in idx]
        t0 = time.perf_counter()
        outcomes[spec["label"]] = dict(zip(idx, _batched(spec, ctxs, cache_dir)))
        seconds[spec["label"]] = time.perf_counter() - t0
    return [_write(payload, spec, items, outcomes.get(spec["label"], {}), seconds.get(spec["label"], 0.0))
            for spec in specs if outcomes.get(spec["label"])]


def _write(payload, spec, items, done, seconds) -> dict:
    """One shard of the spec's results and item errors; its receipt."""
    from .shard import check_consistent, write_shard
    keys = payload["keys"][spec["label"]]
    ok = [(keys[i], items[i].id, r) for i, r in sorted(done.items()) if not isinstance(r, Exception)]
    errs = [(keys[i], items[i].id, str(r)) for i, r in sorted(done.items()) if isinstance(r, Exception)]
    problem = check_consistent([r for *_, r in ok]) if ok else None
    if problem:   # a stage bug, not an input problem: fail the whole batch loudly
        errs += [(k, i, f"internal error in stage {spec['stage']}: {problem}") for k, i, _ in ok]
        ok = []
    stage = _stage_for(spec)
    receipt = write_shard(payload["cache_dir"], spec, [k for k, _, _ in ok], [i for _, i, _ in ok],
                          [r for *_, r in ok], errs, stage.shard_attrs())
    receipt.update(worker=_worker_name(), device=_device(stage), label=spec["label"], seconds=seconds,
                   summary=_meta_sums(stage.summary_meta, [r for *_, r in ok]))
    return receipt


def _load_model(spec):
    """Set the stage up (load its model) before any item: a model that does
    not load is the worker's problem, not every item's."""
    try:
        _stage_for(spec).resources
    except Exception as e:
        _STAGE_CACHE.clear()        # the next try loads the models afresh
        what = "out of memory loading its model" if fault_kind(e) == OOM else "its model failed to load"
        raise InfraFault(f"stage {spec['stage']}: {what}: {_described(e)}") from None


def _described(e) -> str:
    return str(e) if isinstance(e, InfraFault) else f"{type(e).__name__}: {e}"


def _batched(spec, ctxs, cache_dir) -> list:
    """compute_batch over `ctxs`; a batch that fails as a whole is split in
    halves, down to single items: out of memory, until the parts fit;
    an unexpected error, until it is narrowed to the items that raise it."""
    try:
        results = list(_stage_for(spec).compute_batch(ctxs))
    except Exception as e:
        kind = fault_kind(e, cache_dir)
        if kind is not None and (kind != OOM or len(ctxs) == 1):
            raise                       # the task's retries deal with it
        if len(ctxs) == 1:
            return [e if isinstance(e, ItemError) else _internal_error(spec, e)]
        if kind == OOM:
            free_device_memory()
        half = len(ctxs) // 2
        return _batched(spec, ctxs[:half], cache_dir) + _batched(spec, ctxs[half:], cache_dir)
    if len(results) != len(ctxs):
        raise RuntimeError(f"stage {spec['stage']}: compute_batch returned {len(results)} results "
                           f"for {len(ctxs)} items")
    return results


def _device(stage) -> str:
    """Where a stage's arrays were computed in this worker: the device its
    model sits on (neural stages), else cpu."""
    if not stage.gpu:
        return "cpu"
    res = stage.resources
    device = res.get("device") if isinstance(res, dict) else None
    if device is None:
        import torch
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


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


def _guarded(spec, fn, cache_dir):
    try:
        return fn()
    except ItemError as e:
        return e
    except Exception as e:   # a crash on one odd item must not lose the batch
        if fault_kind(e, cache_dir) is not None:
            raise            # ... but a fault of the machine is not the item's
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
    """A local cluster (processes, one thread each) or an existing scheduler.

    `gpu_devices` (local only): one worker per entry sees that CUDA device
    alone and declares a GPU resource; neural stages run there only, and
    every other task on the remaining (CPU) workers."""

    def __init__(self, workers=None, scheduler=None, shared_paths=(), gpu_devices=(), worker_timeout=60.0):
        import logging
        import warnings
        from distributed import Client
        from .quiet import quiet_dask_logs
        quiet_dask_logs()
        # The dashboard is off; distributed still warns when its default port is taken.
        warnings.filterwarnings("ignore", message="Port .* is already in use")
        for var in _THREAD_VARS:   # inherited by worker processes
            os.environ.setdefault(var, "1")
        self.cluster = None
        self.worker_timeout = worker_timeout
        self.placed = bool(gpu_devices) and not scheduler
        if scheduler:
            self.client = Client(scheduler, timeout="30s")
        else:
            n = workers or os.cpu_count() or 1
            self.cluster = _ignoring_sigint(lambda: local_cluster(
                max(1, n - len(gpu_devices)) if gpu_devices else n, gpu_devices, logging.ERROR))
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
        if wants_gpu and self.gpu_workers:
            return {"GPU": 1}
        # Our own CPU workers declare CPU, so decoding and DSP never take a GPU worker's slot.
        return {"CPU": 1} if self.placed else None

    def map_unordered(self, payloads):
        from distributed import as_completed
        from . import watchdog
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
        alive = watchdog.Liveness(self.client, self.worker_timeout)
        try:
            for fut in watchdog.completed(pending, alive):
                p = live.pop(fut.key)
                try:
                    yield p, watchdog.result(fut, alive), None
                except Exception as e:
                    yield p, None, e
                submit_next()
        except watchdog.ClusterLost as e:   # every task still out is lost with the cluster
            for p in live.values():
                yield p, None, e

    def close(self):
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _ignoring_sigint(start):
    """`start()` with SIGINT ignored, so the worker processes it spawns inherit
    that: Ctrl-C reaches the driver alone, which closes the cluster in order,
    instead of every worker printing its own tracebacks."""
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():
        return start()      # only the main thread may set a handler (and only it gets SIGINT)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return start()
    finally:
        signal.signal(signal.SIGINT, previous)


def make_executor(workers=None, scheduler=None, shared_paths=(), gpu_devices=(), worker_timeout=60.0):
    if scheduler == "sync":
        return SyncExecutor()
    return DaskExecutor(workers, scheduler, shared_paths, gpu_devices or (), worker_timeout)


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
    upstream shard locations). A task that fails (an infrastructure fault
    that outlasted its retries, a lost worker) stops the run: no new task
    starts, the ones running are committed, then InfraFault is raised."""
    import itertools
    bars = {label: _bar(label, t.computed, progress) for label, t in tallies.items()}
    faults = []
    try:
        for payloads in levels:
            if faults:
                break
            for payload, receipts, error in executor.map_unordered(
                    itertools.takewhile(lambda _p: not faults, payloads)):
                if error is not None:
                    faults.append((fault_kind(error) is not None, _task_failed(payload, error, tallies, bars)))
                    continue
                for r in receipts:
                    index.commit_receipt(r)
                    _count(tallies[r["label"]], r)
                    bars[r["label"]].update(len(r["keys"]) + len(r["errors"]))
    finally:
        for bar in bars.values():
            bar.close()
    if faults:
        raise _stopped(faults, tallies)
    return tallies


def _count(t, r):
    t.stored += len(r["keys"])
    t.seconds += r["seconds"]
    t.failed += len(r["errors"])
    t.computed -= len(r["errors"])
    t.messages += [(i, m) for _k, i, m in r["errors"]]
    t.places.add((r["worker"], r.get("device", "cpu")))
    for name, (total, n) in r.get("summary", {}).items():
        acc = t.meta_sums.setdefault(name, [0.0, 0])
        acc[0] += total
        acc[1] += n


def _task_failed(payload, error, tallies, bars) -> str:
    """A task died (not an item problem): its items stay missing, nothing
    is recorded against them, and the next run computes them."""
    labels = []
    for spec in payload["specs"]:
        bars[spec["label"]].update(sum(1 for k in payload["keys"][spec["label"]] if k))
        labels.append(spec["label"])
    return f"{_described(error)}, in a task of {', '.join(labels)}"


def _stopped(faults, tallies) -> InfraFault:
    for t in tallies.values():      # what is not stored now was never started or was lost with its task
        t.not_done, t.computed = t.computed - t.stored, t.stored
    not_done = {label: t.not_done for label, t in tallies.items() if t.not_done}
    infra, first = faults[0]
    cause = "infrastructure fault" if infra else "a task failed (a stage or runner bug)"
    fault = InfraFault(
        f"{cause}, not an input problem: {first}"
        + (f" (and {len(faults) - 1} more failed task(s))" if len(faults) > 1 else "")
        + "; the run stopped. Nothing was recorded against the items; "
        + ", ".join(f"{label}: {n} item(s)" for label, n in not_done.items())
        + " not computed. Complete shards are kept: run the same command again to continue.")
    fault.tallies = tallies
    return fault


def _bar(label, total, enabled):
    from tqdm import tqdm
    return tqdm(total=total, desc=f"{label:>16}", unit="item", file=sys.stderr,
                disable=not enabled or total == 0, mininterval=0.5, leave=True)
