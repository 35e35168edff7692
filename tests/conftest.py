"""Shared fixtures: a small IEMOCAP-layout demo corpus, generated once per test
session, and the truth its generator wrote (see pipeline/demo/iemocap.py)."""
import json

import pytest

from pipeline.demo import TRUTH_FILE, make_demo


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory):
    """demo_corpus(layout, folder): the root of a small demo corpus of that
    layout, written once per test session; treat as read-only."""
    made = {}

    def root_of(layout, folder):
        if layout not in made:
            made[layout] = tmp_path_factory.mktemp(layout) / folder
            make_demo(layout, made[layout], size="small", seed=0)
        return made[layout]
    return root_of


@pytest.fixture(scope="session")
def demo_root(demo_corpus):
    """Root of a small demo corpus (like IEMOCAP_full_release); treat as read-only."""
    return demo_corpus("iemocap", "IEMOCAP_full_release")


@pytest.fixture(scope="session")
def demo_truth(demo_root):
    """What the generator wrote into demo_root: per item code, cue, speaker,
    words with times, text; per dialog the video's face intervals; counts."""
    return json.loads((demo_root / TRUTH_FILE).read_text())


@pytest.fixture(scope="module")
def fbank_only(tmp_path_factory):
    """A fake cache of 20 IEMOCAP-like items with small fbank@tsin and mfcc outputs only."""
    from tests.heads_fake import fake_items, write_fake_cache
    d = tmp_path_factory.mktemp("fbank_only")
    write_fake_cache(d, fake_items(sessions=5, per_speaker=4), {"fbank@tsin": {"fbank": ("seq", 6)},
                                                              "mfcc": {"mfcc": ("seq", 4)}})
    return d
