"""`heads train` and missing features: items of the label set whose features
were never extracted (or whose extraction an infrastructure fault stopped:
it records nothing) stop training with the command that fixes it, unless
--allow-missing, which trains without them and records their ids; an item
whose extraction failed on a bad input is dropped and listed, as before."""
from __future__ import annotations

import json

import pytest
from heads_fake import fake_items, write_fake_cache

from heads.cli import main
from pipeline.plan import record_dataset
from pipeline.store import Index

ARGS = ["--model", "tsin", "--preset", "demo", "--set", "text_stage=mfcc", "--set", "text_array=mfcc",
        "--set", "epochs=1", "--protocol", "session", "--quiet"]


@pytest.fixture(scope="module")
def partial(tmp_path_factory):
    """A cache extracted for every item but two, which joined the corpus afterwards."""
    d = tmp_path_factory.mktemp("partial")
    items = fake_items(sessions=5, per_speaker=4)
    late = [it for it in items if it.id in ("Ses02F_impro01_F000", "Ses03M_impro01_M001")]
    write_fake_cache(d, [it for it in items if it not in late],
                     {"fbank@tsin": {"fbank": ("seq", 6)}, "mfcc": {"mfcc": ("seq", 4)}})
    record_dataset(Index(d), d, "iemocap", "/nonexistent", {}, items)
    return d, sorted(it.id for it in late)


def test_never_extracted_items_stop_training(partial, tmp_path, capsys):
    cache, late = partial
    assert main(["train", "--cache", str(cache), *ARGS, "--out", str(tmp_path / "run")]) == 3
    err = capsys.readouterr().err
    assert "for 2 item(s) of label set 4class" in err
    assert "fbank@tsin: 2 item(s) missing (never extracted, or stopped by an infrastructure fault)" in err
    assert f"pipeline extract --cache {cache} --dataset iemocap --stages fbank@tsin,mfcc" in err
    assert "--allow-missing" in err and not (tmp_path / "run").exists()


def test_allow_missing_trains_without_them_and_records_them(partial, tmp_path, capsys):
    cache, late = partial
    run = tmp_path / "run"
    assert main(["train", "--cache", str(cache), *ARGS, "--out", str(run), "--allow-missing"]) == 0
    err = capsys.readouterr().err
    assert all(f"training without {i}" in err for i in late)
    r = json.loads((run / "results.json").read_text())
    assert sorted(r["missing_items"]) == late
    tested = {i for run_ in r["runs"] for i in run_["predictions"]}
    assert len(tested) == 30 and not tested & set(late)          # the 32 items of 4class, less the two


def test_meld_missing_clip_is_a_recorded_bad_input(tmp_path_factory, capsys):
    """The MELD demo's missing clip failed extraction (an input problem):
    training goes on without it and names it, no --allow-missing needed."""
    from pipeline.cli import main as pipeline
    base = tmp_path_factory.mktemp("meld")
    root, cache = base / "MELD.Raw", base / "cache"
    assert pipeline(["demo-corpus", "--layout", "meld", "--out", str(root), "--size", "small"]) == 0
    assert pipeline(["extract", "--dataset", "meld", "--root", str(root), "--cache", str(cache),
                     "--for", "egemaps_mlp", "--scheduler", "sync", "--quiet"]) == 0
    capsys.readouterr()
    run = base / "run"
    assert main(["train", "--model", "egemaps_mlp", "--cache", str(cache), "--preset", "demo", "--set",
                 "labelset=7class", "--set", "epochs=1", "--protocol", "official", "--out", str(run),
                 "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "skipping dev_dia0_utt2: extraction failed" in err and "allow-missing" not in err
    r = json.loads((run / "results.json").read_text())
    assert list(r["dropped_items"]) == ["dev_dia0_utt2"] and r["missing_items"] == {}
