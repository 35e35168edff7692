"""Modality dropout (heads/regularize.py, applied in Head.forward): disjoint
shares, off in evaluation, a lost group at its standardised centre, raw
inputs never dropped, bad options refused."""
from __future__ import annotations

import pytest
import torch

from heads.head import Head, Input, TrainConfig
from heads.regularize import drop_groups, lost_groups, parse_shares
from pipeline.stage import ConfigError

INPUTS = {"a": Input("s", "a", "seq"), "b": Input("s", "b", "vec"), "ids": Input("s", "i", "ids"),
          "times": Input("s", "t", "raw")}


class Recorder(Head):
    """A head that keeps the batch `classify` sees."""
    name = "recorder"

    @classmethod
    def inputs(cls, config):
        return INPUTS

    def classify(self, batch):
        self.seen = batch
        return torch.zeros(len(batch["id"]), self.n_classes)


def _batch(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"id": [str(i) for i in range(n)], "label": torch.zeros(n, dtype=torch.long),
            "a": torch.randn(n, 3, 2, generator=g) + 5, "a_mask": torch.ones(n, 3, dtype=torch.bool),
            "b": torch.randn(n, 4, generator=g) - 3, "ids": torch.randint(1, 9, (n, 3, 1), generator=g),
            "ids_mask": torch.ones(n, 3, dtype=torch.bool), "times": torch.rand(n, 3, 2, generator=g),
            "times_mask": torch.ones(n, 3, dtype=torch.bool)}


def test_shares_are_disjoint_and_respected():
    u = torch.rand(20000, generator=torch.Generator().manual_seed(0))
    lost = lost_groups(u, {"a": 0.1, "b": 0.25, "ids": 0.3})
    stacked = torch.stack(list(lost.values()), 1)
    assert stacked.sum(1).max() == 1                   # no item loses two groups
    shares = stacked.float().mean(0).tolist()
    assert shares == pytest.approx([0.1, 0.25, 0.3], abs=0.015)
    assert (stacked.sum(1) == 0).float().mean() == pytest.approx(0.35, abs=0.015)   # the others keep all


def test_a_lost_group_is_its_standardised_centre_and_raw_inputs_are_kept():
    config = TrainConfig(modality_dropout=("a:0.3", "b:0.3", "ids:0.3"))
    model = Recorder(config, {"a": 2, "b": 4}, 3)
    model.mean_a.fill_(5.0)
    model.mean_b.fill_(-3.0)
    batch = _batch(400)
    torch.manual_seed(0)
    model.train()(batch)
    seen = model.seen
    centred = {"a": batch["a"] - 5.0, "b": batch["b"] + 3.0, "ids": batch["ids"]}
    lost = {}
    for name, x in centred.items():
        zero = (seen[name] == 0).flatten(1).all(1)
        kept = (seen[name] == x).flatten(1).all(1)
        assert bool((zero | kept).all())              # each item's input: intact, or all at the centre
        lost[name] = zero
    assert torch.stack(list(lost.values()), 1).sum(1).max() == 1
    assert all(0.2 < v.float().mean() < 0.4 for v in lost.values())
    assert torch.equal(seen["times"], batch["times"])                 # raw inputs are never dropped
    assert all(torch.equal(seen[f"{n}_mask"], batch[f"{n}_mask"]) for n in ("a", "ids", "times"))
    assert Recorder.modality_groups(config) == {"a": ("a",), "b": ("b",), "ids": ("ids",)}


def test_modality_dropout_is_off_in_evaluation():
    model = Recorder(TrainConfig(modality_dropout=("a:0.5", "b:0.4")), {"a": 2, "b": 4}, 3).eval()
    plain = Recorder(TrainConfig(), {"a": 2, "b": 4}, 3).eval()
    batch = _batch(50)
    model(batch)
    plain(batch)
    assert all(torch.equal(model.seen[k], plain.seen[k]) for k in ("a", "b", "ids", "times"))


def test_groups_of_several_inputs_are_lost_together():
    out = drop_groups(_batch(300), {"pair": ("a", "b")}, {"pair": 0.5})
    lost_a = (out["a"] == 0).flatten(1).all(1)
    assert torch.equal(lost_a, (out["b"] == 0).all(1)) and 0.35 < lost_a.float().mean() < 0.65


@pytest.mark.parametrize("entries,message", [
    (("a",), "is not GROUP:SHARE"), (("a:x",), "is not GROUP:SHARE"), (("a:-0.1",), "must be >= 0"),
    (("a:0.5", "b:0.5"), "add up to 1"), (("a:0.1", "a:0.2"), "given twice")])
def test_bad_shares_are_refused(entries, message):
    with pytest.raises(ConfigError, match=message):
        parse_shares(entries)


def test_check_refuses_unknown_and_raw_groups():
    with pytest.raises(ConfigError, match=r"unknown group\(s\) \['times'\]"):
        Recorder.check(TrainConfig(modality_dropout=("times:0.2",)))
    Recorder.check(TrainConfig(modality_dropout=("a:0.2", "ids:0.2")))
