"""The IEMOCAP reader and its label sets: on hand-written sample files (real
formats, with the quirks) and on the generated demo corpus (against the truth
file its generator wrote)."""
import json
from collections import Counter
from pathlib import Path

import pytest

from pipeline import labels
from pipeline.corpora import read_corpus
from pipeline.manifest import Item, Word
from pipeline.registry import UnknownName

SAMPLE = Path(__file__).parent / "data" / "iemocap"
DIALOG = "Ses01M_script01_1"


@pytest.fixture(scope="module")
def sample():
    return {item.id: item for item in read_corpus("iemocap", SAMPLE)}


def test_sample_lists_every_evaluated_utterance_in_file_order(sample):
    assert list(sample) == [f"{DIALOG}_{n}" for n in ("F000", "M000", "F001", "M001", "F001b", "M002", "F002")]


def test_sample_speaker_is_the_final_part_letter_not_the_marker_letter(sample):
    assert {i: it.speaker for i, it in sample.items()} == {
        f"{DIALOG}_F000": "Ses01F", f"{DIALOG}_M000": "Ses01M", f"{DIALOG}_F001": "Ses01F",
        f"{DIALOG}_M001": "Ses01M", f"{DIALOG}_F001b": "Ses01F", f"{DIALOG}_M002": "Ses01M",
        f"{DIALOG}_F002": "Ses01F"}
    item = sample[f"{DIALOG}_F000"]
    assert item.session == "Ses01"
    assert item.extra == {"dialog": DIALOG, "gender_with_markers": "M", "kind": "script"}


def test_sample_labels_and_spans(sample):
    item = sample[f"{DIALOG}_M000"]
    assert item.corpus == "iemocap"
    assert item.labels == {"emotion": "fru", "valence": 2.0, "arousal": 3.5, "dominance": 3.0}
    assert sample[f"{DIALOG}_M001"].labels["emotion"] == "xxx"
    late = sample[f"{DIALOG}_F002"]
    assert (late.video.start, late.video.end) == (101.31, 105.07)
    assert late.video.path == str(SAMPLE / "Session1" / "dialog" / "avi" / "DivX" / f"{DIALOG}.avi")
    assert late.video.region is None


def test_sample_audio_path_is_absolute_even_without_the_file(sample):
    item = sample[f"{DIALOG}_F000"]
    assert item.audio.path == str(SAMPLE / "Session1" / "sentences" / "wav" / DIALOG / f"{DIALOG}_F000.wav")
    assert Path(item.audio.path).is_absolute() and not Path(item.audio.path).exists()
    assert (item.audio.start, item.audio.end) == (None, None)


def test_sample_text_keeps_brackets_and_cleans_beside(sample):
    item = sample[f"{DIALOG}_F001"]
    assert item.text == "[LAUGHTER] We got the house!  Really,   we got it."
    assert item.text_clean == "We got the house! Really, we got it."
    assert sample[f"{DIALOG}_M000"].text_clean == "Do you have your forms?"
    assert sample[f"{DIALOG}_F001b"].text == "That's wonderful."
    assert not sample[f"{DIALOG}_F001b"].warnings


def test_sample_undecodable_line_is_decoded_and_reported(sample):
    item = sample[f"{DIALOG}_M001"]
    assert item.text == "I don\u2019t know what to say."
    (warning,) = item.warnings
    assert f"Session1/dialog/transcriptions/{DIALOG}.txt:6:" in warning
    assert "UTF-8" in warning and "0x92" in warning


def test_sample_missing_transcript_line(sample):
    item = sample[f"{DIALOG}_M002"]
    assert item.text is None and item.text_clean is None
    assert any("no line for this utterance" in w for w in item.warnings)


def test_sample_word_times_from_wdseg(sample):
    assert sample[f"{DIALOG}_M001"].words == (
        Word("I", 0.22, 0.31), Word("DON'T", 0.31, 0.59), Word("KNOW", 0.59, 0.81),
        Word("WHAT(2)", 0.82, 1.0), Word("TO", 1.0, 1.09), Word("SAY", 1.09, 1.41))
    assert sample[f"{DIALOG}_F000"].words is None


def test_sample_items_survive_the_manifest(sample):
    for item in sample.values():
        assert Item.from_dict(json.loads(item.to_json())) == item


# ---------------------------------------------------------------- label sets

def test_label_sets_are_data_with_fixed_class_order():
    assert labels.classes("iemocap", "4class") == ["ang", "hap", "sad", "neu"]
    assert labels.classes("iemocap", "6class") == ["ang", "hap", "exc", "sad", "fru", "neu"]
    assert len(labels.classes("iemocap", "all")) == 11
    four = labels.label_set("iemocap", "4class")
    assert four["exc"] == four["hap"] == "hap" and "fru" not in four and "xxx" not in four
    four["xxx"] = "neu"                                  # a copy: the set itself is unchanged
    assert "xxx" not in labels.label_set("iemocap", "4class")


def test_apply_gives_class_or_none(sample):
    excited, unsure = sample[f"{DIALOG}_F001"], sample[f"{DIALOG}_M001"]
    assert labels.apply(excited, "4class") == "hap"
    assert labels.apply(excited, "6class") == "exc"
    assert labels.apply(unsure, "4class") is None and labels.apply(unsure, "6class") is None
    assert labels.apply(unsure, "all") == "xxx"


def test_unknown_label_set_names_the_known_ones():
    with pytest.raises(UnknownName, match="4class"):
        labels.classes("iemocap", "5class")
    with pytest.raises(UnknownName, match="iemocap"):
        labels.label_set("nope", "4class")


# ---------------------------------------------------------------- demo corpus

@pytest.fixture(scope="module")
def demo_items(demo_root):
    return read_corpus("iemocap", demo_root)


def test_demo_items_match_truth(demo_items, demo_truth, demo_root):
    assert sorted(i.id for i in demo_items) == sorted(demo_truth["items"])
    for item in demo_items:
        truth = demo_truth["items"][item.id]
        assert item.labels["emotion"] == truth["code"]
        assert [item.labels[k] for k in ("valence", "arousal", "dominance")] == truth["vad"]
        assert (item.speaker, item.session, item.extra["dialog"]) == (truth["speaker"], truth["session"], truth["dialog"])
        assert (item.video.start, item.video.end) == pytest.approx((truth["start"], truth["end"]), abs=1e-9)
        assert (item.text, item.text_clean) == (truth["text"], truth["text_clean"])
        assert item.audio.path == str(demo_root / truth["wav"])
        assert not item.warnings


def test_demo_word_times_match_truth(demo_items, demo_truth):
    for item in demo_items:
        # Both sides are whole 10 ms frames divided by 100: equal as floats.
        assert [[w.word, w.start, w.end] for w in item.words] == demo_truth["items"][item.id]["words"]


def test_demo_speakers(demo_items, demo_truth):
    per_speaker = Counter(i.speaker for i in demo_items)
    assert len(per_speaker) == 10
    assert per_speaker == {s: v["items"] for s, v in demo_truth["speakers"].items()}
    assert set(per_speaker.values()) == {demo_truth["utterances_per_speaker"]}


def test_demo_label_set_counts(demo_items, demo_truth):
    for name in ("4class", "6class", "all"):
        counts = Counter(labels.apply(i, name) for i in demo_items)
        counts.pop(None, None)
        assert counts == demo_truth["label_sets"][name], name
    codes = demo_truth["code_counts"]
    assert demo_truth["label_sets"]["4class"]["hap"] == codes["hap"] + codes["exc"]
    dropped = sum(codes[c] for c in ("xxx", "oth", "sur", "fea", "dis"))
    assert sum(demo_truth["label_sets"]["6class"].values()) == len(demo_items) - dropped > 0
