"""Bad input on a demo corpus with every quirk: a clear message per bad item,
every other item completes; transcript edits never touch audio stages."""
import re

import pytest

from pipeline.demo import make_demo
from tests.helpers import extract, summary


@pytest.fixture(scope="module")
def quirky(tmp_path_factory):
    root = tmp_path_factory.mktemp("quirky") / "IEMOCAP_full_release"
    truth = make_demo("iemocap", root, size="small", utterances_per_speaker=1, video=False,
                      dialog_audio=False, quirks=True)
    return root, truth


EXPECTED = {
    "truncated_wav": r"truncated WAV: header declares \d+ bytes of audio, file holds \d+",
    "zero_length_wav": r"audio file (is empty|has no samples)",
    "missing_wav": r"audio file not found: .*\.wav",
}


def test_each_bad_item_named_and_the_rest_complete(quirky, tmp_path, capsys):
    root, truth = quirky
    assert extract(root, tmp_path / "c", "--stages", "fbank,mfcc", dataset="iemocap") == 0
    captured = capsys.readouterr()
    rows = summary(captured.out)
    n = len(truth["items"])
    for stage in ("fbank", "mfcc"):
        assert rows[stage]["failed"] == str(len(EXPECTED))
        assert rows[stage]["computed"] == n - len(EXPECTED)
        for kind, pattern in EXPECTED.items():
            item = truth["quirks"][kind]
            assert re.search(rf"{stage}: {item}: {pattern}", captured.out), (kind, captured.out)
    # the undecodable transcript is read (cp1252) with a warning naming the item
    assert truth["quirks"]["undecodable_transcript"] in captured.err
    # --strict turns failures into a non-zero exit, and failures are remembered
    assert extract(root, tmp_path / "c", "--stages", "fbank,mfcc", "--strict", dataset="iemocap") == 1
    rows = summary(capsys.readouterr().out)
    assert rows["fbank"]["computed"] == 0 and rows["fbank"]["failed"] == f"0+{len(EXPECTED)}"


def test_stereo_44k_item_is_computed(quirky, tmp_path):
    from pipeline.api import Cache
    root, truth = quirky
    item = truth["quirks"]["stereo_44k_wav"]
    assert extract(root, tmp_path / "c", "--stages", "fbank", dataset="iemocap") == 0
    feats = Cache(tmp_path / "c").load("fbank", [item])[item]
    assert feats.arrays["fbank"].shape[1] == 80 and len(feats.arrays["fbank"]) > 10


def test_transcript_edit_recomputes_no_audio_stage(quirky, tmp_path, capsys):
    import shutil
    root, truth = quirky
    copy = tmp_path / "IEMOCAP_full_release"
    shutil.copytree(root, copy)
    assert extract(copy, tmp_path / "c", "--stages", "fbank,mfcc", dataset="iemocap") == 0
    trans = next((copy / "Session2" / "dialog" / "transcriptions").glob("*.txt"))
    lines = trans.read_bytes().splitlines(keepends=True)
    i = next(i for i, l in enumerate(lines) if re.match(rb"Ses\d\d[FM]_\S+_[FM]\d{3}\w* \[", l))
    lines[i] = lines[i].rstrip() + b" and some new words\n"
    trans.write_bytes(b"".join(lines))
    capsys.readouterr()
    assert extract(copy, tmp_path / "c", "--stages", "fbank,mfcc", dataset="iemocap") == 0
    rows = summary(capsys.readouterr().out)
    assert rows["fbank"]["computed"] == rows["mfcc"]["computed"] == 0
