"""Bad options fail before any work, naming what is wrong; info commands work."""
import pytest

from tests.helpers import make_table_corpus, run_cli


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_table_corpus(tmp_path_factory.mktemp("tbl"), n=2)


@pytest.mark.parametrize("args, message", [
    (["--stages", "fbnak"], "unknown stage 'fbnak'"),
    (["--stages", "fbank@nope"], "unknown named configuration 'fbank@nope'"),
    (["--set", "fbank.n_mel=3"], "unknown option 'n_mel'"),
    (["--set", "fbank.n_mels=many"], "n_mels='many' is not a valid int"),
    (["--set", "fbank.window=kaiser"], "window='kaiser' must be one of"),
    (["--set", "nostage.x=1"], "unknown stage 'nostage'"),
    (["--set", "fbank"], "expected STAGE.KEY=VALUE"),
    (["--workers", "0"], "--workers must be >= 1"),
])
def test_bad_option_fails_before_work(corpus, tmp_path, capsys, args, message):
    cache = tmp_path / "c"
    code = run_cli("extract", "--dataset", "table", "--root", corpus, "--cache", cache, "--scheduler", "sync", *args)
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (cache / "shards").exists()


def test_unknown_corpus(tmp_path, capsys):
    assert run_cli("extract", "--dataset", "iemocapp", "--root", tmp_path, "--cache", tmp_path / "c") == 2
    assert "unknown corpus 'iemocapp'" in capsys.readouterr().err


def test_bad_config_file(corpus, tmp_path, capsys):
    cfg = tmp_path / "x.toml"
    cfg.write_text("[fbank\nn_mels = 3")
    assert run_cli("extract", "--dataset", "table", "--root", corpus, "--cache", tmp_path / "c",
                   "--config", cfg) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_config_file_and_status_remember_root(corpus, tmp_path, capsys):
    cfg = tmp_path / "x.toml"
    cfg.write_text('stages = ["fbank"]\n[fbank]\nn_mels = 24\n')
    cache = tmp_path / "c"
    assert run_cli("extract", "--dataset", "table", "--root", corpus, "--cache", cache,
                   "--config", cfg, "--scheduler", "sync", "--quiet") == 0
    capsys.readouterr()
    # root and dataset come from the cache now
    assert run_cli("status", "--cache", cache, "--config", cfg) == 0
    out = capsys.readouterr().out
    assert "fbank" in out and "up to date" in out


def test_list_names_stages_and_corpora(capsys):
    assert run_cli("list") == 0
    out = capsys.readouterr().out
    assert "fbank" in out and "mfcc" in out and "iemocap" in out and "table" in out


def test_inspect_writes_png(corpus, tmp_path, capsys):
    cache = tmp_path / "c"
    assert run_cli("extract", "--dataset", "table", "--root", corpus, "--cache", cache, "--stages", "fbank",
                   "--scheduler", "sync", "--quiet") == 0
    capsys.readouterr()
    assert run_cli("inspect", "u0", "--stage", "fbank", "--cache", cache, "--png", tmp_path / "p.png") == 0
    assert "fbank: shape (" in capsys.readouterr().out
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
