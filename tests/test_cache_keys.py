"""What a rerun recomputes: exactly the stages and items whose inputs changed."""
import os
import shutil

import pytest

from tests.helpers import espeak_wav, extract, make_table_corpus, summary


@pytest.fixture()
def corpus(tmp_path_factory, tmp_path):
    src = make_table_corpus(tmp_path_factory.mktemp("tbl"), n=4).parent
    dst = tmp_path / "corpus"
    shutil.copytree(src, dst)
    return dst / "corpus.csv"


def _run(corpus, cache, capsys, *extra):
    capsys.readouterr()
    assert extract(corpus, cache, "--stages", "fbank,mfcc", *extra) == 0
    return summary(capsys.readouterr().out)


def test_changing_an_option_recomputes_that_stage_only(corpus, tmp_path, capsys):
    _run(corpus, tmp_path / "c", capsys)
    s = _run(corpus, tmp_path / "c", capsys, "--set", "fbank.n_mels=40")
    assert s["fbank"]["computed"] == 4 and s["mfcc"]["computed"] == 0 and s["mfcc"]["reused"] == 4
    # both configurations now live side by side
    s = _run(corpus, tmp_path / "c", capsys)
    assert s["fbank"]["reused"] == 4


def test_changed_wav_bytes_recompute_that_item_only(corpus, tmp_path, capsys):
    _run(corpus, tmp_path / "c", capsys)
    espeak_wav(corpus.parent / "utt2.wav", "a different sentence entirely")
    s = _run(corpus, tmp_path / "c", capsys)
    assert s["fbank"]["computed"] == s["mfcc"]["computed"] == 1
    assert s["fbank"]["reused"] == 3


def test_touching_mtime_recomputes_nothing(corpus, tmp_path, capsys):
    _run(corpus, tmp_path / "c", capsys)
    wav = corpus.parent / "utt1.wav"
    st = os.stat(wav)
    os.utime(wav, ns=(st.st_atime_ns + 10**9, st.st_mtime_ns + 10**9))
    s = _run(corpus, tmp_path / "c", capsys)
    assert s["fbank"]["computed"] == s["mfcc"]["computed"] == 0


def test_editing_text_recomputes_no_audio_stage(corpus, tmp_path, capsys):
    _run(corpus, tmp_path / "c", capsys)
    corpus.write_text(corpus.read_text().replace("lazy dog", "sleepy cat"))
    s = _run(corpus, tmp_path / "c", capsys)
    assert s["fbank"]["computed"] == s["mfcc"]["computed"] == 0


def test_status_reports_stale_after_change(corpus, tmp_path, capsys):
    from tests.helpers import run_cli
    _run(corpus, tmp_path / "c", capsys)
    espeak_wav(corpus.parent / "utt0.wav", "changed words here")
    capsys.readouterr()
    assert run_cli("status", "--cache", tmp_path / "c", "--stages", "fbank") == 0
    line = [l for l in capsys.readouterr().out.splitlines() if l.startswith("fbank")][0]
    assert line.split()[1:] == ["stale", "3", "1", "0", "0"]
