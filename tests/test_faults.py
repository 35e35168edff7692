"""Infrastructure faults are not bad inputs: out of memory halves the batch
until it fits, other faults (CUDA errors, a full disk, a model that does not
load, a lost worker) stop the run with exit 3 and record nothing against any
item, so the rerun computes the rest; an unexpected error in a batched stage
is narrowed down to the item that raises it."""
from __future__ import annotations

import errno
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from pipeline import runner
from pipeline.faults import INFRA, OOM, InfraFault, fault_kind
from pipeline.stage import Result, Stage, Vec
from pipeline.stages import STAGES, load_all
from tests.helpers import extract, index_rows, make_table_corpus, summary

N = 10


@dataclass(frozen=True)
class FaultyConfig:
    mode: str = "none"      # oom | bug:<item> | cuda:<item> | disk:<item> | load
    offset: float = 0.0


class Faulty(Stage):
    """A batched stage (the length of the item's text) that fails on demand."""
    name = "faulty"
    Config = FaultyConfig
    reads = ("text",)
    batched = True
    batch_items = 16
    runtime_options = ("mode",)         # a fault is not the output's: the rerun reuses the keys
    batch_sizes: list = []

    def setup(self):
        if self.config.mode == "load":
            raise OSError(errno.ENOENT, "No such file or directory", "/models/missing/model.safetensors")
        return {}

    def compute_batch(self, ctxs):
        Faulty.batch_sizes.append(len(ctxs))
        kind, _, item = self.config.mode.partition(":")
        ids = [c.item.id for c in ctxs]
        if kind == "oom" and len(ctxs) > 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if item in ids:
            raise {"bug": ValueError("could not broadcast input array"),
                   "cuda": RuntimeError("CUDA error: an illegal memory access was encountered"),
                   "disk": OSError(errno.ENOSPC, "No space left on device")}[kind]
        return [Result({"n": Vec(np.array([len(c.item.text) + self.config.offset], dtype=np.float32))})
                for c in ctxs]


@pytest.fixture(autouse=True)
def faulty(monkeypatch):
    load_all()
    monkeypatch.setitem(STAGES, "faulty", Faulty)
    monkeypatch.setattr(runner, "RETRY_PAUSE_S", 0.0)
    runner._STAGE_CACHE.clear()
    Faulty.batch_sizes = []
    yield
    runner._STAGE_CACHE.clear()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_table_corpus(tmp_path_factory.mktemp("tbl"), n=N)


def _run(corpus, cache, mode, *extra):
    return extract(corpus, cache, "--stages", "faulty", "--set", f"faulty.mode={mode}", *extra)


def _errors(cache):
    return index_rows(cache, "SELECT item_id, message FROM errors")


def _computed(cache):
    return sorted(i for (i,) in index_rows(cache, "SELECT item_id FROM entries"))


def test_out_of_memory_halves_the_batch_until_it_fits(corpus, tmp_path, capsys):
    assert _run(corpus, tmp_path / "c", "oom") == 0
    assert summary(capsys.readouterr().out)["faulty"]["computed"] == N
    assert _errors(tmp_path / "c") == [] and len(_computed(tmp_path / "c")) == N
    assert Faulty.batch_sizes[0] == N and max(s for s in Faulty.batch_sizes[1:]) <= 5


@pytest.mark.parametrize("mode,message", [
    ("cuda:u5", "RuntimeError: CUDA error: an illegal memory access"),
    ("disk:u5", "No space left on device"),
    ("load", "faulty: its model failed to load: FileNotFoundError"),
])
def test_infrastructure_fault_stops_the_run_and_blames_no_item(corpus, tmp_path, capsys, mode, message):
    cache = tmp_path / "c"
    assert _run(corpus, cache, mode, "--batch", "2") == 3
    out, err = capsys.readouterr()
    assert "infrastructure fault, not an input problem" in err and message in err
    assert "run the same command again to continue" in err
    assert _errors(cache) == []                         # nothing recorded against any item
    done = _computed(cache)
    assert summary(out)["faulty"]["computed"] == len(done)
    assert f"faulty: {N - len(done)} item(s) not computed" in err
    assert len(done) == (0 if mode == "load" else 4)    # the tasks before the fault (u0-u3) are kept
    calls = len(Faulty.batch_sizes)
    assert calls == (0 if mode == "load" else 2 + runner.RETRIES + 1)   # the faulty task was tried 3 times
    # Fixed, the same command goes on from there.
    assert _run(corpus, cache, "none", "--batch", "2") == 0
    rows = summary(capsys.readouterr().out)["faulty"]
    assert rows["computed"] == N - len(done) and rows["reused"] == len(done) and rows["failed"] == "0"
    assert len(_computed(cache)) == N and _errors(cache) == []


def test_unexpected_error_fails_only_its_item(corpus, tmp_path, capsys):
    cache = tmp_path / "c"
    assert _run(corpus, cache, "bug:u3") == 0
    rows = summary(capsys.readouterr().out)["faulty"]
    assert rows["computed"] == N - 1 and rows["failed"] == "1"
    ((item, message),) = _errors(cache)
    assert item == "u3" and "ValueError: could not broadcast input array" in message
    assert _computed(cache) == sorted(f"u{i}" for i in range(N) if i != 3)


def test_lost_worker_stops_the_run(tmp_path):
    """A task the cluster could not finish (distributed's KilledWorker, after
    its own retries on other workers) stops the run; its items are not failed."""
    from distributed.scheduler import KilledWorker

    class _Worker:
        address = "tcp://127.0.0.1:4000"
    payload = {"specs": [{"label": "faulty"}], "items": ['{"id": "u0"}', '{"id": "u1"}'],
               "keys": {"faulty": ["k0", "k1"]}}

    class LostExecutor:
        def map_unordered(self, payloads):
            for p in payloads:
                yield p, None, KilledWorker("execute_task-abc", _Worker(), 3)

    tallies = {"faulty": runner.StageTally(computed=4)}
    with pytest.raises(InfraFault, match="KilledWorker.*faulty: 4 item") as caught:
        runner.run(None, [[payload, dict(payload)]], tallies, LostExecutor(), progress=False)
    t = caught.value.tallies["faulty"]
    assert (t.computed, t.failed, t.not_done, t.messages) == (0, 0, 4, [])   # the second task never started


@pytest.mark.parametrize("error,kind", [
    (torch.cuda.OutOfMemoryError("CUDA out of memory"), OOM),
    (MemoryError(), OOM),
    (RuntimeError("cuDNN error: CUDNN_STATUS_EXECUTION_FAILED"), INFRA),
    (OSError(errno.EROFS, "Read-only file system"), INFRA),
    (OSError(errno.ENOENT, "No such file or directory", "/cache/shards/ab/x.h5"), INFRA),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "/corpus/a.wav"), None),
    (ValueError("bad value"), None),
])
def test_fault_kinds(error, kind):
    assert fault_kind(error, "/cache") == kind
