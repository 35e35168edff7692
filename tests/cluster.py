"""A real Dask cluster on loopback for tests: `dask scheduler` + named workers
as separate processes, always torn down (process groups killed)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

DASK = str(Path(sys.executable).with_name("dask"))


@contextmanager
def loopback_cluster(tmp, workers=(("w0", {}), ("w1", {})), timeout=90):
    """Yields (address, {name: Popen}). `workers` are (name, resources) pairs."""
    tmp = Path(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    sched_file = tmp / "scheduler.json"
    procs = {}
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    try:
        procs["scheduler"] = _spawn([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0",
                                     "--no-dashboard", "--scheduler-file", str(sched_file)], tmp / "scheduler.log", env)
        _wait(lambda: sched_file.exists() and sched_file.stat().st_size > 0, timeout, "scheduler")
        address = json.loads(sched_file.read_text())["address"]
        for name, resources in workers:
            cmd = [DASK, "worker", address, "--name", name, "--nthreads", "1", "--nworkers", "1",
                   "--no-dashboard", "--host", "127.0.0.1", "--local-directory", str(tmp / name)]
            if resources:
                cmd += ["--resources", " ".join(f"{k}={v}" for k, v in resources.items())]
            procs[name] = _spawn(cmd, tmp / f"{name}.log", env)
        _wait_workers(address, len(workers), timeout)
        yield address, procs
    finally:
        for p in procs.values():
            kill_group(p)


def kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def _spawn(cmd, log, env):
    return subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)


def _wait(cond, timeout, what):
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            raise TimeoutError(f"{what} did not start within {timeout} s")
        time.sleep(0.1)


def _wait_workers(address, n, timeout):
    from distributed import Client
    with Client(address, timeout=timeout) as c:
        c.wait_for_workers(n, timeout=timeout)
