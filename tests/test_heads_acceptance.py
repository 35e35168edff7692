"""Acceptance (`make acceptance`): TSIN --preset demo, leave one session out on
the full demo corpus, reaches UA >= 0.9 on 4 classes, and each single-modality
ablation scores at least 0.1 UA lower (the demo corpus puts the emotion in the
wording, the prosody, or both, so neither modality alone can do it)."""
from __future__ import annotations

import json

import pytest

from heads.cli import main as heads
from pipeline.cli import main as pipeline


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory):
    base = tmp_path_factory.mktemp("heads_acceptance")
    root = base / "IEMOCAP_full_release"
    assert pipeline(["demo-corpus", "--out", str(root), "--size", "full", "--no-video"]) == 0
    assert pipeline(["extract", "--dataset", "iemocap", "--root", str(root), "--cache", str(base / "cache"),
                     "--for", "tsin", "--scheduler", "sync", "--quiet"]) == 0
    return base


def _train(base, variant):
    out = base / f"run-{variant}"
    rc = heads(["train", "--model", "tsin", "--cache", str(base / "cache"), "--protocol", "session",
                "--preset", "demo", "--set", f"ablation={variant}", "--out", str(out), "--quiet"])
    assert rc == 0
    return json.loads((out / "results.json").read_text())


@pytest.mark.acceptance
def test_tsin_demo_session_protocol(demo_cache):
    full = _train(demo_cache, "full")
    assert len(full["protocol"]["folds"]) == 5 and all(r["ok"] for r in full["leakage_check"])
    assert full["classes"] == ["ang", "hap", "sad", "neu"]
    ua = full["overall"]["ua"]["mean"]
    assert ua >= 0.9, f"TSIN demo UA {ua:.3f} < 0.9"
    for variant in ("speech_only", "text_only"):
        other = _train(demo_cache, variant)["overall"]["ua"]["mean"]
        assert other <= ua - 0.1, f"{variant} UA {other:.3f} is not 0.1 below the full model's {ua:.3f}"
