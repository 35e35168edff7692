"""Acceptance (`make acceptance`): EMMA-Net --preset demo on the full Aff-Wild2
demo corpus, official split (the validation videos are the test part, the
model is the last epoch's), reaches a per-frame mean F1 over the 8
expressions >= 0.8 on the validation videos.

The demo's DeepSpectrum stream has random weights (`--for emmanet --preset demo`):
ImageNet weights cannot be downloaded here. The demo puts the expression in
the face's shape, so the face stream carries it."""
from __future__ import annotations

import pytest

from tests.helpers import demo_cache, train_run


@pytest.mark.acceptance
def test_emmanet_demo_official_split(tmp_path_factory):
    cache = demo_cache(tmp_path_factory.mktemp("emmanet_acceptance"), "affwild2", "Aff-Wild2", "emmanet")
    record = train_run(cache, cache.parent / "run", "emmanet", protocol="official")
    assert record["classes"] == ["Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise",
                                 "Other"]
    (run,) = record["runs"]
    assert run["sizes"] == {"train": 10, "dev": 0, "test": 4} and not record["dropped_items"]
    assert all(r["ok"] for r in record["leakage_check"])
    # Every labelled frame of the validation videos is predicted once.
    assert sum(run["metrics"]["support"].values()) == len(run["predictions"])
    f1 = record["overall"]["mf1_all"]["mean"]
    assert f1 >= 0.8, f"EMMA-Net demo mean F1 over the 8 expressions {f1:.3f} < 0.8"
