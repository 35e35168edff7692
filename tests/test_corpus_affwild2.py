"""The Aff-Wild2 reader on its small demo corpus (against the truth file its
generator wrote): one item per annotated subject, left/right regions, splits,
per-frame labels with -1 kept in place, and frame-count drift reported."""
import pytest

from pipeline.corpora import read_corpus
from pipeline.corpora.affwild2 import read_annotation, subject_of

from tests.helpers import demo_corpus_fixtures, fbank_of_every_item


root, truth, items = demo_corpus_fixtures("affwild2", "Aff-Wild2")


def test_one_item_per_annotation_file(items, truth):
    assert sorted(i.id for i in items) == sorted(truth["subjects"])
    for item in items:
        expected = truth["subjects"][item.id]
        assert item.corpus == "affwild2" and item.speaker == item.id
        assert item.session == expected["video"]
        assert item.split == expected["split"]
    assert {i.split for i in items} == {"train", "validation"}


def test_frame_labels_keep_ignore_in_place(items, truth):
    for item in items:
        labels = item.labels["expression"]
        assert labels == truth["subjects"][item.id]["labels"]
        first, end = truth["subjects"][item.id]["away_frames"]
        assert set(labels[first:end]) == {-1}
        assert set(labels) - {-1} <= set(range(8))


def test_left_right_subjects_share_the_video_and_name_their_half(items, root, truth):
    pair = [i for i in items if i.video.region]
    assert sorted(i.video.region for i in pair) == ["left", "right"]
    assert len({i.video.path for i in pair}) == 1 and len({i.session for i in pair}) == 1
    assert pair[0].labels != pair[1].labels
    for item in items:
        assert item.video.path == item.audio.path == str(root / truth["subjects"][item.id]["path"])
        assert item.audio.region is None and item.video.start is None
    assert {i.video.path.rsplit(".", 1)[1] for i in items} == {"mp4", "avi"}
    assert subject_of("10-60-1280x720_right") == ("10-60-1280x720", "right")
    assert subject_of("video3") == ("video3", None)


def test_frame_drift_is_counted_and_reported(items, truth):
    drifted = 0
    for item in items:
        expected = truth["subjects"][item.id]
        assert item.extra["video_frames"] == expected["video_frames"]
        assert item.extra["annotated_frames"] == expected["annotated_frames"] == len(item.labels["expression"])
        assert item.extra["frame_drift"] == expected["frame_drift"]
        assert item.extra["fps"] == pytest.approx(30.0)
        if expected["frame_drift"]:
            drifted += 1
            assert any("aligned by frame index" in w for w in item.warnings)
            assert any(line.startswith(f"{item.id}: ") and f"drift {expected['frame_drift']:+d}" in line
                       for line in items.report)
        else:
            assert not item.warnings
    assert drifted >= 2 and {truth["subjects"][i.id]["frame_drift"] > 0 for i in items} >= {True, False}


def test_bad_annotation_file_is_reported_not_an_item(root, tmp_path):
    import shutil
    copy = tmp_path / "Aff-Wild2"
    shutil.copytree(root, copy)
    bad = copy / "Annotations/EXPR_Classification_Challenge/Train_Set/video2.txt"
    bad.write_text(bad.read_text().replace("\n", "\n9\n", 2))
    items = read_corpus("affwild2", copy)
    assert "video2" not in {i.id for i in items} and len(items) == 3
    assert any("video2.txt" in line and "9 is not a class" in line for line in items.report)
    with pytest.raises(ValueError, match="header"):
        bad.write_text("0\n1\n")
        read_annotation(bad)


def test_fbank_extracts_from_the_videos_sound(root, tmp_path, capsys, items):
    fbank = fbank_of_every_item(root, tmp_path / "cache", "affwild2", items, capsys)
    for item in items:
        seconds = item.extra["video_frames"] / item.extra["fps"]
        assert abs(fbank[item.id].shape[0] - seconds * 100) <= 5, item.id
