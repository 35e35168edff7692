"""Shared fixtures: a small IEMOCAP-layout demo corpus, generated once per test
session, and the truth its generator wrote (see pipeline/demo/iemocap.py)."""
import json

import pytest

from pipeline.demo import TRUTH_FILE, make_demo


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """Root of a small demo corpus (like IEMOCAP_full_release); treat as read-only."""
    root = tmp_path_factory.mktemp("demo") / "IEMOCAP_full_release"
    make_demo("iemocap", root, size="small", seed=0)
    return root


@pytest.fixture(scope="session")
def demo_truth(demo_root):
    """What the generator wrote into demo_root: per item code, cue, speaker,
    words with times, text; per dialog the video's face intervals; counts."""
    return json.loads((demo_root / TRUTH_FILE).read_text())
