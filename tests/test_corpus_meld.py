"""The MELD reader on its small demo corpus (against the truth file its
generator wrote): the three tables, ids unique across splits, Windows-1252
bytes inside UTF-8 text, the missing clip, and the label sets."""
from pipeline import labels
from pipeline.corpora._text import decode_text

from tests.helpers import demo_corpus_fixtures, extract, summary


root, truth, items = demo_corpus_fixtures("meld", "MELD.Raw")


def test_one_item_per_row_with_unique_ids(items, truth):
    assert sorted(i.id for i in items) == sorted(truth["items"])
    assert [i.split for i in items] == sorted((i.split for i in items), key=["train", "dev", "test"].index)
    assert len({i.id for i in items}) == len(items)
    assert {i.split for i in items} == {"train", "dev", "test"}
    for item in items:
        expected = truth["items"][item.id]
        assert item.labels == {"emotion": expected["emotion"], "sentiment": expected["sentiment"]}
        assert (item.speaker, item.split) == (expected["speaker"], expected["split"])
        assert item.session == f"{expected['split']}_dia{expected['dialogue']}"
        assert item.extra["start_time"].count(":") == 2 and "," in item.extra["start_time"]


def test_clips_are_audio_and_video(items, truth, root):
    for item in items:
        assert item.audio.path == item.video.path == str(root / truth["items"][item.id]["clip"])
        assert item.audio.start is None and item.audio.end is None


def test_cp1252_bytes_decoded_and_utf8_kept(items, truth):
    assert truth["quirks"]["cp1252_rows"]
    for item in items:
        assert item.text == truth["items"][item.id]["text"]
        cp1252 = truth["items"][item.id]["cp1252"]
        assert any("Windows-1252" in w for w in item.warnings) == cp1252, item.id
    both = next(i for i in items if i.id == truth["quirks"]["utf8_and_cp1252_row"])
    assert both.text.startswith("Caf\u00e9 ")


def test_decoding_is_per_byte_run():
    text, problems = decode_text("na\u00efve \u00e9t\u00e9 ".encode() + b"\x93quoted\x94 \x85\n")
    assert text == "na\u00efve \u00e9t\u00e9 \u201cquoted\u201d \u2026\n"
    assert list(problems) == [1]


def test_missing_clip_is_kept_with_a_warning_and_reported(items, truth):
    missing = truth["quirks"]["missing_clip"]
    (item,) = [i for i in items if i.id == missing]
    assert any(w.startswith("clip ") and "missing" in w for w in item.warnings)
    assert any(line.startswith(f"{missing}: clip ") for line in items.report)
    assert len(items.report) == 1


def test_label_sets(items, truth):
    assert labels.classes("meld", "7class") == ["neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"]
    assert labels.classes("meld", "sentiment") == ["negative", "neutral", "positive"]
    for item in items:
        assert labels.apply(item, "7class") == truth["items"][item.id]["emotion"]
        assert labels.apply(item, "sentiment") == truth["items"][item.id]["sentiment"]


def test_fbank_extracts_clip_sound_and_names_the_missing_clip(root, tmp_path, capsys, items, truth):
    assert extract(root, tmp_path / "cache", "--stages", "fbank", dataset="meld") == 0
    out = capsys.readouterr()
    rows = summary(out.out)
    assert rows["fbank"]["computed"] == len(items) - 1 and rows["fbank"]["failed"] == "1"
    assert truth["quirks"]["missing_clip"] in out.out + out.err
