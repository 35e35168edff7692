"""Native libraries' own log lines kept off the user's terminal unless --debug.

MediaPipe and TFLite write through absl straight to file descriptor 2
(`W0000 ... Sets FaceBlendshapesGraph acceleration to xnnpack`, `INFO: Created
TensorFlow Lite XNNPACK delegate`), from their own threads, while a task is
being created; no environment variable turns that off. So the creation runs
with fd 1 and 2 pointed at a scratch file (`native_quiet`). OpenCV's FFmpeg
has a switch, set by `configure`. Worker processes started later inherit the
environment, so `--debug` reaches them too.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile

DEBUG_VAR = "EMOCACHE_DEBUG"
_QUIET_ENV = {"OPENCV_LOG_LEVEL": "ERROR", "OPENCV_FFMPEG_LOGLEVEL": "-8"}   # -8: FFmpeg's AV_LOG_QUIET


def configure(debug: bool):
    """Called by a command before any work."""
    if debug:
        os.environ[DEBUG_VAR] = "1"
        return
    os.environ.pop(DEBUG_VAR, None)
    for name, value in _QUIET_ENV.items():
        os.environ.setdefault(name, value)


@contextlib.contextmanager
def native_quiet():
    """Drop what native code writes to stdout and stderr inside the block
    (with --debug, let it through)."""
    if os.environ.get(DEBUG_VAR):
        yield
        return
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield
    finally:
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)


def quiet_dask_logs():
    """Dask's own log lines in the driver (reconnection attempts, closed
    comms, with tracebacks) only with --debug: the run reports a lost
    cluster in one line of its own. asyncio's too: when the client closes
    on a lost cluster, its pending fetches end as "Task exception was never
    retrieved" tracebacks."""
    if os.environ.get(DEBUG_VAR):
        return
    import logging
    names = [n for n in logging.root.manager.loggerDict if n.startswith("distributed.")]
    for name in ["distributed", "asyncio", *names]:
        logging.getLogger(name).setLevel(logging.CRITICAL)
