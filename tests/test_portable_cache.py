"""A cache that travels: it works where its corpus is not mounted, a moved
corpus rebinds with --root, and changed or missing input files are noticed."""
import shutil

import pytest

from heads.cli import main as heads_main
from pipeline.api import Cache
from pipeline.demo import make_demo
from tests.helpers import run_cli, summary

STAGES = "fbank@tsin,mfcc,bert"


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    base = tmp_path_factory.mktemp("portable")
    root = base / "IEMOCAP_full_release"
    make_demo("iemocap", root, size="small", seed=0, video=False)
    assert run_cli("extract", "--dataset", "iemocap", "--root", root, "--cache", base / "cache",
                   "--stages", STAGES, "--scheduler", "sync", "--quiet") == 0
    return root, base / "cache"


def moved(extracted, tmp_path):
    """A copy of the cache, and of the corpus under another name (the original stays)."""
    root, cache = extracted
    c = tmp_path / "cache"
    shutil.copytree(cache, c)
    copy = tmp_path / "IEMOCAP_copy"
    shutil.copytree(root, copy)
    return copy, c


def test_unmounted_corpus_is_unverified_and_trains(extracted, tmp_path, capsys):
    root, cache = extracted
    c = tmp_path / "cache"
    shutil.copytree(cache, c)
    # the cache recorded the fixture's root: make it vanish for a moment
    aside = tmp_path / "aside"
    root.rename(aside)
    try:
        capsys.readouterr()
        assert run_cli("status", "--cache", c, "--stages", STAGES) == 0
        out, err = capsys.readouterr()
        assert "is not there" in err and "unverified" in out and "stale" not in out.split("\n", 2)[2]
        assert Cache(c).load("mfcc")  # loads, unverified
        rc = heads_main(["train", "--model", "fbank_bilstm", "--cache", str(c), "--preset", "demo",
                         "--set", "epochs=1", "--out", str(tmp_path / "run"), "--quiet"])
        assert rc == 0 and (tmp_path / "run" / "results.json").exists()
        assert "is not there" in capsys.readouterr().err
    finally:
        aside.rename(root)


def test_moved_corpus_rebinds_and_a_changed_wav_recomputes_that_item(extracted, tmp_path, capsys):
    copy, c = moved(extracted, tmp_path)
    capsys.readouterr()
    assert run_cli("extract", "--cache", c, "--root", copy, "--stages", STAGES, "--scheduler", "sync", "--quiet") == 0
    counts = summary(capsys.readouterr().out)
    assert all(row["computed"] == 0 for row in counts.values()), counts
    wav = sorted(copy.glob("Session1/sentences/wav/*/*.wav"))[0]
    data = bytearray(wav.read_bytes())
    data[-200] ^= 0x55                      # one sample's bytes, in place
    wav.write_bytes(bytes(data))
    assert run_cli("extract", "--cache", c, "--stages", STAGES, "--scheduler", "sync", "--quiet") == 0
    counts = summary(capsys.readouterr().out)
    assert counts["fbank@tsin"]["computed"] == 1 and counts["mfcc"]["computed"] == 1
    assert counts["bert"]["computed"] == 0


def test_a_missing_file_under_a_present_root_is_a_missing_input(extracted, tmp_path, capsys):
    copy, c = moved(extracted, tmp_path)
    assert run_cli("extract", "--cache", c, "--root", copy, "--stages", STAGES, "--scheduler", "sync",
                   "--quiet") == 0
    wav = sorted(copy.glob("Session2/sentences/wav/*/*.wav"))[0]
    wav.unlink()
    capsys.readouterr()
    assert run_cli("status", "--cache", c, "--stages", "mfcc") == 0
    out = capsys.readouterr().out
    assert f"{wav.stem}: input file missing" in out and "not used" in out
    found = Cache(c).locate("mfcc", items=[wav.stem])[wav.stem]
    assert found.state == "missing" and not found.unverified


# --- configurations outside the repo ----------------------------------------------

def user_manifests(folder, text, name="mine.toml"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder


def test_user_named_configuration_extracts_and_trains(extracted, tmp_path, capsys, monkeypatch):
    from pipeline.presets import use_manifest_dirs
    root, cache = extracted
    c = tmp_path / "cache"
    shutil.copytree(cache, c)
    mine = user_manifests(tmp_path / "mine", '[stage.fbank.mine]\nn_mels = 24\n\n[preset.fbank_bilstm.mine]\n'
                                             'extract = ["fbank@mine"]\nstage = "fbank@mine"\nepochs = 1\n')
    try:
        capsys.readouterr()
        assert run_cli("config", "fbank@mine", "--manifests", mine) == 0
        assert "n_mels = 24" in capsys.readouterr().out
        assert run_cli("extract", "--cache", c, "--for", "fbank_bilstm", "--preset", "mine", "--manifests", mine,
                       "--scheduler", "sync", "--quiet") == 0
        assert summary(capsys.readouterr().out)["fbank@mine"]["computed"] == 40
        rc = heads_main(["train", "--model", "fbank_bilstm", "--cache", str(c), "--manifests", str(mine),
                         "--preset", "mine", "--out", str(tmp_path / "run"), "--quiet"])
        assert rc == 0
        monkeypatch.setenv("EMOCACHE_MANIFESTS", str(mine))        # the same folder through the environment
        use_manifest_dirs([])
        assert run_cli("status", "--cache", c, "--stages", "fbank@mine") == 0
        assert "up to date" in capsys.readouterr().out
    finally:
        monkeypatch.delenv("EMOCACHE_MANIFESTS", raising=False)
        use_manifest_dirs([])


@pytest.mark.parametrize("name,text", [
    ("tsin.toml", '[stage.fbank.other]\nn_mels = 24\n'),           # a packaged file's name
    ("other.toml", '[stage.fbank.tsin]\nn_mels = 24\n'),           # a packaged configuration's name
])
def test_a_clashing_user_manifest_exits_2(extracted, tmp_path, capsys, name, text):
    from pipeline.presets import use_manifest_dirs
    root, cache = extracted
    mine = user_manifests(tmp_path / "mine", text, name)
    try:
        capsys.readouterr()
        assert run_cli("extract", "--cache", tmp_path / "c", "--root", root, "--dataset", "iemocap",
                       "--stages", "fbank@tsin", "--manifests", mine, "--scheduler", "sync") == 2
        err = capsys.readouterr().err
        assert str(mine) in err and ("has the name of a packaged" in err or "declared twice" in err)
        assert not (tmp_path / "c" / "shards").exists()
    finally:
        use_manifest_dirs([])
