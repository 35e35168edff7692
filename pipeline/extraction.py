"""What an extract run settles before any work, for the `pipeline` command and
`pipeline.api.extract` alike: the cache's lock, the GPU workers' devices,
the dataset and its corpus root, and the corpus's items."""
from __future__ import annotations

import os
from pathlib import Path

from .registry import UnknownName


class UsageError(Exception):
    """A bad command line: reported before any work, exit status 2."""


def dataset_and_root(index, dataset=None, root=None, must_exist=True):
    known = index.datasets()
    if dataset is None:
        if len(known) != 1:
            raise UsageError("--dataset is required" + (f" (the cache holds {', '.join(known)})" if known else ""))
        dataset = next(iter(known))
    given = root
    root = root or known.get(dataset, {}).get("root")
    if root is None:
        raise UsageError(f"--root is required: the cache has no recorded root for {dataset}")
    if not os.path.exists(root) and (must_exist or given):
        raise UsageError(f"corpus root {root} does not exist")
    return dataset, os.path.abspath(root)


def read_items(dataset, root):
    from .corpora import read_corpus
    try:
        return read_corpus(dataset, root)
    except (OSError, ValueError) as e:
        if isinstance(e, UnknownName):
            raise
        raise UsageError(f"reading {dataset} at {root}: {e}") from None


def gpu_devices(n, scheduler):
    """The CUDA device of each local GPU worker (--gpu-workers), as
    CUDA_VISIBLE_DEVICES entries, or None for the default (one per visible
    device, found once there is work: the no-op rerun never imports torch)."""
    if n is not None and n < 0:
        raise UsageError("--gpu-workers must be >= 0")
    if scheduler and n:
        raise UsageError("--gpu-workers places local Dask workers; not with --scheduler (a cluster's "
                         "workers declare their own GPU: dask worker --resources GPU=1)")
    if scheduler or n == 0:
        return []
    if n is None:
        return None
    from .placement import gpu_placement
    if not gpu_placement(1):
        raise UsageError(f"--gpu-workers {n}: torch sees no CUDA device on this machine "
                         "(leave it out, or give 0, to run every stage on the CPU workers)")
    return gpu_placement(n)


def cache_lock(cache_dir):
    import contextlib
    import fcntl

    @contextlib.contextmanager
    def lock():
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        with open(Path(cache_dir) / "lock", "w") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UsageError(f"another `pipeline extract` is running on {cache_dir}") from None
            yield
    return lock()
