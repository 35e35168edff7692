"""The shared word segmentation (pipeline/text.py) and the `words` stage."""
import math

import numpy as np
import pytest

from pipeline.context import ItemContext
from pipeline.manifest import Item, Word
from pipeline.stages.words import Config, Words
from pipeline.text import empty_reason, match_times, segment


def words_of(text):
    return list(segment(text).words)


@pytest.mark.parametrize("text, expected", [
    ("Excuse me.", ["excuse", "me"]),
    ("I don\u2019t know -- maybe [LAUGHTER] co-operate?", ["i", "don't", "know", "maybe", "co-operate"]),
    ("What's 3.5 times NASA's budget?!", ["what's", "3.5", "times", "nasa's", "budget"]),
    ("'quoted' words-", ["quoted", "words"]),
    ("yes[BREATHING]no", ["yes", "no"]),
    ("rock'n'roll 1,000 end.", ["rock'n'roll", "1", "000", "end"]),
    ("Caf\u00e9 na\u00efve \u00fcber", ["cafe", "naive", "uber"]),
])
def test_segmentation_rules(text, expected):
    assert words_of(text) == expected


def test_spans_point_into_the_original_text():
    text = "[LAUGHTER] Caf\u00e9 \u4f60\u597d don\u2019t-stop!"
    seg = segment(text)
    assert seg.words == ("cafe", "don't-stop")
    assert [text[a:b] for a, b in seg.spans] == ["Caf\u00e9", "don\u2019t-stop"]
    assert seg.dropped == 2 and seg.bracketed == 1


@pytest.mark.parametrize("text, reason", [
    (None, "no transcript"),
    ("", "empty transcript"),
    ("   ", "empty transcript"),
    ("[LAUGHTER] [BREATHING].", "only bracketed tokens"),
    ("\u4f60\u597d\u3002", "no ASCII-foldable words (non-ASCII text)"),
    ("-- ... !", "no words (punctuation only)"),
    ("hello", None),
])
def test_empty_reasons(text, reason):
    assert empty_reason(text, segment(text)) == reason


def test_match_times_handles_variants_markers_and_dropped_words():
    words = ["do", "you", "want", "to", "co-operate", "any", "way", "really", "now"]
    aligned = [("<s>", 0.0, 0.1), ("DO", 0.1, 0.2), ("YOU", 0.2, 0.3), ("<sil>", 0.3, 0.4),
               ("WANT(2)", 0.4, 0.5), ("TO", 0.5, 0.6), ("CO", 0.6, 0.7), ("OPERATE", 0.7, 0.9),
               ("ANYWAY", 0.9, 1.1), ("++BREATH++", 1.1, 1.2), ("UM", 1.2, 1.3),
               ("NOW", 1.4, 1.6), ("</s>", 1.6, 1.7)]
    m = match_times(words, aligned)
    assert m.start[:5] == [0.1, 0.2, 0.4, 0.5, 0.6]
    assert m.end[4] == 0.9                              # CO + OPERATE joined
    assert m.start[5] == m.start[6] == 0.9 and m.end[6] == 1.1   # any way = ANYWAY
    assert math.isnan(m.start[7]) and math.isnan(m.end[7])      # the aligner dropped "really"
    assert (m.start[8], m.end[8]) == (1.4, 1.6)
    assert m.extra == 1                                 # UM: an aligner word nobody took


def test_match_times_on_unrelated_words_gives_no_times():
    m = match_times(["hello", "there"], [("GOODBYE", 0.0, 1.0)])
    assert all(math.isnan(t) for t in m.start) and m.extra == 1


def run_words(item, **cfg):
    return Words(Config(**cfg)).compute(ItemContext(item, {}))


def test_stage_gives_words_with_times():
    item = Item("u1", "iemocap", text="Excuse me [LAUGHTER], WHAT?",
                text_clean="Excuse me , WHAT?",
                words=(Word("EXCUSE", 0.1, 0.4), Word("ME", 0.4, 0.6), Word("WHAT(2)", 0.8, 1.0)))
    r = run_words(item)
    assert list(r.arrays["words"].data) == ["excuse", "me", "what"]
    np.testing.assert_allclose(r.arrays["spans"].data, [[0.1, 0.4], [0.4, 0.6], [0.8, 1.0]], rtol=1e-6)
    np.testing.assert_allclose(r.arrays["words"].times, [0.1, 0.4, 0.8], rtol=1e-6)
    assert r.meta["timed"] == 3 and r.meta["empty"] is None
    untimed = run_words(item, times=False)
    assert np.isnan(untimed.arrays["spans"].data).all() and untimed.meta["timed"] == 0


@pytest.mark.parametrize("text, reason", [
    ("", "empty transcript"),
    ("[LAUGHTER] [BREATHING]", "only bracketed tokens"),
    ("\u4f60\u597d", "no ASCII-foldable words (non-ASCII text)"),
    (None, "no transcript"),
])
def test_stage_flags_items_without_words(text, reason):
    item = Item("u2", "iemocap", text=text, words=(Word("HELLO", 0.0, 0.5),))
    r = run_words(item)
    assert r.arrays["words"].data.shape == (0,)
    assert r.arrays["spans"].data.shape == (0, 2)
    assert r.meta["empty"] == reason and r.meta["n_words"] == 0


def test_clean_text_is_made_when_the_reader_gives_none():
    from pipeline.text import item_text
    item = Item("u3", "table", text="Hello [LAUGHTER]  there")
    assert item_text(item, "clean") == "Hello there"
    assert item_text(item, "raw") == "Hello [LAUGHTER]  there"
    assert item_text(Item("u4", "table"), "clean") is None
