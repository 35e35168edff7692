"""Acceptance (`make acceptance`): the full CMU-MOSEI and MELD demo corpora,
extracted and trained end to end with the official splits.

- HFF (`--preset demo`) regresses MOSEI sentiment with the L1 loss, selects
  on the official valid part, and reports ACC-2 (both conventions), ACC-7,
  MAE and Pearson r, with the paper's MOSEI row beside them.
- The text baseline `bert_mlp` classifies MELD's seven emotions, selects on
  the official dev part, and reports weighted F1.

The demo corpora make sentiment and emotion learnable from the words and the
prosody, so the thresholds are far above chance (ACC-7 chance ~ 0.2, seven
MELD classes ~ 0.14) while leaving room for the seeds' spread."""
from __future__ import annotations

import pytest

from heads.cli import main as heads
from tests.helpers import demo_cache, train_run


def _train(cache, model, labelset):
    return train_run(cache, cache.parent / "run", model, "--set", f"labelset={labelset}", protocol="official")


@pytest.mark.acceptance
def test_hff_regresses_mosei_sentiment(tmp_path_factory, capsys):
    base = tmp_path_factory.mktemp("mosei_acceptance")
    cache = demo_cache(base, "mosei", "CMU_MOSEI", "hff")
    r = _train(cache, "hff", "sentiment")
    assert r["task"] == {"kind": "regression", "value_range": [-3, 3]}
    (fold,) = r["protocol"]["folds"]
    assert fold["name"] == "official" and min(fold["train"], fold["dev"], fold["test"]) > 0
    assert r["runs"][0]["selected_on"] == "dev loss" and all(c["ok"] for c in r["leakage_check"])
    o = {k: r["overall"][k]["mean"] for k in ("acc2", "acc2_nonzero", "acc7", "mae", "corr")}
    assert o["acc2"] >= 0.85 and o["acc2_nonzero"] >= 0.85, o
    assert o["acc7"] >= 0.45 and o["mae"] <= 0.6 and o["corr"] >= 0.85, o
    capsys.readouterr()
    assert heads(["report", str(base / "run")]) == 0
    table = capsys.readouterr().out
    assert "ACC-2" in table and "ACC-7" in table and "paper 002 HFF" in table and "84.60" in table


@pytest.mark.acceptance
def test_bert_mlp_classifies_meld_emotions(tmp_path_factory):
    base = tmp_path_factory.mktemp("meld_acceptance")
    cache = demo_cache(base, "meld", "MELD.Raw", "bert_mlp")
    r = _train(cache, "bert_mlp", "7class")
    assert r["task"]["kind"] == "classification" and r["classes"][:2] == ["neutral", "joy"]
    (fold,) = r["protocol"]["folds"]
    assert fold["name"] == "official" and min(fold["train"], fold["dev"], fold["test"]) > 0
    assert r["runs"][0]["selected_on"] == "dev ua"
    wf1 = r["overall"]["wf1"]["mean"]
    assert wf1 >= 0.8, f"bert_mlp MELD weighted F1 {wf1:.3f} < 0.8"
