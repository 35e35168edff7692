"""Acceptance (`make acceptance`): HarmoFusion's multilevel transformer and
its multigranular model, --preset demo, leave one session out on the full
demo corpus, reach UA >= 0.9 on 4 classes."""
from __future__ import annotations

import json

import pytest

from heads.cli import main as heads
from pipeline.cli import main as pipeline


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory):
    base = tmp_path_factory.mktemp("heads_acceptance_multilevel")
    root = base / "IEMOCAP_full_release"
    assert pipeline(["demo-corpus", "--out", str(root), "--size", "full", "--no-video"]) == 0
    assert pipeline(["extract", "--dataset", "iemocap", "--root", str(root), "--cache", str(base / "cache"),
                     "--for", "harmofusion", "--scheduler", "sync", "--quiet"]) == 0
    return base


@pytest.mark.acceptance
@pytest.mark.parametrize("model", ["harmofusion", "harmofusion_mg"])
def test_multilevel_demo_session_protocol(demo_cache, model):
    out = demo_cache / f"run-{model}"
    rc = heads(["train", "--model", model, "--cache", str(demo_cache / "cache"), "--protocol", "session",
                "--preset", "demo", "--out", str(out), "--quiet"])
    assert rc == 0
    result = json.loads((out / "results.json").read_text())
    assert len(result["protocol"]["folds"]) == 5 and all(r["ok"] for r in result["leakage_check"])
    assert result["classes"] == ["ang", "hap", "sad", "neu"]
    ua = result["overall"]["ua"]["mean"]
    assert ua >= 0.9, f"{model} demo UA {ua:.3f} < 0.9"
