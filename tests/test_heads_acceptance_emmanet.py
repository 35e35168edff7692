"""Acceptance (`make acceptance`): EMMA-Net --preset demo on the full Aff-Wild2
demo corpus, official split (the validation videos are the test part, the
model is the last epoch's), reaches a per-frame mean F1 over the 8
expressions >= 0.8 on the validation videos.

The demo's DeepSpectrum stream has random weights (`--for emmanet_demo`):
ImageNet weights cannot be downloaded here. The demo puts the expression in
the face's shape, so the face stream carries it."""
from __future__ import annotations

import json

import pytest

from heads.cli import main as heads
from pipeline.cli import main as pipeline


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory):
    base = tmp_path_factory.mktemp("emmanet_acceptance")
    root = base / "Aff-Wild2"
    assert pipeline(["demo-corpus", "--layout", "affwild2", "--out", str(root), "--size", "full"]) == 0
    assert pipeline(["extract", "--dataset", "affwild2", "--root", str(root), "--cache", str(base / "cache"),
                     "--for", "emmanet_demo", "--scheduler", "sync", "--quiet"]) == 0
    return base


@pytest.mark.acceptance
def test_emmanet_demo_official_split(demo_cache):
    out = demo_cache / "run"
    rc = heads(["train", "--model", "emmanet", "--cache", str(demo_cache / "cache"), "--protocol", "official",
                "--preset", "demo", "--out", str(out), "--quiet"])
    assert rc == 0
    record = json.loads((out / "results.json").read_text())
    assert record["classes"] == ["Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise",
                                 "Other"]
    (run,) = record["runs"]
    assert run["sizes"] == {"train": 10, "dev": 0, "test": 4} and not record["dropped_items"]
    assert all(r["ok"] for r in record["leakage_check"])
    # Every labelled frame of the validation videos is predicted once.
    assert sum(run["metrics"]["support"].values()) == len(run["predictions"])
    f1 = record["overall"]["mf1_all"]["mean"]
    assert f1 >= 0.8, f"EMMA-Net demo mean F1 over the 8 expressions {f1:.3f} < 0.8"
