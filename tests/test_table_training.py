"""A user's labelled table as a first-class corpus: its label set `all`, heads
trained with every protocol its columns allow, and clear errors for a
malformed or empty table."""
from __future__ import annotations

import json

import pytest

from heads.cli import main as heads
from tests.helpers import extract, make_table_corpus, run_cli

LABELS = ["sad", "ang", "hap"]


@pytest.fixture(scope="module")
def table_cache(tmp_path_factory):
    """12 espeak utterances in a CSV with session, speaker and split columns,
    and a second CSV over the same files with only id, audio and label."""
    base = tmp_path_factory.mktemp("table_training")
    root = base / "corpus"
    make_table_corpus(root, n=12)
    splits = ["train"] * 8 + ["dev"] * 2 + ["test"] * 2
    rows = [f"u{i},utt{i}.wav,{LABELS[i % 3]},s{i % 4},sess{i % 3},{splits[i]}" for i in range(12)]
    (root / "corpus.csv").write_text("id,audio,label,speaker,session,split\n" + "\n".join(rows) + "\n")
    plain = base / "plain"
    plain.mkdir()
    (plain / "plain.csv").write_text("id,audio,label\n" + "\n".join(
        f"u{i},../corpus/utt{i}.wav,{LABELS[i % 3]}" for i in range(12)) + "\n")
    caches = {}
    for name, folder in (("full", root / "corpus.csv"), ("plain", plain / "plain.csv")):
        caches[name] = base / f"cache_{name}"
        assert extract(folder, caches[name], "--for", "fbank_bilstm") == 0
    return caches


def _train(cache, out, *args):
    rc = heads(["train", "--model", "fbank_bilstm", "--cache", str(cache), "--preset", "demo",
                "--set", "labelset=all", "--set", "epochs=1", "--out", str(out), "--quiet", *args])
    assert rc == 0
    return json.loads((out / "results.json").read_text())


@pytest.mark.parametrize("protocol,folds", [
    ("session", ["session=sess0", "session=sess1", "session=sess2"]),
    ("speaker", ["speaker=s0", "speaker=s1", "speaker=s2", "speaker=s3"]),
    ("official", ["official"]),
])
def test_every_protocol_the_columns_allow(table_cache, tmp_path, capsys, protocol, folds):
    r = _train(table_cache["full"], tmp_path / "run", "--protocol", protocol)
    assert r["classes"] == sorted(LABELS) and r["corpus"] == "table"
    assert [f["name"] for f in r["protocol"]["folds"]] == folds
    assert all(rep["ok"] for rep in r["leakage_check"])


def test_defaults_follow_the_columns(table_cache, tmp_path, capsys):
    assert _train(table_cache["full"], tmp_path / "full")["protocol"]["name"] == "official"
    r = _train(table_cache["plain"], tmp_path / "plain", "--folds", "3")
    assert r["protocol"]["name"] == "kfold" and len(r["protocol"]["folds"]) == 3
    # a protocol the columns do not allow says which column is missing
    rc = heads(["train", "--model", "fbank_bilstm", "--cache", str(table_cache["plain"]), "--preset", "demo",
                "--set", "labelset=all", "--protocol", "session", "--out", str(tmp_path / "x"), "--quiet"])
    assert rc == 2 and "has no session" in capsys.readouterr().err


def test_malformed_and_empty_tables_are_named(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text('id,audio,label\nu1,a.wav,ang\nu2,"b.wav,neu\nu3,c.wav,ang\n')
    assert run_cli("extract", "--dataset", "table", "--root", bad, "--cache", tmp_path / "c", "--quiet") == 2
    assert f"{bad}:3: malformed row" in capsys.readouterr().err
    empty = tmp_path / "empty.csv"
    empty.write_text("id,audio,label\n")
    assert run_cli("extract", "--dataset", "table", "--root", empty, "--cache", tmp_path / "c", "--quiet") == 2
    assert f"{empty}: the table has no rows" in capsys.readouterr().err
