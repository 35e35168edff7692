"""emocache on a real multi-process Dask cluster on loopback: same results as
a local run, a worker killed mid-run loses and duplicates nothing, neural
stages go to the worker that declares a GPU, and workers that cannot see the
shared paths stop the run before any work."""
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.api import Cache
from pipeline.stage import ConfigError
from pipeline.store import verify
from tests.cluster import kill_group, loopback_cluster
from tests.helpers import extract, index_rows, make_table_corpus, run_cli
from tests.test_kill_resume import N_ITEMS, _long_corpus

NEURAL = ("deepspectrum.weights=random", "deepspectrum.seed=0", "deepspectrum.arch=resnet18",
          "deepspectrum.image_size=64")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with loopback_cluster(tmp_path_factory.mktemp("cluster"),
                          workers=(("gpu-worker", {"GPU": 1}), ("cpu-worker", {}))) as (address, procs):
        yield address


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_table_corpus(tmp_path_factory.mktemp("tbl"), n=6)


def _sets(*pairs):
    return [a for p in pairs for a in ("--set", p)]


def test_cluster_run_equals_local_run(cluster, corpus, tmp_path):
    stages = ["--stages", "fbank,mfcc,deepspectrum", *_sets(*NEURAL), "--batch", "2"]
    assert extract(corpus, tmp_path / "local", *stages) == 0
    assert run_cli("extract", "--dataset", "table", "--root", corpus, "--cache", tmp_path / "remote",
                   "--scheduler", cluster, "--quiet", *stages) == 0
    key_sql = "SELECT key FROM entries ORDER BY key"
    assert index_rows(tmp_path / "local", key_sql) == index_rows(tmp_path / "remote", key_sql)
    over = {"deepspectrum": {"weights": "random", "seed": 0, "arch": "resnet18", "image_size": 64}}
    for label in ("fbank", "mfcc", "deepspectrum"):
        a = Cache(tmp_path / "local").load(label, overrides=over)
        b = Cache(tmp_path / "remote").load(label, overrides=over)
        for item in a:
            for name in a[item].arrays:
                np.testing.assert_allclose(a[item].arrays[name], b[item].arrays[name], rtol=1e-5, atol=1e-5)
    # placement: every neural-stage shard was written by the GPU worker
    workers = dict(index_rows(tmp_path / "remote",
                              "SELECT c.stage, group_concat(DISTINCT s.worker) FROM shards s "
                              "JOIN configs c ON c.config_id = s.config_id GROUP BY c.stage"))
    assert workers["deepspectrum"] == "gpu-worker"


def test_workers_must_see_shared_paths(cluster, tmp_path):
    from pipeline.runner import DaskExecutor
    with pytest.raises(ConfigError, match=r"worker .*: cannot see /no/such/corpus"):
        DaskExecutor(scheduler=cluster, shared_paths=[str(tmp_path), "/no/such/corpus"])


def test_worker_killed_mid_run(tmp_path):
    corpus = _long_corpus(tmp_path / "corpus")
    cache = tmp_path / "cache"
    with loopback_cluster(tmp_path / "cl") as (address, procs):
        exe = Path(sys.executable).with_name("pipeline")
        run = subprocess.Popen([str(exe), "extract", "--dataset", "table", "--root", str(corpus),
                                "--cache", str(cache), "--stages", "fbank,mfcc", "--scheduler", address,
                                "--batch", "2", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
        deadline = time.time() + 120
        while time.time() < deadline and run.poll() is None:
            if (cache / "shards").exists() and len(list((cache / "shards").rglob("*.h5"))) >= 4:
                break
            time.sleep(0.02)
        assert run.poll() is None, "the worker should be killed mid-run"
        kill_group(procs["w1"])
        out, _ = run.communicate(timeout=300)
        assert run.returncode == 0, out
    rows = index_rows(cache, "SELECT key, COUNT(*) FROM entries GROUP BY key")
    assert len(rows) == 2 * N_ITEMS and all(n == 1 for _, n in rows)
    report = verify(cache)
    assert report["corrupt"] == report["missing"] == report["unindexed"] == []
    assert not list((cache / "shards").rglob("*.tmp-*"))
    for label in ("fbank", "mfcc"):
        feats = Cache(cache).load(label)
        assert len(feats) == N_ITEMS and all(len(f.arrays[label]) > 100 for f in feats.values())
