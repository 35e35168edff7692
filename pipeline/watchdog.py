"""Waiting on Dask futures without waiting forever.

When every worker is gone, Dask keeps the tasks queued until one comes back,
and a finished future whose worker died before its result was fetched goes
back to waiting for a recomputation no one will do. Both would hang the
driver silently, so every wait here is cut into short slices, and between
them `Liveness.check` asks the scheduler how many workers are alive: none
for `timeout` seconds, or no answer at all, is an infrastructure fault
(ClusterLost), which stops the run like any other.
"""
from __future__ import annotations

import time

from .errors import scheduler_lost
from .faults import InfraFault

_SLICE_S = 1.0      # longest single wait, and the interval between liveness checks


class ClusterLost(InfraFault):
    """No live Dask worker for too long, or the scheduler is gone."""


class Liveness:
    def __init__(self, client, timeout):
        self.client = client
        self.timeout = timeout
        self.last_alive = self.checked = time.monotonic()

    def check(self):
        now = time.monotonic()
        if now - self.checked < _SLICE_S:
            return
        self.checked = now
        if self.workers():
            self.last_alive = now
        elif now - self.last_alive >= self.timeout:
            raise ClusterLost(f"no live Dask worker for {self.timeout:g} s (--worker-timeout); start workers "
                              "or check the cluster")

    def workers(self) -> int:
        try:
            return len(self.client.scheduler_info(n_workers=-1)["workers"])
        except Exception as e:   # whatever comm error a vanished scheduler raises
            raise ClusterLost(scheduler_lost(e) or f"lost the Dask scheduler ({type(e).__name__}: {e})") from e


def completed(pending, liveness):
    """The futures of `pending` (a distributed.as_completed) as they finish."""
    while not pending.is_empty():
        if pending.has_ready():
            yield next(pending)
            continue
        time.sleep(0.05)
        liveness.check()


def result(future, liveness):
    """`future.result()`, in slices, checking the cluster in between. A
    future cancelled because the scheduler went away says so."""
    while True:
        try:
            return future.result(timeout=_SLICE_S)
        except TimeoutError:
            liveness.check()
        except Exception as e:
            if scheduler_lost(e):       # the client's own link to the scheduler: the cluster is gone
                raise ClusterLost(scheduler_lost(e)) from e
            raise
