"""HFF: every modality subset and switch through the generic head checks,
the level-1 weights against their formulas, the alignment resampling, and
the hff protocol (last session tested, whole dialogues held out as dev)."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from heads_fake import fake_items
from test_heads_models import N_CLASSES, _batch, check_forward_backward, check_padding_changes_nothing, check_tiny_overfit

from heads.models import load_all
from heads.models._hff_encoders import SpeechEncoder, max_bins, resample_steps
from heads.models.hff import DynamicWeights, combine, confidence, fused_variance, uncertainty_weights
from heads.protocols import Fold, LeakageError, Options, ProtocolError, assert_no_leakage, make_folds
from pipeline.stage import ConfigError

HFF = load_all()["hff"]
SUBSETS = ("s", "t", "v", "st", "sv", "tv", "stv")
SWITCHES = ({}, {"no_attention": True}, {"no_dynamic_weighting": True}, {"no_temporal": True},
            {"no_alignment": True}, {"uncertainty": False},
            {"no_attention": True, "no_temporal": True, "no_alignment": True, "no_dynamic_weighting": True})
# Every subset with the full model; every switch with all three modalities,
# one modality alone and a pair (the switches change how modalities meet).
GRID = [(m, {}) for m in SUBSETS] + [(m, s) for s in SWITCHES[1:] for m in ("stv", "s", "tv")]
# The speech CNN's two forms (the fake 2-D input is 2 coefficients per plane), and
# its steps max-pooled rather than averaged onto the aligned steps.
CNNS = [({"speech_conv": "1d"}, "1d"), ({"speech_conv": "2d", "speech_planes": 1}, "2d-1plane"),
        ({"speech_conv": "2d", "speech_planes": 5}, "2d-5planes"),
        ({"speech_bins": "max", "steps": 3}, "max-bins")]


def _hff(**values):
    return HFF.make_config("demo", values)


def _name(case):
    return case if isinstance(case, str) else "+".join(case) or "full"


@pytest.mark.parametrize("modalities,switches", GRID, ids=[f"{m}-{_name(s)}" for m, s in GRID])
def test_every_subset_and_switch_runs_and_ignores_padding(modalities, switches):
    config = _hff(modalities=modalities, **switches)
    check_forward_backward(HFF, config)
    check_padding_changes_nothing(HFF, config)


@pytest.mark.parametrize("cnn", [c for c, _ in CNNS], ids=[n for _, n in CNNS])
def test_both_speech_cnns_run_and_ignore_padding(cnn):
    for modalities in ("s", "stv"):
        config = _hff(modalities=modalities, **cnn)
        check_forward_backward(HFF, config)
        check_padding_changes_nothing(HFF, config)


OVERFIT = ([(m, {}) for m in SUBSETS] + [("stv", s) for s in SWITCHES[1:]]
           + [("s", {"speech_conv": "1d"}), ("s", {"speech_bins": "max"})])


@pytest.mark.parametrize("modalities,switches", OVERFIT, ids=[f"{m}-{_name(s)}" for m, s in OVERFIT])
def test_every_subset_and_switch_fits_a_tiny_batch(modalities, switches, tmp_path):
    # Without modality dropout, like without dropout: the fit is measured in training mode.
    check_tiny_overfit(HFF, _hff(modalities=modalities, modality_dropout=(), **switches), tmp_path)


def test_2d_speech_cnn_reads_the_mfcc_matrix_as_planes():
    """Input steps [c_1..c_4, d_1..d_4] (2 planes of 4): with one 1x1
    kernel that keeps the delta plane, a layer gives the max of relu(d) over
    each 2 x 2 block of (frames, coefficients), and the identity output layer
    passes those 2 values per pooled step through."""
    config = _hff(speech_conv="2d", speech_planes=2, speech_channels=(1,), speech_kernel=1, d=2, heads=1,
                  frame_track="")
    encoder = SpeechEncoder(8, config, True, True)
    with torch.no_grad():
        encoder.convs[0].weight.copy_(torch.tensor([0.0, 1.0]).view(1, 2, 1, 1))
        encoder.convs[0].bias.zero_()
        encoder.fc.weight.copy_(torch.eye(2))
        encoder.fc.bias.zero_()
    ceps = torch.full((3, 4), 100.0)
    deltas = torch.tensor([[1.0, -2, 3, 0], [-1, 5, -3, -4], [2, 2, 2, 9]])
    x = torch.cat([ceps, deltas], 1)[None]                            # (1, T=3, 8)
    steps, mask, vector = encoder(x, torch.ones(1, 3, dtype=torch.bool))
    expected = torch.tensor([[5.0, 3.0], [2.0, 9.0]])                 # frames (1, 2) and (3)
    assert torch.equal(steps[0], expected) and mask.tolist() == [[True, True]]
    assert torch.equal(vector[0], expected.max(0).values)
    with pytest.raises(ConfigError, match="speech_planes"):
        SpeechEncoder(7, config, True, True)
    with pytest.raises(ConfigError, match="speech input width 7 is not 2 planes"):
        HFF.check_dims(config, {"speech": 7, "text": 5})
    HFF.check_dims(config, {"speech": 8})
    HFF.check_dims(_hff(speech_conv="1d"), {"speech": 7})


def test_2d_speech_cnn_refuses_a_joined_track_that_is_not_whole_planes():
    """The demo's eGeMAPS LLDs (25) joined to 120 MFCCs (3 planes of 40) are
    145 per frame: not planes, so the demo preset takes the 1-D CNN."""
    assert _hff().speech_conv == "1d"
    config = _hff(speech_conv="2d")
    with pytest.raises(ConfigError, match=r"width 145 \(the MFCC frames joined with "
                                          r"frame_track=opensmile@egemaps_lld:lld; use speech_conv=1d\)"):
        HFF.check_dims(config, {"speech": 145, "text": 5})
    HFF.check_dims(config, {"speech": 150})                              # 25 joined to 125: 3 planes of 50
    HFF.check_dims(_hff(), {"speech": 145})


def test_variant_names_and_inputs():
    assert _hff().ablation == "full"
    assert _hff(modalities="ts").ablation == "st"            # letters in the fusion's order
    assert _hff(modalities="tv", no_alignment=True).ablation == "tv+no_alignment"
    assert _hff(uncertainty=False).ablation == "no_uncertainty"
    # The frame track is read with the speech (joined to its frames), never without it.
    sv = HFF.declared_inputs(_hff(modalities="sv"))
    assert sorted(sv) == ["speech", "visual"] and sv["speech"].track.stage == "opensmile@egemaps_lld"
    assert sv["speech"].pool == 4 and sv["visual"].track is None and sv["visual"].pool == 1
    assert sorted(HFF.declared_inputs(_hff(modalities="tv"))) == ["text", "visual"]
    # Every modality is a group in every ablation: the demo's dropout serves them all.
    assert HFF.modality_groups(_hff(modalities="sv")) == {"speech": ("speech",), "text": ("text",),
                                                         "visual": ("visual",)}
    assert _hff(modalities="t").modality_dropout == ("speech:0.1", "text:0.1", "visual:0.1")
    paper = HFF.make_config("paper")
    assert HFF.stages(paper) == ["bert@hff", "frames@hff", "mfcc@hff"]
    assert HFF.stages(_hff()) == ["bert@hff", "frames@hff_demo", "mfcc@hff", "opensmile@egemaps_lld"]


def test_paper_preset_is_the_papers_recipe():
    c = HFF.make_config("paper")
    assert (c.d, c.steps, c.heads, c.classifier_dropout, c.dropout) == (128, 32, 8, 0.3, 0.1)
    assert (c.optimizer, c.lr, c.schedule, c.batch_size, c.epochs, c.patience) == ("adamw", 3e-4, "plateau", 64, 50, 5)
    assert c.weight_decay > 0 and c.clip > 0


@pytest.mark.parametrize("values,message", [
    ({"modalities": ""}, "non-empty subset"), ({"modalities": "sx"}, "non-empty subset"),
    ({"modalities": "ss"}, "each once"), ({"d": 60, "heads": 8}, "divisible"),
    ({"speech_kernel": 4}, "odd"), ({"confidence_eps": 0.0}, "confidence_eps"),
    ({"speech_planes": 0}, "planes"), ({"speech_conv": "3d"}, "speech_conv"),
    ({"modality_dropout": ("face:0.1",)}, r"unknown group\(s\) \['face'\] \(groups: \['speech', 'text', 'visual'\]\)"),
])
def test_bad_options_fail_before_any_work(values, message):
    with pytest.raises(ConfigError, match=message):
        _hff(**values)


def test_output_width_is_n_classes_given():
    """One output for a regression task, as many as classes otherwise."""
    config = _hff()
    batch, dims = _batch(HFF, config)
    assert HFF(config, dims, 1)(batch).shape == (3, 1)
    assert HFF(config, dims, 6)(batch).shape == (3, 6)


def test_dynamic_weights_are_a_softmax_of_the_concatenated_vectors():
    dyn = DynamicWeights(2, 3)
    with torch.no_grad():
        dyn.linear.weight.copy_(torch.tensor([[1.0, 0, 0, 0, 0, 0],
                                              [0, 0, 0, 1.0, 0, 0],
                                              [0, 0, 0, 0, 0, 2.0]]))
        dyn.linear.bias.copy_(torch.tensor([0.0, 0.5, 0.0]))
    vectors = torch.tensor([[[1.0, 9.0], [3.0, 2.0], [7.0, 0.5]]])   # (B=1, M=3, d=2)
    logits = torch.tensor([1.0, 2.0 + 0.5, 2 * 0.5])
    expected = torch.exp(logits) / torch.exp(logits).sum()
    assert torch.allclose(dyn(vectors)[0], expected, atol=1e-6)


def test_uncertainty_weighting_follows_its_formula():
    eps = 0.1
    alpha = torch.tensor([[0.5, 0.3, 0.2]])
    variances = torch.tensor([[[0.1, 0.3], [1.0, 1.0], [4.0, 2.0]]])    # (B, M, d)
    logvar = variances.log()
    conf = 1.0 / (torch.tensor([0.2, 1.0, 3.0]) + eps)                  # 1 / (mean sigma^2 + eps)
    assert torch.allclose(confidence(logvar, eps)[0], conf)
    w = alpha[0] * conf
    w = w / w.sum()
    weights = uncertainty_weights(alpha, logvar, eps)
    assert torch.allclose(weights[0], w) and torch.isclose(weights.sum(), torch.tensor(1.0))
    assert weights[0, 0] > alpha[0, 0] and weights[0, 2] < alpha[0, 2]   # confident gains, unsure loses
    # Fused variance of the weighted sum: sum_m w_m^2 sigma_m^2 per feature, at every step.
    expected = (w[:, None] ** 2 * variances[0]).sum(0)
    assert torch.allclose(fused_variance(weights, logvar, aligned=True)[0, 0], expected)
    # Not aligned: each modality token keeps its own, scaled like the token (by M w_m).
    assert torch.allclose(fused_variance(weights, logvar, aligned=False)[0], (3 * w[:, None]) ** 2 * variances[0])
    steps = torch.randn(1, 3, 4, 2)
    assert torch.allclose(combine(weights, steps, True)[0], (w[:, None, None] * steps[0]).sum(0), atol=1e-6)


def test_noise_and_the_uncertainty_term_only_while_training():
    config = _hff(uncertainty_weight=0.5)
    batch, dims = _batch(HFF, config)
    model = HFF(config, dims, N_CLASSES)
    with torch.no_grad():
        for head in model.variance.values():
            head.bias.fill_(1.0)                       # large variances: visible noise
        model.train()
        torch.manual_seed(1)
        a = model(batch)
        assert float(model.aux_losses["uncertainty"]) > 0
        torch.manual_seed(2)
        assert not torch.allclose(a, model(batch))
        model.eval()
        assert torch.equal(model(batch), model(batch))
    no_unc = HFF(_hff(no_dynamic_weighting=True), dims, N_CLASSES)
    no_unc(batch)
    assert no_unc.aux_losses == {} and not hasattr(no_unc, "variance")


def test_resample_steps_spreads_each_item_over_its_own_span():
    x = torch.tensor([[[1.0], [2.0], [3.0], [4.0]], [[5.0], [7.0], [99.0], [99.0]]])
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    out = resample_steps(x, mask, 2)                                      # 4 -> 2: pairs averaged
    assert torch.allclose(out[0, :, 0], torch.tensor([1.5, 3.5]))
    assert torch.allclose(out[1, :, 0], torch.tensor([5.0, 7.0]))         # padding never counts
    up = resample_steps(x[1:, :2], mask[1:, :2], 4)                       # 2 -> 4: each step twice
    assert torch.allclose(up[0, :, 0], torch.tensor([5.0, 5.0, 7.0, 7.0]))
    odd = resample_steps(torch.tensor([[[0.0], [3.0], [6.0]]]), torch.ones(1, 3, dtype=torch.bool), 2)
    assert torch.allclose(odd[0, :, 0], torch.tensor([1.0, 5.0]))         # overlap-weighted: (0*2+3)/3
    empty = resample_steps(x[:1], torch.zeros(1, 4, dtype=torch.bool), 3)
    assert torch.equal(empty, torch.zeros(1, 3, 1))


def test_max_bins_keep_the_largest_step_overlapping_each_bin():
    x = torch.tensor([[[1.0], [5.0], [2.0], [0.0]], [[3.0], [-1.0], [99.0], [99.0]]])
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    assert torch.equal(max_bins(x, mask, 2)[..., 0], torch.tensor([[5.0, 2.0], [3.0, -1.0]]))
    assert torch.equal(max_bins(x, mask, 1)[..., 0], torch.tensor([[5.0], [3.0]]))     # padding never wins
    odd = max_bins(torch.tensor([[[4.0], [0.0], [1.0]]]), torch.ones(1, 3, dtype=torch.bool), 2)
    assert torch.equal(odd[0, :, 0], torch.tensor([4.0, 1.0]))           # the middle step overlaps both bins
    assert torch.equal(max_bins(x, torch.zeros(2, 4, dtype=torch.bool), 3), torch.zeros(2, 3, 1))


# --- the hff protocol --------------------------------------------------------------

def _dialog_items():
    """5 sessions x 2 speakers x 6 items, three dialogues per session."""
    return [dataclasses.replace(it, extra={"dialog": f"Ses0{it.session}_d{int(it.id[-3:]) % 3}"})
            for it in fake_items(sessions=5, per_speaker=6)]


def test_hff_protocol_tests_the_last_session_and_holds_out_whole_dialogues():
    items = _dialog_items()
    by_id = {it.id: it for it in items}
    (fold,), (report,) = make_folds("hff", items, Options(seed=0))
    assert report["ok"] and "dialogs train/dev disjoint" in report["checks"]
    assert {by_id[i].session for i in fold.test} == {"5"}
    assert {by_id[i].session for i in fold.train + fold.dev} == {"1", "2", "3", "4"}
    dev_dialogs = {by_id[i].extra["dialog"] for i in fold.dev}
    assert len(dev_dialogs) == 1                                         # a tenth of 12, at least one
    assert not dev_dialogs & {by_id[i].extra["dialog"] for i in fold.train}
    assert len(fold.train) + len(fold.dev) + len(fold.test) == len(items)
    assert make_folds("hff", items, Options(seed=0))[0][0].dev == fold.dev      # the seed decides
    assert len({tuple(make_folds("hff", items, Options(seed=s))[0][0].dev) for s in range(5)}) > 1


def test_hff_protocol_refuses_what_it_cannot_split():
    with pytest.raises(ProtocolError, match="own dev part"):
        make_folds("hff", _dialog_items(), Options(dev="next-session"))
    with pytest.raises(ProtocolError, match="no dialog"):
        make_folds("hff", fake_items(sessions=2, per_speaker=2))


def test_leakage_check_catches_a_dialogue_on_two_sides():
    items = _dialog_items()
    (fold,), _ = make_folds("hff", items)
    by_id = {it.id: it for it in items}
    moved = next(i for i in fold.train if by_id[i].extra["dialog"].endswith("d0"))
    dialog = by_id[moved].extra["dialog"]
    dev = [i for i in fold.train if by_id[i].extra["dialog"] == dialog][:1]
    leaky = Fold(fold.name, [i for i in fold.train if i not in dev], fold.test, fold.dev + dev, "session",
                 unit="dialog")
    with pytest.raises(LeakageError, match=f"dialog {dialog} is in both train and dev"):
        assert_no_leakage([leaky], items)
