"""Acceptance (`make acceptance`): HFF --preset demo, leave one session out
on the full IEMOCAP demo corpus, reaches UA >= 0.9 on 4 classes; every
switch trains end to end (a few epochs each), and so does the paper's own
split (protocol `hff`, 6 classes).

The demo's visual stream has random ResNet-18 weights at 2 frames per
second (`--for hff --preset demo`): ImageNet weights cannot be downloaded here, and
the demo videos carry no emotion anyway (speech and text do)."""
from __future__ import annotations

import json

import pytest

from heads.cli import main as heads
from heads.models.hff import SWITCHES
from pipeline.cli import main as pipeline


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory):
    base = tmp_path_factory.mktemp("hff_acceptance")
    root = base / "IEMOCAP_full_release"
    assert pipeline(["demo-corpus", "--out", str(root), "--size", "full"]) == 0
    assert pipeline(["extract", "--dataset", "iemocap", "--root", str(root), "--cache", str(base / "cache"),
                     "--for", "hff", "--preset", "demo", "--scheduler", "sync", "--quiet"]) == 0
    return base


def _train(base, name, *args, protocol="session"):
    out = base / f"run-{name}"
    rc = heads(["train", "--model", "hff", "--cache", str(base / "cache"), "--protocol", protocol,
                "--preset", "demo", "--out", str(out), "--quiet", *args])
    assert rc == 0
    return json.loads((out / "results.json").read_text())


@pytest.mark.acceptance
def test_hff_demo_session_protocol(demo_cache):
    full = _train(demo_cache, "full")
    assert len(full["protocol"]["folds"]) == 5 and all(r["ok"] for r in full["leakage_check"])
    assert full["classes"] == ["ang", "hap", "sad", "neu"] and full["variant"] == "full"
    ua = full["overall"]["ua"]["mean"]
    assert ua >= 0.9, f"HFF demo UA {ua:.3f} < 0.9"


@pytest.mark.acceptance
@pytest.mark.parametrize("switch", SWITCHES)
def test_hff_every_switch_trains(demo_cache, switch):
    record = _train(demo_cache, switch, "--set", f"{switch}=true", "--set", "epochs=2")
    assert record["variant"] == switch and len(record["runs"]) == 5


@pytest.mark.acceptance
def test_hff_paper_split_six_classes(demo_cache):
    record = _train(demo_cache, "hff-split", "--set", "labelset=6class", "--set", "epochs=2", protocol="hff")
    (fold,) = record["protocol"]["folds"]
    assert record["classes"] == ["ang", "hap", "exc", "sad", "fru", "neu"]
    assert fold["name"] == "session=Ses05" and fold["dev"] > 0 and all(r["ok"] for r in record["leakage_check"])
    assert "dialogs train/dev disjoint" in record["leakage_check"][0]["checks"]
