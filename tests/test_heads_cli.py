"""`heads` CLI: refusing a cache that lacks stages, and a small train / report run."""
from __future__ import annotations

import json

import pytest

from heads.cli import main


def test_missing_stage_prints_the_extract_command(fbank_only, capsys, tmp_path):
    rc = main(["train", "--model", "tsin", "--cache", str(fbank_only), "--preset", "demo",
               "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc != 0
    assert "bert@tsin: 32 item(s) missing" in err      # the 4class items
    assert f"pipeline extract --cache {fbank_only} --dataset iemocap --for tsin" in err
    assert not (tmp_path / "run").exists()                   # nothing trained


def test_stages_outside_the_head_manifest_are_named(fbank_only, capsys):
    rc = main(["train", "--model", "tsin", "--cache", str(fbank_only), "--preset", "demo", "--set", "speech_stage=fbank"])
    assert rc != 0
    assert f"pipeline extract --cache {fbank_only} --dataset iemocap --stages bert@tsin,fbank" \
        in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["--set", "epochs=0"], "epochs must be >= 1"),
    (["--set", "no_such_option=1"], "unknown option 'no_such_option'"),
    (["--preset", "huge"], "unknown preset 'huge'"),
    (["--protocol", "sideways"], "unknown protocol 'sideways'"),
    (["--set", "modality_dropout=speech:-0.1"], "must be >= 0"),
    (["--set", "modality_dropout=speech"], "is not GROUP:SHARE"),
    (["--set", "frame_track=opensmile@egemaps_lld"], "is not STAGE_SPEC:ARRAY"),
    (["--set", "frame_track=opensmile@egemaps:functionals"], "opensmile@egemaps has no frame rate"),
    (["--set", "fold_inputs=words", "--set", "standardize=speaker"], "fold_inputs needs standardize=speaker"),
])
def test_bad_options_fail_before_work(fbank_only, capsys, argv, message):
    # Every head's own bad value, an unknown modality group, shares adding up
    # to 1 and frame_pool 0: the head contract (tests/test_contract_heads.py).
    rc = main(["train", "--model", "tsin", "--cache", str(fbank_only), *argv])
    assert rc == 2 and message in capsys.readouterr().err


def test_options_that_do_not_fit_the_inputs_fail_before_training(fbank_only, capsys, tmp_path):
    # HFF's 2-D speech CNN needs whole planes: the 6-wide fbank is not 4 of them (the fake cache has no
    # prosody track and no visual input, so the demo preset's track and dropout are switched off).
    rc = main(["train", "--model", "hff", "--cache", str(fbank_only), "--preset", "demo", "--set", "modalities=st",
               "--set", "speech_stage=fbank@tsin", "--set", "speech_array=fbank", "--set", "text_stage=mfcc",
               "--set", "text_array=mfcc", "--set", "speech_conv=2d", "--set", "speech_planes=4",
               "--set", 'frame_track=""', "--set", "modality_dropout=[]", "--out", str(tmp_path / "run")])
    out, err = capsys.readouterr()
    assert rc == 2 and "speech input width 6 is not 4 planes" in err
    assert "session protocol" not in out and not (tmp_path / "run").exists()   # before the folds, not in them


def test_train_and_report(fbank_only, capsys, tmp_path):
    run = tmp_path / "run"
    rc = main(["train", "--model", "tsin", "--cache", str(fbank_only), "--preset", "demo",
               "--set", "text_stage=mfcc", "--set", "text_array=mfcc", "--set", "epochs=2",
               "--protocol", "session", "--dev", "next-session", "--seeds", "2", "--out", str(run), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    r = json.loads((run / "results.json").read_text())
    assert len(r["runs"]) == 10 and r["seeds"] == [0, 1]
    assert [f["name"] for f in r["protocol"]["folds"]] == [f"session={s}" for s in "12345"]
    assert all(rep["ok"] for rep in r["leakage_check"]) and len(r["leakage_check"]) == 5
    assert set(r["features"]) == {"fbank@tsin", "mfcc"}
    assert len(r["features"]["mfcc"]["keys"]) == 32           # 4class items
    assert all(run_["selected_on"] == "dev ua" for run_ in r["runs"])
    assert {"mean", "std_folds", "std_seeds"} <= set(r["overall"]["ua"])
    assert (run / "confusion.png").stat().st_size > 0 and (run / "curves.png").stat().st_size > 0
    capsys.readouterr()

    assert main(["report", str(run)]) == 0
    table = capsys.readouterr().out
    assert f"{100 * r['overall']['ua']['mean']:5.2f}" in table and " demo " in table     # the preset column
    # A demo-preset run never stands beside a paper's figure; the report says why.
    assert "74.92" not in table and "not comparable to 003 TSIN: preset demo, not paper" in table
    # `heads evaluate` of a run reproducing its metrics: the head contract (tests/test_contract_heads.py).


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "tsin" in out and "bert@tsin, fbank@tsin" in out and "speech_only" in out


def test_fold_inputs_take_the_fold_statistics_the_others_their_speakers(fbank_only, capsys, tmp_path):
    import torch

    def trained_state(name, option):
        run = tmp_path / name
        rc = main(["train", "--model", "tsin", "--cache", str(fbank_only), "--preset", "demo",
                   "--set", "text_stage=mfcc", "--set", "text_array=mfcc", "--set", "epochs=1", "--set", option,
                   "--protocol", "session", "--out", str(run), "--quiet"])
        assert rc == 0, capsys.readouterr().err
        return torch.load(run / "checkpoints" / "seed0_fold1.pt", weights_only=False)["state_dict"]

    state = trained_state("run", 'fold_inputs=["text"]')
    # Speech came standardised per speaker; text is standardised in the model by the training fold.
    assert torch.equal(state["mean_speech"], torch.zeros(6)) and torch.equal(state["std_speech"], torch.ones(6))
    assert state["mean_text"].abs().sum() > 0 and not torch.equal(state["std_text"], torch.ones(4))
