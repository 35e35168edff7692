"""The demo corpus generator: real formats, the truth it records, learnable
labels, determinism and the opt-in bad inputs."""
import hashlib
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline.corpora import read_corpus
from pipeline.demo import TRUTH_FILE, make_demo

LABELLED = ("ang", "hap", "exc", "sad", "fru", "neu")
DROPPED = ("xxx", "oth", "sur", "fea", "dis")


def test_utterance_wavs_are_16k_mono_16bit_and_span_their_turn(demo_root, demo_truth):
    for name, item in demo_truth["items"].items():
        info = sf.info(demo_root / item["wav"])
        assert (info.samplerate, info.channels, info.subtype, info.format) == (16000, 1, "PCM_16", "WAV"), name
        assert info.frames == round((item["end"] - item["start"]) * 16000), name


def test_utterance_wav_is_the_dialog_wav_cut_at_its_span(demo_root, demo_truth):
    name, dialog = next(iter(demo_truth["dialogs"].items()))
    whole, rate = sf.read(demo_root / dialog["wav"], dtype="int16")
    assert rate == 16000 and whole.ndim == 1
    for utt in dialog["utterances"]:
        item = demo_truth["items"][utt]
        part, _ = sf.read(demo_root / item["wav"], dtype="int16")
        start = round(item["start"] * 16000)
        assert np.array_equal(part, whole[start:start + len(part)])


def test_tree_has_every_part_of_the_real_layout(demo_root, demo_truth):
    assert sorted(p.name for p in demo_root.iterdir()) == [f"Session{i}" for i in range(1, 6)] + [TRUTH_FILE]
    for name, dialog in demo_truth["dialogs"].items():
        session = demo_root / f"Session{name[4]}"
        for sub in ("dialog/EmoEvaluation", "dialog/transcriptions"):
            assert (session / sub / f"{name}.txt").is_file()
        assert (session / "dialog" / "avi" / "DivX" / f"{name}.avi").is_file()
        for utt in dialog["utterances"]:
            assert (session / "sentences" / "ForcedAlignment" / name / f"{utt}.wdseg").is_file()


def test_file_formats_follow_the_release(demo_root, demo_truth):
    dialog = next(iter(demo_truth["dialogs"]))
    session = demo_root / f"Session{dialog[4]}" / "dialog"
    evaluation = (session / "EmoEvaluation" / f"{dialog}.txt").read_text()
    assert evaluation.startswith("% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n[")
    assert re.search(r"^\[\d+\.\d{4} - \d+\.\d{4}\]\tSes\d\d[FM]_\w+\t[a-z]{3}\t\[\d\.\d{4}, \d\.\d{4}, \d\.\d{4}\]$",
                     evaluation, re.M)
    assert re.search(r"^C-E\d:\t[A-Z][a-z]+;\t\(\)$", evaluation, re.M)
    assert re.search(r"^A-E\d:\tval \d; act \d; dom  \d;\t\(\)$", evaluation, re.M)
    transcript = (session / "transcriptions" / f"{dialog}.txt").read_text()
    assert re.search(r"^Ses\d\d[FM]_\w+_[FM]\d{3} \[\d{3}\.\d{4}-\d{3}\.\d{4}\]: \S", transcript, re.M)
    assert re.search(r"^Ses\d\d[FM]_\w+_[FM]XX0 \[", transcript, re.M)      # a non-utterance line
    utt = demo_truth["dialogs"][dialog]["utterances"][0]
    wdseg = (demo_root / f"Session{dialog[4]}" / "sentences" / "ForcedAlignment" / dialog / f"{utt}.wdseg").read_text()
    lines = wdseg.splitlines()
    assert lines[0] == " SFrm  EFrm    SegAScr Word"
    assert lines[1].split()[3] == "<s>" and lines[-2].split()[3] == "</s>"
    assert lines[-1].startswith(" Total Score:")


def test_corpus_has_every_quirk_of_the_format(demo_truth):
    items = demo_truth["items"]
    assert demo_truth["suffix_letter_items"] and all(re.search(r"_[FM]\d{3}[a-z]$", n) for n in demo_truth["suffix_letter_items"])
    assert any(item["text"] != item["text_clean"] for item in items.values())          # bracketed tokens
    assert any("(2)" in w[0] for item in items.values() for w in item["words"])          # aligner variants
    assert {n.split("_")[1][:5] for n in items} == {"impro", "scrip"}


def test_counts_codes_and_cues(demo_truth):
    items = demo_truth["items"].values()
    per_speaker = demo_truth["utterances_per_speaker"]
    assert len(demo_truth["items"]) == 10 * per_speaker
    assert set(demo_truth["code_counts"]) == set(LABELLED + DROPPED)
    assert Counter(i["code"] for i in items) == demo_truth["code_counts"]
    labelled = [i for i in items if i["code"] in LABELLED]
    cues = Counter(i["cue"] for i in labelled)
    for cue in ("prosody", "words"):
        assert 0.15 <= cues[cue] / len(labelled) <= 0.35, cues
    assert all(i["cue"] == "none" for i in items if i["code"] in DROPPED)


def test_each_session_speaks_its_own_lines(demo_truth):
    """No line is heard in two sessions, so a speech model tested on a held-out
    session cannot know its words by their sound."""
    sessions = {}
    for item in demo_truth["items"].values():
        if item["text_clean"]:
            sessions.setdefault(item["text_clean"], set()).add(item["session"])
    assert all(len(s) == 1 for s in sessions.values()), sessions


def test_prosody_carries_the_label(demo_root, demo_truth):
    """Loudness and speaking rate follow the code where prosody carries it,
    and stay neutral where only the words do."""
    def measure(item):
        samples, _ = sf.read(demo_root / item["wav"], dtype="float32")
        first, last = item["words"][0][1], item["words"][-1][2]
        speech = samples[int(first * 16000):int(last * 16000)]
        return np.sqrt(np.mean(speech ** 2)), (last - first) / len(item["words"])

    def mean_of(code, cues):
        values = [measure(i) for i in demo_truth["items"].values() if i["code"] == code and i["cue"] in cues]
        return np.mean(values, axis=0)

    (loud_ang, _), (loud_neu, pace_neu), (loud_sad, pace_sad) = (mean_of(c, ("both", "prosody")) for c in ("ang", "neu", "sad"))
    assert loud_ang > 1.3 * loud_neu > 1.3 * 1.3 * loud_sad
    assert pace_sad > 1.1 * pace_neu                           # seconds per word: sad is slower
    (loud_ang_words, _) = mean_of("ang", ("words",))
    assert loud_ang_words < 1.3 * loud_neu


def test_dialog_videos_are_720x480_ntsc_and_readable(demo_root, demo_truth):
    cv2 = pytest.importorskip("cv2")
    for name, dialog in demo_truth["dialogs"].items():
        video = dialog["video"]
        capture = cv2.VideoCapture(str(demo_root / video["path"]))
        assert capture.isOpened(), name
        assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (720, 480)
        assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(29.97, abs=0.01)
        assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == video["frames"]
        assert video["frames"] / video["fps"] >= dialog["duration"]
        capture.release()


def test_faces_are_where_the_truth_says(demo_root, demo_truth):
    """In one dialog: both faces found (Haar cascade) in a frame where both
    are in view, only one in a frame where the other has stepped out."""
    cv2 = pytest.importorskip("cv2")
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    video = next(iter(demo_truth["dialogs"].values()))["video"]
    faces = video["faces"]
    away_side = next(side for side, f in faces.items() if len(f["in_view_frames"]) > 1 or f["in_view_frames"][0][0] > 0)
    gap_start = faces[away_side]["in_view_frames"][0][1]
    wanted = {5: {"left", "right"}, gap_start + 10: {"left", "right"} - {away_side}}
    capture = cv2.VideoCapture(str(demo_root / video["path"]))
    for index in range(max(wanted) + 1):
        ok, frame = capture.read()
        assert ok
        if index in wanted:
            found = cascade.detectMultiScale(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), 1.1, 5)
            assert {_side_of(box, faces) for box in found} == wanted[index], index
    capture.release()


def _side_of(box, faces):
    """The side whose face box (allowing for sway) holds the detection's centre."""
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    for side, face in faces.items():
        fx, fy, fw, fh = face["face_box"]
        sx, sy = face["sway_px"]
        if fx - sx - 4 <= cx <= fx + fw + sx + 4 and fy - sy - 4 <= cy <= fy + fh + sy + 4:
            assert 55 <= w <= 90                               # faces are about 60-80 px wide
            return side
    return None


def _digests(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).rglob("*")) if p.is_file()}


def test_same_seed_same_bytes(tmp_path):
    first = make_demo("iemocap", tmp_path / "a", utterances_per_speaker=1, seed=3)
    second = make_demo("iemocap", tmp_path / "b", utterances_per_speaker=1, seed=3)
    assert first == second
    digests = _digests(tmp_path / "a")
    assert any(name.endswith(".avi") for name in digests)
    assert digests == _digests(tmp_path / "b")
    other = make_demo("iemocap", tmp_path / "c", utterances_per_speaker=1, seed=4, video=False)
    assert other["items"] != first["items"]


def test_bad_inputs_on_request(tmp_path):
    root = tmp_path / "quirky"
    truth = make_demo("iemocap", root, utterances_per_speaker=1, video=False, quirks=True)
    quirks = truth["quirks"]
    assert len(set(quirks.values())) == len(quirks) == 6
    wav = {kind: root / truth["items"][name]["wav"] for kind, name in quirks.items()}
    assert not wav["missing_wav"].exists()
    assert wav["zero_length_wav"].stat().st_size == 0
    info = sf.info(wav["stereo_44k_wav"])
    assert (info.samplerate, info.channels) == (44100, 2)
    header_bytes = int.from_bytes(wav["truncated_wav"].read_bytes()[40:44], "little")
    assert wav["truncated_wav"].stat().st_size < 44 + header_bytes
    items = {i.id: i for i in read_corpus("iemocap", root)}
    broken = items[quirks["undecodable_transcript"]]
    assert broken.text == truth["items"][broken.id]["text"] and broken.text.startswith("\u201c")
    assert any("Windows-1252" in w for w in broken.warnings)
    missing = items[quirks["missing_transcript"]]
    assert missing.text is None and missing.warnings
    clean = [i for i in items.values() if i.id not in quirks.values()]
    assert clean and not any(i.warnings for i in clean)


def test_options_sizes_and_folders_are_checked(tmp_path):
    with pytest.raises(ValueError, match="colour"):
        make_demo("iemocap", tmp_path / "x", colour=True)
    with pytest.raises(ValueError, match="huge"):
        make_demo("iemocap", tmp_path / "x", size="huge")
    with pytest.raises(ValueError, match="demo layout"):
        make_demo("nope", tmp_path / "x")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("keep me")
    with pytest.raises(ValueError, match="not a demo corpus"):
        make_demo("iemocap", tmp_path / "mine", utterances_per_speaker=1, video=False)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "keep me"
