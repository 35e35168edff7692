"""One clear line for an error that reaches a command: a full or read-only
disk, SQLite, HDF5, a lost Dask cluster.

The user gets one line saying what happened and what to do, and the
traceback only with `--debug`. `describe` words an exception, `report`
prints it for a command. (Faults while computing are pipeline/faults.py's:
the runner retries them or stops the run with its own summary.)
"""
from __future__ import annotations

import errno
import sys

RERUN = "complete shards are kept, rerun to continue"

_FULL = {errno.ENOSPC, errno.EDQUOT}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}
# HDF5 and SQLite do not always carry errno; their text does.
_FULL_TEXT = ("No space left on device", "database or disk is full", "Disk quota exceeded")
_READ_ONLY_TEXT = ("Read-only file system", "Permission denied", "readonly database")


def storage_fault(exc) -> str | None:
    """'disk full' / 'read-only' wording when `exc` is a failed write, else None."""
    text = str(exc)
    code = getattr(exc, "errno", None)
    where = getattr(exc, "filename", None)
    at = f" ({where})" if where else ""
    if code in _FULL or any(t in text for t in _FULL_TEXT):
        return f"the disk holding the cache is full{at}; free some space, then rerun: complete shards are kept"
    if code in _READ_ONLY or any(t in text for t in _READ_ONLY_TEXT):
        return (f"cannot write into the cache{at}: {getattr(exc, 'strerror', None) or text}; "
                f"make it writable or pick another --cache, then rerun")
    return None


def scheduler_lost(exc) -> str | None:
    """Wording for the exceptions Dask raises once its scheduler is gone
    (a cancelled future, a closed comm or client), else None. A task whose
    worker died (KilledWorker) is the task's failure, not this."""
    name = type(exc).__name__
    if name in ("CancelledError", "FutureCancelledError", "CommClosedError", "StreamClosedError",
                "ClosedClientError") or (name == "TimeoutError" and _from_dask(exc)):
        return f"lost the Dask scheduler ({name}); check the cluster and rerun"
    return None


def _from_dask(exc) -> bool:
    return type(exc).__module__.split(".")[0] in ("distributed", "tornado") or "scheduler" in str(exc).lower()


def _sqlite_line(exc) -> str | None:
    import sqlite3
    if not isinstance(exc, sqlite3.Error):
        return None
    text = str(exc)
    if "locked" in text or "busy" in text:
        return f"the cache index is busy ({text}): another process holds it; wait for it and rerun"
    return (f"the cache index cannot be used ({text}); "
            f"`pipeline verify --rebuild-index` rebuilds it from the shards")


def _hdf5_line(exc) -> str | None:
    text = str(exc)
    if not isinstance(exc, (OSError, KeyError, RuntimeError)) or not any(
            t in text for t in ("HDF5", "h5py", "file signature", "Unable to", "truncated file")):
        return None
    return f"a shard cannot be read ({text.splitlines()[0]}); `pipeline verify --fix` forgets damaged shards"


def _infra_line(exc) -> str | None:
    from .faults import InfraFault
    return str(exc) if isinstance(exc, InfraFault) else None


# Tried in order; the first that words the exception wins.
_DESCRIBERS = (
    _infra_line,
    storage_fault,
    scheduler_lost,
    _sqlite_line,
    _hdf5_line,
)


def describe(exc) -> str | None:
    """One line with a recovery hint for a known kind of fault, else None."""
    for words in _DESCRIBERS:
        line = words(exc)
        if line:
            return line
    return None


def configure_logs(debug):
    """Before a command's work: native and Dask logs only with --debug."""
    from .quiet import configure
    configure(debug)


def report(prog, exc, debug=False, interrupted=None) -> int:
    """Print one line for `exc` (the traceback too with --debug); exit
    status 1, or 130 for Ctrl-C (`interrupted`: what to say then)."""
    if isinstance(exc, KeyboardInterrupt):
        print(f"{prog}: {interrupted or INTERRUPTED}", file=sys.stderr)
        return 130
    if debug:
        import traceback
        traceback.print_exception(exc, file=sys.stderr)
    line = describe(exc) or (f"internal error: {type(exc).__name__}: {exc}"
                             + ("" if debug else " (rerun with --debug for the traceback)"))
    print(f"{prog}: error: {line}", file=sys.stderr)
    return 1


INTERRUPTED = f"interrupted; {RERUN}"


def add_debug_option(subparsers):
    """`--debug` on every subcommand: tracebacks and native libraries' logs."""
    for sub in subparsers.choices.values():
        sub.add_argument("--debug", action="store_true", help="show tracebacks and native libraries' logs")
