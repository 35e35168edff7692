"""Checks on a corpus media path before anything opens it.

A path in a manifest is data: it may name a directory, a FIFO, a device or a
file this user cannot read. Opening a FIFO blocks until some writer appears,
so hashing or decoding one would hang the run; `stat` never blocks, so every
path is looked at with it first, and only a regular, readable file is opened.
"""
from __future__ import annotations

import os
import stat
import subprocess

from .stage import ItemError

_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def media_problem(path) -> str | None:
    """Why `path` cannot be read as a media file ("not found", "is a
    directory", ...), or None for a regular file this process may read."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "not found"
    except OSError as e:
        return f"cannot be looked at ({e.strerror})"
    if stat.S_ISDIR(st.st_mode):
        return "is a directory"
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
        return f"is {kind}, not a regular file"
    if not os.access(path, os.R_OK):
        return "is not readable (permission denied)"
    return None


def require_media_file(path, what="media"):
    """Raise the item's ItemError unless `path` is a regular, readable file."""
    problem = media_problem(path)
    if problem:
        raise ItemError(f"{what} file {problem}: {path}")


def lacks_stream(path, kind) -> bool:
    """True when ffprobe reads the container and finds no stream of `kind`
    ("a": audio, "v": video), so a decoder's failure can say what is wrong."""
    command = ["ffprobe", "-v", "error", "-select_streams", kind, "-show_entries", "stream=index",
               "-of", "csv=p=0", str(path)]
    try:
        probe = subprocess.run(command, capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0 and not probe.stdout.strip()
