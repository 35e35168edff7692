"""One clear line per fault: a full or read-only cache, a cluster without
workers or scheduler, SQLite/HDF5/Dask errors, Ctrl-C. Each stops with one
line and a non-zero exit, keeps what was complete, and a rerun finishes the
work. (Faults while computing are pipeline/faults.py's, tested in
test_faults.py; here: writes, the cluster, what reaches the command.)"""
from __future__ import annotations

import errno
import pathlib
import sqlite3

import pytest

import pipeline.shard as shard
from pipeline import runner
from pipeline.errors import describe
from tests.helpers import extract, make_table_corpus, run_cli, summary


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_table_corpus(tmp_path_factory.mktemp("faults"), n=6)


def _failing_writes(monkeypatch, fail_at, code):
    """Shard writes fail from the `fail_at`-th on with `code`, after the
    temporary file was written (as when the final flush finds the disk full)."""
    real, calls = shard._write_file, []

    def write(tmp, *args):
        calls.append(tmp)
        real(tmp, *args)
        if len(calls) >= fail_at:
            raise OSError(code, errno.errorcode[code] if code not in _TEXT else _TEXT[code], str(tmp))
    monkeypatch.setattr(shard, "_write_file", write)
    return calls


_TEXT = {errno.ENOSPC: "No space left on device", errno.EROFS: "Read-only file system"}


def _headlines(err):
    return [line for line in err.splitlines() if line.startswith("pipeline:")]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_full_or_read_only_cache_stops_the_run_with_one_line(corpus, tmp_path, capsys, monkeypatch, code):
    cache = tmp_path / "cache"
    monkeypatch.setattr(runner, "RETRY_PAUSE_S", 0.0)
    # 3 tasks of 2 items, each writing an fbank then an mfcc shard: the 4th write
    # (task 2's mfcc) fails after task 2's fbank shard was written, and so does every later one.
    _failing_writes(monkeypatch, 4, code)
    assert extract(corpus, cache, "--stages", "fbank,mfcc", "--batch", "2") == 3
    out, err = capsys.readouterr()
    lines = _headlines(err)
    assert len(lines) == 1 and _TEXT[code] in lines[0] and "Traceback" not in err, err
    rows = summary(out)
    assert (rows["fbank"]["computed"], rows["fbank"]["failed"]) == (2, "0")     # what the index holds
    assert (rows["mfcc"]["computed"], rows["mfcc"]["failed"]) == (2, "0")
    assert not [p for p in cache.rglob("*") if shard.TMP_MARK in p.name or p.suffix == ".tmp"]

    monkeypatch.undo()
    assert extract(corpus, cache, "--stages", "fbank,mfcc", "--batch", "2") == 0
    rows = summary(capsys.readouterr().out)
    # task 2's fbank shard, written before its mfcc failed, is adopted and reused
    assert (rows["fbank"]["computed"], rows["fbank"]["reused"]) == (2, 4)
    assert (rows["mfcc"]["computed"], rows["mfcc"]["reused"]) == (4, 2)


def test_a_full_disk_while_writing_the_manifest_leaves_no_temporary_file(corpus, tmp_path, capsys, monkeypatch):
    cache = tmp_path / "cache"
    real = pathlib.Path.write_text

    def write_text(self, text, *args, **kwargs):
        if self.name.endswith(".tmp"):
            real(self, text[:len(text) // 2], *args, **kwargs)
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, text, *args, **kwargs)
    monkeypatch.setattr(pathlib.Path, "write_text", write_text)
    assert extract(corpus, cache, "--stages", "fbank") == 1
    lines = _headlines(capsys.readouterr().err)
    assert len(lines) == 1 and "the disk holding the cache is full" in lines[0]
    assert "Traceback" not in lines[0]
    assert not list((cache / "manifests").glob("*.tmp"))


def test_a_cluster_without_live_workers_stops_with_a_message(corpus, tmp_path, capsys):
    from distributed import LocalCluster
    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster:
        rc = run_cli("extract", "--dataset", "table", "--root", corpus, "--cache", tmp_path / "cache",
                     "--stages", "fbank", "--quiet", "--scheduler", cluster.scheduler_address,
                     "--worker-timeout", "2")
    assert rc == 3
    lines = _headlines(capsys.readouterr().err)
    assert len(lines) == 1 and "no live Dask worker for 2 s" in lines[0], lines


def test_library_errors_are_one_line_with_a_hint(tmp_path):
    import h5py
    assert "another process holds it" in describe(sqlite3.OperationalError("database is locked"))
    assert "the cache is full" in describe(sqlite3.OperationalError("database or disk is full"))
    garbage = tmp_path / "x.h5"
    garbage.write_bytes(b"not hdf5 at all" * 10)
    with pytest.raises(OSError) as caught:
        h5py.File(garbage, "r")
    assert "pipeline verify --fix" in describe(caught.value)
    from distributed.client import FutureCancelledError
    assert "lost the Dask scheduler" in describe(FutureCancelledError("x", "scheduler-connection-lost"))
    assert describe(ValueError("a bug")) is None


def test_tracebacks_only_with_debug(corpus, tmp_path, capsys, monkeypatch):
    import pipeline.plan as plan

    def crash(*args, **kwargs):
        raise sqlite3.DatabaseError("file is not a database")
    monkeypatch.setattr(plan, "make_plan", crash)
    assert extract(corpus, tmp_path / "cache", "--stages", "fbank") == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "pipeline: error: the cache index cannot be used (file is not a database); "
        "`pipeline verify --rebuild-index` rebuilds it from the shards"]
    assert extract(corpus, tmp_path / "cache", "--stages", "fbank", "--debug") == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.strip().endswith("from the shards")


def test_ctrl_c_on_a_dask_run_prints_one_line(demo_root, tmp_path, capsys):
    """SIGINT to the whole process group, as a terminal's Ctrl-C sends it,
    once the first shard is written: one line, exit 130, shards kept."""
    import os
    import signal
    import subprocess
    import sys
    import time
    cache = tmp_path / "cache"
    stages = ["--stages", "fbank,deepspectrum", "--set", "deepspectrum.weights=random", "--set", "deepspectrum.seed=0",
              "--batch", "1"]
    code = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "from pipeline.cli import main; sys.exit(main())")
    proc = subprocess.Popen([sys.executable, "-c", code, "extract", "--dataset", "iemocap", "--root", str(demo_root),
                             "--cache", str(cache), "--workers", "1", "--quiet", *stages],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not list(cache.glob("shards/*/*/*.h5")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        os.killpg(proc.pid, signal.SIGINT)
        err = proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130
    assert err.strip().splitlines() == ["pipeline: interrupted; complete shards are kept, rerun to continue"], err
    assert extract(demo_root, cache, "--stages", "fbank", dataset="iemocap") == 0
    assert summary(capsys.readouterr().out)["fbank"]["reused"] >= 1


def test_native_logs_only_with_debug(capfd, monkeypatch):
    """MediaPipe/TFLite write their set-up lines (W0000 ..., INFO: Created
    TensorFlow Lite XNNPACK delegate) straight to fd 2: shown with --debug only."""
    from dataclasses import replace

    from pipeline.landmarks import task_resources
    from pipeline.stages.face import Config, _make_landmarker
    res = task_resources(replace(Config(), running_mode="video"), "face_landmarker.task", "face", _make_landmarker)
    monkeypatch.setenv("EMOCACHE_DEBUG", "1")
    res["make_task"]().close()
    # TFLite's "Created ... XNNPACK delegate" comes once per process; the graph's own W0000 lines every time.
    assert "face_landmarker_graph" in capfd.readouterr().err
    monkeypatch.delenv("EMOCACHE_DEBUG")
    res["make_task"]().close()
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize("victim,message", [
    ("w0", "no live Dask worker for 3 s"),
    ("scheduler", "lost the Dask scheduler"),
])
def test_a_cluster_lost_mid_run_stops_with_one_line(tmp_path, victim, message):
    """The only worker (results it held are lost with it), or the scheduler,
    is killed while the run goes on: the run stops with one line (after
    --worker-timeout for the worker) and keeps what was complete."""
    import subprocess
    import sys
    import time

    from tests.cluster import kill_group, loopback_cluster
    from tests.test_kill_resume import _long_corpus
    corpus = _long_corpus(tmp_path / "corpus")
    cache = tmp_path / "cache"
    with loopback_cluster(tmp_path / "cl", workers=(("w0", {}),)) as (address, procs):
        run = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "extract", "--dataset", "table",
                                "--root", str(corpus), "--cache", str(cache), "--stages", "fbank,mfcc",
                                "--scheduler", address, "--batch", "2", "--quiet", "--worker-timeout", "3"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while time.time() < deadline and run.poll() is None and len(list(cache.glob("shards/*/*/*.h5"))) < 4:
            time.sleep(0.02)
        assert run.poll() is None, "the worker should be killed mid-run"
        kill_group(procs[victim])
        out, err = run.communicate(timeout=120)
    assert run.returncode == 3, err
    lines = _headlines(err)
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err
    assert summary(out)["fbank"]["computed"] >= 2


def test_a_full_disk_under_the_index_stops_the_run_with_one_line(corpus, tmp_path, capsys, monkeypatch):
    from pipeline.store import Index

    def full(self, receipt):
        raise sqlite3.OperationalError("database or disk is full")
    monkeypatch.setattr(Index, "commit_receipt", full)
    assert extract(corpus, tmp_path / "cache", "--stages", "fbank") == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["pipeline: error: the disk holding the cache is full; free some space, "
                                        "then rerun: complete shards are kept"], err
