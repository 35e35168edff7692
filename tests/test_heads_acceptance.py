"""Acceptance (`make acceptance`): TSIN --preset demo, leave one session out on
the full demo corpus, reaches UA >= 0.9 on 4 classes, and each single-modality
ablation scores at least 0.1 UA lower (the demo corpus puts the emotion in the
wording, the prosody, or both, so neither modality alone can do it)."""
from __future__ import annotations

import pytest

from tests.helpers import demo_cache, train_run


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return demo_cache(tmp_path_factory.mktemp("heads_acceptance"), "iemocap", "IEMOCAP_full_release", "tsin",
                      "--no-video")


def _train(cache, variant):
    return train_run(cache, cache.parent / f"run-{variant}", "tsin", "--set", f"ablation={variant}")


@pytest.mark.acceptance
def test_tsin_demo_session_protocol(cache):
    full = _train(cache, "full")
    assert len(full["protocol"]["folds"]) == 5 and all(r["ok"] for r in full["leakage_check"])
    assert full["classes"] == ["ang", "hap", "sad", "neu"]
    ua = full["overall"]["ua"]["mean"]
    assert ua >= 0.9, f"TSIN demo UA {ua:.3f} < 0.9"
    for variant in ("speech_only", "text_only"):
        other = _train(cache, variant)["overall"]["ua"]["mean"]
        assert other <= ua - 0.1, f"{variant} UA {other:.3f} is not 0.1 below the full model's {ua:.3f}"
