"""The Python API: extract from Python (the tally `pipeline extract` prints),
then train-ready batches through `Cache.torch_dataset`; the `--json` outputs
of `pipeline extract` and `pipeline status` parse and agree with it."""
import json

import numpy as np
import pytest
from torch.utils.data import DataLoader

from heads.data import collate
from pipeline import api
from pipeline.cli import main as pipeline

from helpers import make_table_corpus


@pytest.fixture(scope="module")
def cache(demo_root, tmp_path_factory):
    """(cache folder, tallies) of one API extraction of the small demo corpus."""
    folder = tmp_path_factory.mktemp("api") / "cache"
    tallies = api.extract(dataset="iemocap", root=demo_root, cache=folder, stages=["fbank@tsin", "mfcc"],
                          overrides={"mfcc": {"n_mfcc": 20}}, scheduler="sync")
    return folder, tallies


def test_extract_returns_the_tally(cache, demo_root):
    folder, tallies = cache
    n = tallies.n_items
    assert tallies.dataset == "iemocap" and n > 0
    failed = tallies["fbank@tsin"].failed
    assert tallies["fbank@tsin"].computed == n and tallies["mfcc"].computed == n
    assert failed == tallies["mfcc"].failed
    mfcc = api.Cache(folder).load("mfcc", overrides={"mfcc": {"n_mfcc": 20}})
    assert next(iter(mfcc.values())).arrays["mfcc"].shape[1] == 60      # 20 coefficients + 2 orders of deltas
    again = api.extract(cache=folder, stages=["fbank@tsin"], scheduler="sync")   # dataset and root: the cache's
    assert again["fbank@tsin"].computed == 0 and again["fbank@tsin"].reused == n - failed


def test_bad_options_raise_before_work(demo_root, tmp_path):
    from pipeline.registry import UnknownName
    from pipeline.stage import ConfigError
    with pytest.raises(ConfigError, match="unknown option 'nope'"):
        api.extract(dataset="iemocap", root=demo_root, cache=tmp_path / "c", stages=["mfcc"],
                    overrides={"mfcc": {"nope": 1}}, scheduler="sync")
    with pytest.raises(UnknownName, match="unknown stage 'fbnak'"):
        api.extract(dataset="iemocap", root=demo_root, cache=tmp_path / "c", stages=["fbnak"], scheduler="sync")
    assert not (tmp_path / "c").exists()


def test_torch_dataset_one_batch(cache):
    folder, _ = cache
    ds = api.Cache(folder).torch_dataset({"frames": "fbank@tsin/fbank", "ceps": "mfcc/mfcc"}, labelset="4class",
                                         overrides={"mfcc": {"n_mfcc": 20}})
    assert ds.data.classes == ["ang", "hap", "sad", "neu"] and len(ds) > 4
    batch = next(iter(DataLoader(ds, batch_size=4, collate_fn=collate)))
    assert batch["label"].shape == (4,) and int(batch["label"].max()) < 4
    assert batch["frames"].shape[0] == 4 and batch["frames"].shape[2] == ds.data.dims()["frames"] == 240
    assert batch["frames_mask"].shape == batch["frames"].shape[:2]
    assert batch["ceps"].shape[2] == 60                 # the overridden mfcc: 20 coefficients with deltas
    first = ds[0]
    length = int(batch["frames_mask"][0].sum())
    assert np.allclose(batch["frames"][0, :length].numpy(), first["frames"])
    with pytest.raises(ValueError, match="no array 'nope'"):
        api.Cache(folder).torch_dataset({"x": "fbank@tsin/nope"}, labelset="4class")


def test_json_outputs_parse(tmp_path, capsys):
    csv = make_table_corpus(tmp_path / "corpus", n=3)
    cache = tmp_path / "cache"
    assert pipeline(["extract", "--dataset", "table", "--root", str(csv), "--cache", str(cache),
                     "--stages", "fbank", "--scheduler", "sync", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dataset"] == "table" and out["items"] == 3
    assert out["stages"]["fbank"]["computed"] == 3 and out["stages"]["fbank"]["errors"] == []
    assert pipeline(["status", "--cache", str(cache), "--stages", "fbank,mfcc", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["stages"]["fbank"]["state"] == "up to date" and status["stages"]["fbank"]["counts"]["current"] == 3
    assert status["stages"]["mfcc"]["state"] == "missing" and status["stages"]["mfcc"]["counts"]["missing"] == 3
