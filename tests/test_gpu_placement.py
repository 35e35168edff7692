"""Local GPU placement (`pipeline extract --gpu-workers N`): on a local
cluster of two workers, one of which declares GPU=1, every neural-stage
task runs on that worker and no other task does. Here the "GPU" worker sees
no device (this machine has none), so the placement is what is tested;
bench/gpu_check.py checks the arrays on a real GPU."""
from __future__ import annotations

import pytest
import torch

from pipeline import placement
from tests.helpers import index_rows, make_table_corpus, run_cli

NEURAL = ("deepspectrum.weights=random", "deepspectrum.seed=0", "deepspectrum.arch=resnet18",
          "deepspectrum.image_size=64")


def test_neural_stages_run_on_the_gpu_worker_only(tmp_path, monkeypatch, capsys):
    corpus = make_table_corpus(tmp_path / "tbl", n=6)
    # One "GPU" worker whose CUDA_VISIBLE_DEVICES is empty: placement without a device.
    monkeypatch.setattr(placement, "gpu_placement", lambda n=None: [""] * (1 if n is None else n))
    sets = [a for s in NEURAL for a in ("--set", s)]
    rc = run_cli("extract", "--dataset", "table", "--root", corpus, "--cache", tmp_path / "cache", "--quiet",
                 "--stages", "fbank,mfcc,deepspectrum", *sets, "--batch", "2", "--workers", "2", "--gpu-workers", "1")
    out = capsys.readouterr().out
    assert rc == 0, out
    rows = index_rows(tmp_path / "cache", "SELECT c.stage, s.worker FROM shards s "
                                          "JOIN configs c ON c.config_id = s.config_id")
    workers = {}
    for stage, worker in rows:
        workers.setdefault(stage, set()).add(worker)
    assert workers == {"deepspectrum": {"gpu-0"}, "fbank": {"cpu-0"}, "mfcc": {"cpu-0"}}
    assert "deepspectrum: ran on gpu-0 (cpu)" in out and "fbank: ran on cpu-0 (cpu)" in out


def test_gpu_workers_without_cuda_is_refused(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    corpus = make_table_corpus(tmp_path / "tbl", n=1)
    rc = run_cli("extract", "--dataset", "table", "--root", corpus, "--cache", tmp_path / "cache", "--quiet",
                 "--stages", "fbank", "--gpu-workers", "1")
    assert rc == 2
    assert "--gpu-workers 1: torch sees no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "cache" / "shards").exists()


def test_default_is_one_gpu_worker_per_visible_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert placement.gpu_placement() == ["3", "5"]
    assert placement.gpu_placement(3) == ["3", "5", "3"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert placement.gpu_placement() == []


def test_each_gpu_worker_sees_its_device_only():
    import logging
    import os

    from distributed import Client
    cluster = placement.local_cluster(1, ["7", "3"], logging.ERROR)
    try:
        with Client(cluster) as client:
            seen = client.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))
            info = client.scheduler_info(n_workers=-1)["workers"]
            by_name = {w["name"]: (seen[addr], w["resources"]) for addr, w in info.items()}
    finally:
        cluster.close()
    assert by_name == {"gpu-0": ("7", {"GPU": 1}), "gpu-1": ("3", {"GPU": 1}), "cpu-0": ("", {"CPU": 1})}
