"""`make acceptance`: the full demo corpus end to end on a local Dask cluster."""
import pytest

from pipeline.demo import make_demo
from pipeline.store import verify
from tests.helpers import run_cli, summary

pytestmark = pytest.mark.acceptance


def test_full_demo_extract_rerun_verify(tmp_path, capsys):
    root = tmp_path / "IEMOCAP_full_release"
    truth = make_demo("iemocap", root, size="full", seed=0)
    n = len(truth["items"])
    cache = tmp_path / "cache"
    stages = "fbank,mfcc,opensmile@egemaps,words,phonemes"
    assert run_cli("extract", "--dataset", "iemocap", "--root", root, "--cache", cache,
                   "--stages", stages, "--workers", "2", "--quiet") == 0
    first = summary(capsys.readouterr().out)
    print(first)
    assert all(row["computed"] == n and row["failed"] == "0" for row in first.values())
    assert run_cli("extract", "--cache", cache, "--stages", stages, "--quiet") == 0
    again = summary(capsys.readouterr().out)
    assert all(row["computed"] == 0 and row["reused"] == n for row in again.values())
    report = verify(cache)
    assert report["corrupt"] == report["missing"] == report["unindexed"] == [] and report["ok"]
