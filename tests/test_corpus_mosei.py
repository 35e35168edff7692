"""The CMU-MOSEI reader on its small demo corpus (against the truth file its
generator wrote): segments matched to label intervals, the standard folds,
spans, ids with `-`, and what is reported rather than dropped."""
import h5py
import numpy as np
import pytest

from pipeline.corpora import read_corpus
from pipeline.corpora.mosei import LABELS, match_intervals, standard_folds

from tests.helpers import demo_corpus_fixtures, fbank_of_every_item


root, truth, items = demo_corpus_fixtures("mosei", "CMU_MOSEI")


def test_one_item_per_label_interval_with_its_labels(items, truth):
    assert sorted(i.id for i in items) == sorted(truth["items"])
    for item in items:
        expected = truth["items"][item.id]
        assert list(item.labels) == list(LABELS)
        assert item.labels == pytest.approx(expected["labels"], abs=1e-6)   # stored as float32
        assert item.corpus == "mosei" and item.speaker == item.session == expected["video_id"]
        assert item.text == expected["text"]


def test_splits_are_the_standard_folds(items, truth):
    folds = standard_folds()
    assert {"train", "valid", "test"} == set(folds.values())
    assert len(folds) == 2250 + 300 + 678
    for item in items:
        assert item.split == folds[item.extra["video_id"]] == truth["items"][item.id]["split"]
    assert {i.split for i in items} == {"train", "valid", "test"}


def test_spans_are_the_label_intervals_of_wav_or_video(items, truth, root):
    for item in items:
        expected = truth["items"][item.id]
        video_id = expected["video_id"]
        assert (item.audio.start, item.audio.end) == pytest.approx((expected["start"], expected["end"]), abs=1e-6)
        assert (item.video.start, item.video.end) == (item.audio.start, item.audio.end)
        assert item.video.path == str(root / "Raw/Videos/Full/Combined" / f"{video_id}.mp4")
        wav = root / "Raw/Audio/Full/WAV_16000" / f"{video_id}.wav"
        assert item.audio.path == (str(wav) if expected["audio"] == "wav" else item.video.path)
    assert any(truth["items"][i.id]["audio"] == "mp4" for i in items)


def test_ids_keep_dashes_and_a_leading_dash(items):
    assert any(i.id.startswith("-") for i in items)
    assert all(i.id.startswith(i.extra["video_id"] + "___") for i in items)


def test_shifted_intervals_still_match_their_segment(items, truth):
    shifted = truth["quirks"]["shifted_labels"]
    assert shifted
    by_id = {i.id: i for i in items}
    for name in shifted:
        assert by_id[name].text == truth["items"][name]["text"] and not by_id[name].warnings


def test_unmatched_segments_and_labels_are_reported(items, truth):
    orphan = truth["quirks"]["segment_without_label"]
    assert orphan not in {i.id for i in items}
    video_id, segment = orphan.rsplit("___", 1)
    assert any(line.startswith(f"{video_id}: transcript segment {segment} ") for line in items.report)
    unlabelled_text = [i for i in items if i.text is None]
    assert len(unlabelled_text) == 1 and "matches no transcript segment" in unlabelled_text[0].warnings[0]
    assert unlabelled_text[0].id.rsplit("___", 1)[1].startswith("label")
    assert sum(bool(i.warnings) for i in items) == 1


def test_label_file_has_the_computational_sequence_groups(root):
    with h5py.File(root / "CMU_MOSEI_Labels.csd", "r") as f:
        assert list(f) == ["All Labels"]
        assert {"data", "metadata"} <= set(f["All Labels"])
        group = next(iter(f["All Labels/data"].values()))
        assert group["features"].shape[1] == 7 and group["intervals"].shape[1] == 2


def test_matching_is_one_to_one_by_overlap():
    labels = [(0.0, 2.0, (0,) * 7), (2.5, 4.0, (1,) * 7), (9.0, 10.0, (2,) * 7)]
    segments = [("0", 0.02, 1.98, "a"), ("1", 2.4, 4.1, "b"), ("2", 5.0, 6.0, "c")]
    matched, unmatched = match_intervals(labels, segments, 0.5)
    assert [(i, seg and seg[0]) for i, _, seg in matched] == [(0, "0"), (1, "1"), (2, None)]
    assert unmatched == [segments[2]]


def test_fbank_extracts_from_wav_and_mp4_spans(root, tmp_path, capsys, items):
    fbank = fbank_of_every_item(root, tmp_path / "cache", "mosei", items, capsys)
    for item in items:
        frames = fbank[item.id].shape[0]
        assert abs(frames - (item.audio.end - item.audio.start) * 100) <= 3, item.id
        assert np.isfinite(fbank[item.id]).all()


def test_video_in_no_fold_has_no_split_and_is_reported(root, tmp_path):
    import shutil
    copy = tmp_path / "CMU_MOSEI"
    shutil.copytree(root, copy)
    with h5py.File(copy / "CMU_MOSEI_Labels.csd", "a") as f:
        group = f["All Labels/data"].create_group("not-a-fold-id")
        group.create_dataset("features", data=np.zeros((1, 7), np.float32))
        group.create_dataset("intervals", data=np.array([[0.5, 2.0]]))
    items = read_corpus("mosei", copy)
    (item,) = [i for i in items if i.extra["video_id"] == "not-a-fold-id"]
    assert item.split is None and item.text is None
    assert any("transcript" in w and "missing" in w for w in item.warnings)
    assert "not-a-fold-id: in none of the standard folds; its items have no split" in items.report
