"""HarmoFusion / MUSE: the multilevel transformer and the multigranular model
(MODELS.md §2, papers/000 and papers/001).

The two papers describe one network, so one implementation is registered
under both names with two default configs (MUSE: two highway layers):

- `harmofusion`, `muse`: the multilevel (fine-grained) transformer. Each
  word's phoneme ids are embedded, convolved and max-pooled into one vector;
  it is fused with the word's vector (GloVe stage) by `fusion`: `highway`
  (`highway_layers` highway layers over the concatenation), `concat`, or a
  single source (`phoneme`, `word`). An encoder pre-net (3 Conv1d + a
  projection), sinusoidal positions and `text_layers` transformer encoder
  layers encode the words. The mel frames go through a 2-layer FC pre-net
  with a learned dummy frame in front (as BERT's [CLS]) and positions; the
  cross-modal module (`cross_layers`: self-attention over the frames, then
  attention with the frames as queries over the words) and the deep fusion
  module (`fusion_layers` encoder layers) follow; the dummy position's output
  is the utterance vector, and a linear layer gives the logits.
- `harmofusion_mg`, `muse_mg`: the multigranular model. The BERT [CLS]
  vector and the utterance vector are each projected to `proj_dim`, then
  concatenated (or, with `gate`, mixed as a*C + (1-a)*F with an element-wise
  gate a = sigmoid(W [C; F] + b)) and classified by a linear layer.

Auxiliary losses (weights default 0, i.e. off; each paper preset turns on
the terms of that paper's total loss: manifests/harmofusion.toml, muse.toml):
- `consistency_weight` (HarmoFusion): the squared distance between the
  outputs of the last two deep-fusion layers (with one layer: its input and
  output), averaged over the valid frames and the dummy position; without
  deep-fusion layers (the no_deep_fusion ablation) there is no such term.
- `align_weight` (MUSE): KL(target || attention) per mel frame, over the
  last cross-modal layer's frame-to-word attention (mean over heads). The
  paper leaves the target undefined; ours (MODELS.md §2): from the words
  stage's times, a frame's target is one-hot on the word spoken at the
  frame's time, smoothed by `align_epsilon` over the item's words; frames
  outside every word, the dummy, and items without word times take no part.
  The paper writes KL(A || target); we use the target first (a cross-entropy
  to the target up to a constant), which is finite whatever the attention.
- `emb_align_weight` (MUSE, multigranular): the squared distance between
  the projected [CLS] and utterance vectors, averaged over the items.

Our choices where the papers are vague (options where named): phoneme
embedding and CNN width `phoneme_dim` (kernel `phoneme_kernel`, ReLU);
encoder pre-net kernels `prenet_kernel` with ReLU and dropout and no batch
norm (its batch statistics would mix padding into real steps); mel pre-net
hidden width `mel_hidden`; feed-forward width `ff_dim`; the highway layers
keep PyTorch's default initialisation; post-norm layers (`norm_first`:
pre-norm); the dummy frame is a learned vector in the (standardised)
filterbank space, prepended before the mel pre-net; an item with no words
attends to one zero word so attention stays defined. The cross-modal
attention has no attention dropout, so its weights are a distribution for
the KL term. The multigranular recipe selects on dev weighted F1 (the paper
says "F1").

The speech input is the heads' frame input (`frames = "speech"`): the shared
options `frame_pool` and `frame_track` (heads/head.py) average its frames and
join a second frame track (e.g. eGeMAPS LLDs) to each of them before the
model sees it; the alignment target counts `frame_pool` stage frames to a
step. For the shared modality dropout (heads/regularize.py) the text is one
group: the words and phoneme ids (and, in the multigranular model, the
[CLS]); the speech frames another; the multigranular model's [CLS] alone a
third, so the fine-grained branch can be made to read words the [CLS] would
otherwise carry.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from pipeline.stage import ConfigError

from ..head import Head, Input, SelectMetric, TrainConfig
from . import HEADS
from ._multilevel_net import Gate, MultilevelTransformer, frame_seconds

FUSIONS = ("highway", "concat", "phoneme", "word")
# The variant name a run is reported under (papers.toml rows, run folders).
_VARIANTS = {"highway": "full", "concat": "concat", "phoneme": "phoneme_only", "word": "word_only"}


@dataclass(frozen=True)
class Config(TrainConfig):
    # inputs: stage configurations (manifests/harmofusion.toml)
    speech_stage: str = "fbank@harmofusion"
    speech_array: str = "fbank"
    phoneme_stage: str = "phonemes"
    word_stage: str = "glove"
    word_array: str = "vectors"
    times_stage: str = "words"      # word spans, read only for the alignment loss
    max_frames: int = 1000          # 12 s at a 12 ms hop
    max_words: int = 100
    # word level
    fusion: Literal["highway", "concat", "phoneme", "word"] = "highway"
    highway_layers: int = 1
    phoneme_vocab: int = 70         # ids 1..69 cover the phonemes stage with stress; 0 is padding
    phoneme_dim: int = 128
    phoneme_kernel: int = 3
    # transformer
    d: int = 128
    heads: int = 4
    ff_dim: int = 512
    prenet_kernel: int = 5
    mel_hidden: int = 256
    text_layers: int = 1
    cross_layers: int = 1
    fusion_layers: int = 2
    dropout: float = 0.1
    norm_first: bool = False        # pre-norm layers (False: post-norm, as the original transformer)
    # auxiliary losses (0 = off)
    consistency_weight: float = 0.0
    align_weight: float = 0.0
    align_epsilon: float = 0.1
    # the papers' recipe (fine-grained model): early stopping on dev WA
    epochs: int = 100
    batch_size: int = 4
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-5
    weight_decay: float = 0.0
    select_metric: SelectMetric = "wa"
    patience: int = 10


@dataclass(frozen=True)
class MuseConfig(Config):
    highway_layers: int = 2


@dataclass(frozen=True)
class MGConfig(Config):
    cls_stage: str = "bert@tsin"
    cls_array: str = "cls"
    proj_dim: int = 128
    gate: bool = False
    emb_align_weight: float = 0.0
    # the multigranular recipe: early stopping on dev F1
    batch_size: int = 8
    lr: float = 5e-5
    select_metric: SelectMetric = "wf1"


@dataclass(frozen=True)
class MuseMGConfig(MGConfig):
    highway_layers: int = 2


@HEADS.register()
class HarmoFusion(Head):
    name = "harmofusion"
    description = "multilevel transformer: phonemes + words x mel frames, dummy-frame readout"
    Config = Config
    frames = "speech"

    @classmethod
    def inputs(cls, config) -> dict:
        out = {"speech": Input(config.speech_stage, config.speech_array, "seq", config.max_frames)}
        if config.fusion != "word":
            # Flat ids of every word's phonemes, cut into words by `lengths` in the head.
            out["phoneme_ids"] = Input(config.phoneme_stage, "ids", "ids")
            out["phoneme_lengths"] = Input(config.phoneme_stage, "lengths", "ids", config.max_words)
        if config.fusion != "phoneme":
            out["words"] = Input(config.word_stage, config.word_array, "seq", config.max_words)
        if config.align_weight > 0:
            out["spans"] = Input(config.times_stage, "spans", "raw", config.max_words)
        return out

    @classmethod
    def modality_groups(cls, config) -> dict:
        """The text (words and phoneme ids, whichever are read) and the speech."""
        text = tuple(n for n in ("words", "phoneme_ids") if n in cls.inputs(config))
        return {"text": text, "speech": ("speech",)}

    @classmethod
    def variant(cls, config) -> str:
        """The papers' ablation names: full (highway), concat, phoneme_only,
        word_only, no_deep_fusion."""
        return "no_deep_fusion" if config.fusion_layers == 0 else _VARIANTS[config.fusion]

    @classmethod
    def check(cls, config):
        super().check(config)
        c = config
        if min(c.d, c.heads, c.ff_dim, c.mel_hidden, c.phoneme_dim, c.phoneme_vocab, c.max_frames,
               c.max_words, c.cross_layers) < 1:
            raise ConfigError(f"head {cls.name}: widths, length caps and cross_layers must be >= 1")
        if min(c.text_layers, c.fusion_layers) < 0:
            raise ConfigError(f"head {cls.name}: text_layers and fusion_layers must be >= 0")
        if c.d % c.heads:
            raise ConfigError(f"head {cls.name}: d={c.d} must be a multiple of heads={c.heads}")
        if c.fusion == "highway" and c.highway_layers < 1:
            raise ConfigError(f"head {cls.name}: fusion=highway needs highway_layers >= 1")
        if any(k < 1 or k % 2 == 0 for k in (c.phoneme_kernel, c.prenet_kernel)):
            raise ConfigError(f"head {cls.name}: phoneme_kernel and prenet_kernel must be odd and >= 1")
        for name in ("consistency_weight", "align_weight", "emb_align_weight"):
            if getattr(c, name, 0.0) < 0:
                raise ConfigError(f"head {cls.name}: {name} must be >= 0")
        if not 0 <= c.align_epsilon < 1:
            raise ConfigError(f"head {cls.name}: align_epsilon must be in [0, 1)")
        if c.align_weight > 0:
            frame_seconds(c)        # the speech stage must have a frame rate

    def __init__(self, config, dims, n_classes):
        super().__init__(config, dims, n_classes)
        self.encoder = MultilevelTransformer(config, dims)
        self.dropout = nn.Dropout(config.dropout)
        self.build_classifier(n_classes)

    def build_classifier(self, n_classes):
        self.fc = nn.Linear(self.config.d, n_classes)

    def classify(self, batch):
        self.aux_losses = {}
        return self.readout(self.encoder(batch, self.aux_losses), batch)

    def readout(self, utterance, batch):
        return self.fc(self.dropout(utterance))


@HEADS.register()
class Muse(HarmoFusion):
    name = "muse"
    description = "MUSE multilevel transformer (HarmoFusion with two highway layers; alignment losses)"
    Config = MuseConfig


@HEADS.register()
class HarmoFusionMG(HarmoFusion):
    name = "harmofusion_mg"
    description = "multigranular: BERT [CLS] + the multilevel transformer's vector, optional gate"
    Config = MGConfig

    @classmethod
    def inputs(cls, config) -> dict:
        return {**super().inputs(config), "cls": Input(config.cls_stage, config.cls_array, "vec")}

    @classmethod
    def check(cls, config):
        super().check(config)
        if config.proj_dim < 1:
            raise ConfigError(f"head {cls.name}: proj_dim must be >= 1")

    def build_classifier(self, n_classes):
        c = self.config
        self.proj_cls = nn.Linear(self.dims["cls"], c.proj_dim)
        self.proj_fine = nn.Linear(c.d, c.proj_dim)
        self.gate = Gate(c.proj_dim) if c.gate else None
        self.fc = nn.Linear(c.proj_dim if c.gate else 2 * c.proj_dim, n_classes)

    @classmethod
    def modality_groups(cls, config) -> dict:
        """The text group holds the [CLS] too; the [CLS] is also a group alone."""
        groups = super().modality_groups(config)
        return {**groups, "text": (*groups["text"], "cls"), "cls": ("cls",)}

    def readout(self, utterance, batch):
        c = self.proj_cls(batch["cls"])
        f = self.proj_fine(utterance)
        if self.config.emb_align_weight > 0:
            gap = (c - f).pow(2).sum(-1)
            self.aux_losses["embedding"] = self.config.emb_align_weight * gap.mean()
        joint = self.gate(c, f) if self.gate is not None else torch.cat([c, f], -1)
        return self.fc(self.dropout(joint))


@HEADS.register()
class MuseMG(HarmoFusionMG):
    name = "muse_mg"
    description = "MUSE multigranular (BERT [CLS] + the MUSE multilevel transformer)"
    Config = MuseMGConfig
