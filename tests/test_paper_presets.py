"""Each head's `paper` preset is its paper (MODELS.md): the structure it
builds (layers, heads, feed-forward widths counted on the model), each
auxiliary term of the paper's total loss present and non-zero and no other,
the source tables naming only real heads and fields (that every Config field
has one: tests/test_contract_heads.py), `heads config` printing them, and the
papers' rows in manifests/papers.toml on the protocols the papers state."""
from __future__ import annotations

import dataclasses
import re
import tomllib
import typing

import pytest
import torch
from test_heads_models import N_CLASSES
from test_heads_multilevel import _timed_batch

from heads.cli import main as heads
from heads.head import RUNTIME_FIELDS, TrainConfig, source_tables
from heads.models import load_all

HEADS = load_all()
NAMES = sorted(name for name in HEADS if name not in HEADS.aliases)


def _paper_model(name, **values):
    """The head built from its paper preset, with its training-mode forward
    on a generic batch (word spans included) run once."""
    cls = HEADS[name]
    config = cls.make_config("paper", values)
    batch, dims = _timed_batch(cls, config)
    torch.manual_seed(0)
    model = cls(config, dims, N_CLASSES).train()
    logits = model(batch)
    assert logits.shape == (len(batch["id"]), N_CLASSES)
    return model, config


def _count(model, kind):
    return sum(isinstance(m, kind) for m in model.modules())


def _aux(model):
    return {name: float(term.detach()) for name, term in getattr(model, "aux_losses", {}).items()}


# --- structure: the paper's depths and widths, counted on the built model -----------

def test_hff_paper_core_is_four_encoder_layers_of_eight_heads_with_4x_feed_forward():
    model, c = _paper_model("hff")
    core = model.core
    assert core.depth() == 4 and c.d == 128
    attentions = [m for m in core.modules() if isinstance(m, torch.nn.MultiheadAttention)]
    assert len(attentions) == 4 and {a.num_heads for a in attentions} == {8}
    widths = [core.ff[0].out_features] + [layer.linear1.out_features for layer in core.layers]
    assert widths == [4 * 128] * 4
    # LayerNorm after each attention and each feed-forward block; dropout 0.1 there, 0.3 in the classifier.
    assert _count(core, torch.nn.LayerNorm) == 8
    assert {m.p for m in core.modules() if isinstance(m, torch.nn.Dropout)} == {0.1}
    assert [m.p for m in model.classifier if isinstance(m, torch.nn.Dropout)] == [0.3]
    # The paper's loss is the cross-entropy alone: no uncertainty KL term.
    assert _aux(model) == {} and c.uncertainty and hasattr(model, "variance")


def test_hff_demo_keeps_its_measured_single_attention_layer():
    core = HEADS["hff"](HEADS["hff"].make_config("demo"), {"speech": 6, "text": 5, "visual": 7, "prosody": 9},
                        N_CLASSES).core
    assert core.depth() == 1 and core.ff is None


@pytest.mark.parametrize("name,terms", [
    ("harmofusion", {"consistency"}), ("harmofusion_mg", {"consistency"}),
    ("muse", {"alignment"}), ("muse_mg", {"alignment", "embedding"}),
])
def test_multilevel_paper_depths_and_the_papers_auxiliary_terms(name, terms):
    model, c = _paper_model(name)
    enc = model.encoder
    assert (len(enc.text_encoder), len(enc.cross), len(enc.fusion)) == (1, 1, 2)
    attentions = [m for m in enc.modules() if isinstance(m, torch.nn.MultiheadAttention)]
    # text 1 + cross-modal 2 (self, encoder-decoder) + deep fusion 2
    assert len(attentions) == 5 and {a.num_heads for a in attentions} == {4} and c.d == 128
    assert {layer.linear1.out_features for layer in (*enc.text_encoder, *enc.fusion)} == {4 * 128}
    assert len(enc.highway) == (2 if name.startswith("muse") else 1)
    assert len(enc.prenet.convs) == 3 and _count(enc.mel_prenet, torch.nn.Linear) == 2
    aux = _aux(model)
    assert set(aux) == terms and all(v > 0 for v in aux.values()), aux


def test_tsin_paper_widths_and_unimodal_ablations_without_the_fusion_lstm():
    model, c = _paper_model("tsin")
    assert (model.speech_lstm.hidden_size, model.fusion_lstm.hidden_size) == (768, 512)
    assert [conv.kernel_size[0] for conv in model.mec.convs] == [1, 3, 5] and (c.max_frames, c.max_tokens) == (500, 150)
    assert _count(model, torch.nn.LSTM) == 2
    for ablation in typing.get_args(typing.get_type_hints(HEADS["tsin"].Config)["ablation"]):
        m, _ = _paper_model("tsin", ablation=ablation)
        unimodal = ablation in ("speech_only", "text_only")
        # The paper's unimodal models are the branch's encoder and the MEC classifier.
        assert (m.fusion_lstm is None) == unimodal
        assert _count(m, torch.nn.LSTM) == (1 if ablation == "speech_only" else 0 if unimodal else 2)
        assert m.mec.convs[0].in_channels == (768 if unimodal else 512)


def test_emmanet_paper_streams_and_both_auxiliary_terms():
    model, c = _paper_model("emmanet")
    grus = model.encoders
    assert {m: (g.num_layers, g.bidirectional) for m, g in grus.items()} == \
        {"face": (2, True), "audio": (2, False), "pose": (2, False)}
    assert c.window == 12 and c.fusion == "attention" and c.face_stage == "face@emmanet_expr"
    aux = _aux(model)
    assert set(aux) == {"rec", "smooth"} and all(v > 0 for v in aux.values())


# --- sources --------------------------------------------------------------------------

def test_source_tables_name_only_real_heads_and_fields():
    tables = source_tables()
    train = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(tables["common"]) == train - set(RUNTIME_FIELDS)
    for name, table in tables.items():
        if name == "common":
            continue
        assert name in NAMES, f"[sources.{name}] names no head"
        fields = {f.name for f in dataclasses.fields(HEADS[name].Config)}
        assert set(table) <= fields - set(RUNTIME_FIELDS), f"[sources.{name}]: {set(table) - fields}"


def test_heads_config_prints_the_resolved_preset_with_its_sources(capsys, tmp_path):
    assert heads(["config", "muse_mg", "--preset", "paper"]) == 0
    out = capsys.readouterr().out
    cls = HEADS["muse_mg"]
    config = cls.make_config("paper")
    # Valid TOML whose values are the resolved preset: it reads back through --config.
    values = tomllib.loads(out)
    assert values == {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}
    lines = [line for line in out.splitlines() if not line.startswith("#")]
    assert len(lines) == len(values) and all("  # " in line for line in lines)
    assert 'align_weight = 0.1  # choice: 0.1 for 001 eq. 15' in out
    assert "num_workers = 0  # runtime" in out and "NO SOURCE" not in out
    (tmp_path / "c.toml").write_text(out)
    assert heads(["config", "muse_mg", "--preset", "demo", "--set", "lr=0.5"]) == 0
    demo = capsys.readouterr().out
    assert "lr = 0.5  # --set" in demo and "epochs = 80  # preset demo (paper: 100)" in demo
    assert heads(["config", "nosuchhead"]) == 2


# --- protocols in manifests/papers.toml agree with MODELS.md ------------------------------
from pathlib import Path  # noqa: E402

from heads.protocols import DEV_CHOICES, PROTOCOLS  # noqa: E402
from heads.report import paper_results  # noqa: E402

MODELS_MD = Path(__file__).resolve().parents[2] / "shared" / "MODELS.md"
# Each paper's protocol as MODELS.md states it: (protocol, dev, seeds) per head.
PROTOCOLS_OF = {
    "000": {"iemocap": ("session", "next-session", 3)},
    "001": {"iemocap": ("session", "next-session", 3)},
    "003": {"iemocap": None},               # three protocols (table), no dev, repeats not stated
    "002": {"iemocap": ("hff", None, None), "mosei": ("official", None, None)},
    "004": {"affwild2": ("official", "session-share", None)},
}


def _models_md():
    for candidate in (MODELS_MD, Path("/work/shared/MODELS.md")):
        if candidate.exists():
            return candidate.read_text()
    pytest.skip("../shared/MODELS.md is not beside this checkout")


def test_models_md_still_states_the_protocols_this_test_encodes():
    text = " ".join(_models_md().split())
    assert "On IEMOCAP both are leave-one-session-out with the next session as dev" in text
    assert "3 repeats" in text
    assert "a dev part made of a share of the training videos, by video" in text
    assert "sessions 1-4 for training with 10% of their dialogues as dev, session 5 for test" in text


def test_papers_rows_use_the_protocols_their_papers_state():
    rows = paper_results()
    assert rows
    for row in rows:
        paper = row["paper"][:3]
        assert PROTOCOLS.get(row["protocol"]) and row.get("dev", "none") in DEV_CHOICES, row["paper"]
        stated = PROTOCOLS_OF[paper][row["dataset"]]
        if stated is None:
            assert "dev" not in row and "seeds" not in row, row["paper"]
            continue
        protocol, dev, seeds = stated
        assert (row["protocol"], row.get("dev"), row.get("seeds")) == (protocol, dev, seeds), row["paper"]
        assert "ratios" not in row, f"{row['paper']}: a shuffled ratio split is speaker dependent"


def _tsin_table(text):
    """MODELS.md §1's protocol table: protocol name -> (folds, WA, UA)."""
    names = {"SesI": "session", "SpkI": "speaker", "SpkD": "kfold"}
    out = {}
    for m in re.finditer(r"^\| (SesI|SpkI|SpkD)[^|]*\| (\d+) \| ([\d.]+) \| ([\d.]+) \|", text, re.M):
        out[names[m.group(1)]] = (int(m.group(2)), float(m.group(3)) / 100, float(m.group(4)) / 100)
    return out


def test_tsin_rows_match_models_md_table():
    table = _tsin_table(_models_md())
    assert set(table) == {"session", "speaker", "kfold"}
    rows = {r["protocol"]: r for r in paper_results() if r["head"] == "tsin" and r["variant"] == "full"}
    for protocol, (folds, wa, ua) in table.items():
        row = rows[protocol]
        assert (row["wa"], row["ua"]) == pytest.approx((wa, ua)), protocol
        if protocol == "kfold":
            assert row["folds"] == folds
