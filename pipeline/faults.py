"""Infrastructure faults: failures of the machine or the cluster, not of an item.

An out-of-memory error, a CUDA/cuDNN error, a model that does not load, a
full or read-only cache disk, a lost worker: none of these says anything
about the item being computed, so none is recorded against an item (it would
then be skipped by every later run). The runner retries them (out of memory:
the batch in halves first) and otherwise stops the run with a non-zero exit,
keeping every complete shard, so that running the command again goes on.
"""
from __future__ import annotations

import errno
import os

OOM, INFRA = "out of memory", "infrastructure"

# Messages of the RuntimeErrors CUDA libraries raise (torch wraps them all in RuntimeError).
_DEVICE_ERRORS = ("CUDA error", "CUDA driver", "cuDNN error", "CUDNN_STATUS_", "CUBLAS_STATUS_",
                  "NCCL error", "cudaErrorLaunchFailure", "device-side assert")
# What distributed raises for a task whose worker died (after its own retries) or went away.
_LOST_WORKER = {"KilledWorker", "CommClosedError", "StreamClosedError", "FutureCancelledError"}
# No space, no quota, read-only file system, I/O error: the disk's problem, not the input's.
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO}


class InfraFault(RuntimeError):
    """A fault that is not the item's: the run stops, complete shards are kept."""


def fault_kind(error, cache_dir=None):
    """OOM, INFRA, or None when `error` may well be the item's own problem."""
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return OOM
    if isinstance(error, InfraFault) or type(error).__name__ in _LOST_WORKER:
        return INFRA
    text = str(error)
    if isinstance(error, RuntimeError) and "out of memory" in text.lower():
        return OOM
    if isinstance(error, RuntimeError) and any(m in text for m in _DEVICE_ERRORS):
        return INFRA
    if isinstance(error, OSError) and (error.errno in _DISK_ERRNOS or _in_cache(error, text, cache_dir)):
        return INFRA
    return None


def _in_cache(error, text, cache_dir):
    """An OSError on a file of the cache folder (an upstream shard, a shard being written)."""
    if not cache_dir:
        return False
    given, absolute = os.fspath(cache_dir), os.path.abspath(cache_dir)
    names = [n for n in (error.filename, getattr(error, "filename2", None)) if n]
    if any(os.path.abspath(os.fspath(n)).startswith(absolute + os.sep) for n in names):
        return True
    return absolute in text or os.path.join(given, "shards") in text   # h5py names the file in its message only


def free_device_memory():
    """Give cached GPU memory back before a smaller retry (no-op without torch or CUDA)."""
    import sys
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
