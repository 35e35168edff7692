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
the terms of that paper's total loss, `PAPER_LOSSES`):
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
  the projected [CLS] and utterance vectors, over the items whose [CLS] the
  modality dropout left in place.

Our choices where the papers are vague (all configurable): phoneme
embedding and CNN width `phoneme_dim` (kernel `phoneme_kernel`, ReLU);
encoder pre-net kernels `prenet_kernel` with ReLU and dropout and no batch
norm (its batch statistics would mix padding into real steps); mel pre-net
hidden width `mel_hidden`; feed-forward width `ff_dim`; the highway
transform gates' initial bias `highway_bias` (0: PyTorch's default, so
each layer starts about half transforming, half carrying; negative: near
carrying); post-norm layers
(`norm_first`: pre-norm); the dummy frame is a learned vector in the (standardised) filterbank space,
prepended before the mel pre-net; an item with no words attends to one
zero word so attention stays defined. The cross-modal attention has no
attention dropout, so its weights are a distribution for the KL term.
`frame_pool` > 1 averages frames first, and `text_dropout` hides the text
of a share of the training items (every word, and the multigranular [CLS]
input) — modality dropout: the demo corpus's words are easier to fit than
its prosody, and without it the model leans on them alone. Only the demo
preset uses these two. `speech_dropout` (0 by default; the demo preset
uses it) likewise masks every frame but the dummy of a share of the items,
so their label must come through the text alone. In the multigranular
model `cls_dropout` (0 by default) hides only the [CLS] input of another
share, so the fine-grained branch must read those items' words itself
rather than leave them to the [CLS].
The multigranular recipe selects on dev weighted F1 (the paper says "F1").
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from pipeline.stage import ConfigError

from ..head import (Head, Input, SelectMetric, TrainConfig, frame_ratio, pool_steps, regroup, stage_rate,
                    track_at, track_input, zero_pad)
from . import HEADS

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
    frame_pool: int = 1             # average k frames after reading (1 = the paper)
    # optional prosody track joined to every mel frame ("" = none, the paper), e.g. eGeMAPS LLDs
    prosody_stage: str = ""
    prosody_array: str = "lld"
    # word level
    fusion: Literal["highway", "concat", "phoneme", "word"] = "highway"
    highway_layers: int = 1
    highway_bias: float = 0.0       # initial transform-gate bias (< 0: each layer starts near carrying
                                    # its input; 0: PyTorch's default init, a small random bias)
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
    text_dropout: float = 0.0       # training only: share of items whose words are all hidden
    speech_dropout: float = 0.0     # training only: share of items whose frames are all hidden
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
    cls_dropout: float = 0.0        # training only: share of items whose [CLS] alone is hidden
    # the multigranular recipe: early stopping on dev F1
    batch_size: int = 8
    lr: float = 5e-5
    select_metric: SelectMetric = "wf1"


@dataclass(frozen=True)
class MuseMGConfig(MGConfig):
    highway_layers: int = 2


# Small widths and frame pooling: a CPU run on the demo corpus takes minutes.
# No dev part there (leave one session out), so a fixed number of epochs
# with one lr decay; text_dropout makes the prosody count (module docstring).
# Per-speaker standardisation and 40 epochs: unseen voices' prosody must carry
# the items whose words are neutral (UA 0.86 -> 0.91 on the first demo corpus,
# multigranular 0.93). On the current one, whose sessions speak their own
# lines, speech_dropout makes the words count too: UA 0.881 -> 0.886,
# multigranular 0.875 -> 0.921. eGeMAPS LLDs beside the mel frames, 80
# epochs and the mean weights of the last 20: 0.905 (seeds 0-2: 0.895,
# 0.913, 0.908), where the 40-epoch preset gave 0.851 without them and
# 0.864 with them on seed 0 (README, HarmoFusion). The multigranular model
# with this preset: 0.870 (0.894, 0.851, 0.866); with _MG_DEMO 0.919
# (0.905, 0.926, 0.925).
_DEMO = {"d": 64, "heads": 4, "ff_dim": 128, "mel_hidden": 64, "phoneme_dim": 32, "frame_pool": 4,
         "max_frames": 600, "dropout": 0.1, "text_dropout": 0.3, "speech_dropout": 0.15,
         "epochs": 80, "batch_size": 8, "average_last": 20,
         "lr": 1e-3, "weight_decay": 1e-4, "schedule": "step", "lr_step": 50, "clip": 1.0,
         "standardize": "speaker", "prosody_stage": "opensmile@egemaps_lld"}

# The multigranular model on top: with the [CLS] beside it, the fine-grained
# branch left the held-out lines' words to the [CLS] and read neutral
# prosody as neutral (words-only items 0.67-0.79 right). cls_dropout makes
# the branch read words itself; the [CLS] takes the training fold's
# statistics (a speaker's mix of lines is not a voice); classes weigh alike.
_MG_DEMO = dict(_DEMO, proj_dim=64, cls_dropout=0.3, fold_inputs=("cls",), class_weights="balanced")

# MUSE's two highway layers, each starting half transformed (gate bias 0),
# pass a word only a quarter of itself at first. With _DEMO alone: 0.891
# (seeds 0-2: 0.899, 0.903, 0.870). Starting them near carrying their
# input (gate bias -2): 0.902 (0.905, 0.923, 0.878). Not kept: MUSE's
# alignment loss at 0.1, 0.909 and 0.865 (seeds 0, 1).
_MUSE_DEMO = dict(_DEMO, highway_bias=-2.0)

# MUSE's multigranular model: _MG_DEMO gave 0.837 (seed 0), its words-only
# items 0.64 right. The same gate bias and the paper's sigmoid gate between
# the [CLS] and the fine-grained vector: 0.922 (seeds 0-2: 0.929, 0.898,
# 0.938), words-only items 0.96-0.99. The gate alone: 0.896, 0.931 (seeds
# 0, 1); the gate bias alone: 0.857 (seed 0).
_MUSE_MG_DEMO = dict(_MG_DEMO, highway_bias=-2.0, gate=True)


# The auxiliary terms of each paper's total loss (000 §3.1.6; 001 eq. 15).
# Neither paper gives their weights: each of ours starts the term near a tenth
# of the cross-entropy (measured; [sources.<head>] in the manifests).
PAPER_LOSSES = {
    "harmofusion": {"consistency_weight": 5e-3},
    "muse": {"align_weight": 0.1},
    "harmofusion_mg": {"consistency_weight": 5e-3},
    "muse_mg": {"align_weight": 0.1, "emb_align_weight": 1e-3},
}


@HEADS.register()
class HarmoFusion(Head):
    name = "harmofusion"
    manifest = "harmofusion"
    description = "multilevel transformer: phonemes + words x mel frames, dummy-frame readout"
    Config = Config
    presets = {"paper": PAPER_LOSSES["harmofusion"], "demo": _DEMO}

    @classmethod
    def inputs(cls, config) -> dict:
        out = {"speech": Input(config.speech_stage, config.speech_array, "seq", config.max_frames)}
        if config.prosody_stage:
            out["prosody"] = track_input(config, f"head {cls.name}: prosody_stage")
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
    def variant(cls, config) -> str:
        """The papers' ablation names: full (highway), concat, phoneme_only,
        word_only, no_deep_fusion."""
        return "no_deep_fusion" if config.fusion_layers == 0 else _VARIANTS[config.fusion]

    @classmethod
    def check(cls, config):
        super().check(config)
        c = config
        if min(c.d, c.heads, c.ff_dim, c.mel_hidden, c.phoneme_dim, c.phoneme_vocab, c.max_frames,
               c.max_words, c.frame_pool, c.cross_layers) < 1:
            raise ConfigError(f"head {cls.name}: widths, length caps, frame_pool and cross_layers must be >= 1")
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
        shares = cls.dropout_shares(c)
        if min(shares) < 0 or sum(shares) >= 1:
            raise ConfigError(f"head {cls.name}: text_dropout and speech_dropout"
                              f"{' and cls_dropout' if len(shares) > 2 else ''} must be >= 0 and sum to less than 1")
        if not 0 <= c.align_epsilon < 1:
            raise ConfigError(f"head {cls.name}: align_epsilon must be in [0, 1)")
        if c.align_weight > 0:
            frame_seconds(c)        # the speech stage must have a frame rate
        if c.prosody_stage:
            track_input(c, f"head {cls.name}: prosody_stage")   # refuses a track without a frame rate

    def __init__(self, config, dims, n_classes):
        super().__init__(config, dims, n_classes)
        self.encoder = MultilevelTransformer(config, dims)
        self.dropout = nn.Dropout(config.dropout)
        self.build_classifier(n_classes)

    def build_classifier(self, n_classes):
        self.fc = nn.Linear(self.config.d, n_classes)

    def classify(self, batch):
        self.aux_losses = {}
        parts = self.hidden_parts(len(batch["id"]), batch["speech"].device)
        utterance = self.encoder(batch, self.aux_losses, parts[0], parts[1])
        return self.readout(utterance, batch, parts)

    @staticmethod
    def dropout_shares(config) -> tuple:
        """The modality-dropout shares: (text, speech)."""
        return config.text_dropout, config.speech_dropout

    def hidden_parts(self, n, device) -> list:
        """One (n,) mask per share of `dropout_shares`, True for the items
        that lose that part this step (training only; the parts are
        disjoint, so no item loses two)."""
        shares = self.dropout_shares(self.config)
        if not self.training or sum(shares) == 0:
            return [torch.zeros(n, dtype=torch.bool, device=device) for _ in shares]
        draw, masks, low = torch.rand(n, device=device), [], 0.0
        for share in shares:
            masks.append((draw >= low) & (draw < low + share))
            low += share
        return masks

    def readout(self, utterance, batch, parts):
        return self.fc(self.dropout(utterance))


@HEADS.register()
class Muse(HarmoFusion):
    name = "muse"
    manifest = "muse"
    description = "MUSE multilevel transformer (HarmoFusion with two highway layers; alignment losses)"
    Config = MuseConfig
    presets = {"paper": PAPER_LOSSES["muse"], "demo": _MUSE_DEMO}


@HEADS.register()
class HarmoFusionMG(HarmoFusion):
    name = "harmofusion_mg"
    manifest = "harmofusion"
    description = "multigranular: BERT [CLS] + the multilevel transformer's vector, optional gate"
    Config = MGConfig
    presets = {"paper": PAPER_LOSSES["harmofusion_mg"], "demo": _MG_DEMO}

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

    @staticmethod
    def dropout_shares(config) -> tuple:
        """(text, speech, cls): text hides the [CLS] input too; cls hides only
        it, so the fine-grained branch must read those items' words itself."""
        return config.text_dropout, config.speech_dropout, config.cls_dropout

    def readout(self, utterance, batch, parts):
        text_hidden, _, cls_hidden = parts
        seen = ~(text_hidden | cls_hidden)
        c = self.proj_cls(batch["cls"] * seen.unsqueeze(-1))
        f = self.proj_fine(utterance)
        if self.config.emb_align_weight > 0 and seen.any():
            # An item whose [CLS] is hidden has no [CLS] view to agree with.
            gap = (c - f).pow(2).sum(-1)
            self.aux_losses["embedding"] = self.config.emb_align_weight * gap[seen].mean()
        joint = self.gate(c, f) if self.gate is not None else torch.cat([c, f], -1)
        return self.fc(self.dropout(joint))


@HEADS.register()
class MuseMG(HarmoFusionMG):
    name = "muse_mg"
    manifest = "muse"
    description = "MUSE multigranular (BERT [CLS] + the MUSE multilevel transformer)"
    Config = MuseMGConfig
    presets = {"paper": PAPER_LOSSES["muse_mg"], "demo": _MUSE_MG_DEMO}


class Gate(nn.Module):
    """a = sigmoid(W [c; f] + b) per feature; out = a*c + (1 - a)*f."""

    def __init__(self, d):
        super().__init__()
        self.linear = nn.Linear(2 * d, d)

    def forward(self, c, f):
        a = torch.sigmoid(self.linear(torch.cat([c, f], -1)))
        return a * c + (1 - a) * f


class Highway(nn.Module):
    """z = H(u)*T(u) + u*(1 - T(u)), H = ReLU(W_H u + b_H), T = sigmoid(W_T u + b_T)."""

    def __init__(self, d, gate_bias=0.0):
        super().__init__()
        self.h = nn.Linear(d, d)
        self.t = nn.Linear(d, d)
        if gate_bias:       # 0 keeps PyTorch's default (small random) bias, as measured before the option
            nn.init.constant_(self.t.bias, gate_bias)

    def forward(self, u):
        t = torch.sigmoid(self.t(u))
        return torch.relu(self.h(u)) * t + u * (1 - t)


class PhonemeCNN(nn.Module):
    """One vector per word: embedded phoneme ids, a Conv1d over the word's
    phonemes (ReLU) and a max over its real phonemes (0 for a word with none)."""

    def __init__(self, vocab, dim, kernel):
        super().__init__()
        self.vocab = vocab
        self.embed = nn.Embedding(vocab, dim, padding_idx=0)
        self.conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2)

    def forward(self, ids, mask):
        """ids, mask (B, N, L) -> (B, N, dim)."""
        b, n, length = ids.shape
        ids = ids * mask
        if ids.numel() and int(ids.max()) >= self.vocab:
            raise ValueError(f"phoneme id {int(ids.max())} >= phoneme_vocab={self.vocab}; "
                             "raise phoneme_vocab to the phonemes stage's inventory size")
        m = mask.view(b * n, length)
        x = zero_pad(self.embed(ids.view(b * n, length)), m)
        h = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)
        h = h.masked_fill(~m.unsqueeze(-1), float("-inf")).max(1).values
        h = torch.where(m.any(1, keepdim=True), h, torch.zeros_like(h))
        return h.view(b, n, -1)


class EncoderPrenet(nn.Module):
    """3 Conv1d layers (ReLU, dropout) and a linear projection to d; padded
    steps are zeroed before every convolution so they reach no real step."""

    def __init__(self, d_in, d, kernel, dropout, n_layers=3):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(d_in if i == 0 else d, d, kernel, padding=kernel // 2)
                                   for i in range(n_layers))
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(d, d)

    def forward(self, x, mask):
        for conv in self.convs:
            x = self.dropout(torch.relu(conv(zero_pad(x, mask).transpose(1, 2)).transpose(1, 2)))
        return zero_pad(self.proj(x), mask)


class CrossModalLayer(nn.Module):
    """Self-attention over the mel steps, then attention with the mel steps
    as queries over the text encodings, then a feed-forward block (each with
    a residual and layer norm). Also returns the mel-to-text attention
    weights (B, T, N), averaged over heads."""

    def __init__(self, d, heads, ff_dim, dropout, norm_first=False):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        # No attention dropout: the weights stay a distribution (alignment loss).
        self.cross_attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(d, ff_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff_dim, d))
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(3))
        self.dropout = nn.Dropout(dropout)

    def forward(self, m, m_mask, t, t_mask):
        found = {}

        def self_block(x):
            return self.self_attn(x, x, x, key_padding_mask=~m_mask, need_weights=False)[0]

        def cross_block(x):
            out, found["weights"] = self.cross_attn(x, t, t, key_padding_mask=~t_mask, need_weights=True)
            return out

        for norm, block in zip(self.norms, (self_block, cross_block, self.ff)):
            if self.norm_first:             # pre-norm: the residual stream is never normalised
                m = m + self.dropout(block(norm(m)))
            else:
                m = norm(m + self.dropout(block(m)))
        return m, found["weights"]


def sinusoids(n, d, device=None):
    """(n, d) sinusoidal position encodings (sin on even, cos on odd features)."""
    pos = torch.arange(n, dtype=torch.float32, device=device).unsqueeze(1)
    rates = torch.exp(torch.arange(0, d, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / d))
    out = torch.zeros(n, d, device=device)
    out[:, 0::2] = torch.sin(pos * rates)
    out[:, 1::2] = torch.cos(pos * rates)[:, :d // 2]
    return out


def _encoder_layers(c, n):
    return nn.ModuleList(nn.TransformerEncoderLayer(c.d, c.heads, c.ff_dim, c.dropout, batch_first=True,
                                                    norm_first=c.norm_first) for _ in range(n))


class MultilevelTransformer(nn.Module):
    """The fine-grained branch: batch -> utterance vector (B, d) from the
    dummy position; auxiliary loss terms go into the dict it is given."""

    def __init__(self, c, dims):
        super().__init__()
        self.config = c
        self.use_phonemes = c.fusion != "word"
        self.use_words = c.fusion != "phoneme"
        width = 0
        if self.use_phonemes:
            self.phonemes = PhonemeCNN(c.phoneme_vocab, c.phoneme_dim, c.phoneme_kernel)
            width += c.phoneme_dim
        if self.use_words:
            width += dims["words"]
        n_highway = c.highway_layers if c.fusion == "highway" else 0
        self.highway = nn.ModuleList(Highway(width, c.highway_bias) for _ in range(n_highway))
        self.prenet = EncoderPrenet(width, c.d, c.prenet_kernel, c.dropout)
        self.text_encoder = _encoder_layers(c, c.text_layers)
        self.ratio = frame_ratio(c.speech_stage, c.prosody_stage, "prosody_stage") if "prosody" in dims else None
        frame_width = dims["speech"] + dims.get("prosody", 0)
        self.dummy = nn.Parameter(0.02 * torch.randn(frame_width))
        self.mel_prenet = nn.Sequential(nn.Linear(frame_width, c.mel_hidden), nn.ReLU(), nn.Dropout(c.dropout),
                                        nn.Linear(c.mel_hidden, c.d), nn.ReLU(), nn.Dropout(c.dropout))
        self.cross = nn.ModuleList(CrossModalLayer(c.d, c.heads, c.ff_dim, c.dropout, c.norm_first)
                                   for _ in range(c.cross_layers))
        self.fusion = _encoder_layers(c, c.fusion_layers)
        self.dropout = nn.Dropout(c.dropout)
        self.hop_s = frame_seconds(c) if c.align_weight > 0 else None

    def forward(self, batch, aux, hidden, muted):
        """`hidden`, `muted` (B,): items whose words, or frames, are all
        masked (modality dropout); the dummy frame is never masked, so a
        muted item is read from the text alone."""
        c = self.config
        t, t_mask = self.encode_text(batch, hidden)
        speech, s_mask = pool_steps(*self.frames(batch), c.frame_pool)
        s_mask = s_mask & ~muted.unsqueeze(-1)
        b = speech.shape[0]
        m = torch.cat([self.dummy.expand(b, 1, -1), speech], 1)
        m_mask = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=m.device), s_mask], 1)
        m = self.dropout(self.mel_prenet(m) + sinusoids(m.shape[1], c.d, m.device))
        for layer in self.cross:
            m, weights = layer(m, m_mask, t, t_mask)
        outputs = [m]
        for layer in self.fusion:
            m = layer(m, src_key_padding_mask=~m_mask)
            outputs.append(m)
        if c.consistency_weight > 0 and c.fusion_layers > 0:    # no deep fusion (ablation): no term
            gap = (outputs[-1] - outputs[-2]).pow(2).sum(-1)
            aux["consistency"] = c.consistency_weight * gap[m_mask].mean()
        if c.align_weight > 0:
            target, frames = alignment_target(batch["spans"], batch["spans_mask"], t_mask, m.shape[1],
                                              self.hop_s, c.frame_pool, c.align_epsilon)
            frames = frames & m_mask & ~hidden.unsqueeze(-1)
            aux["alignment"] = c.align_weight * alignment_kl(weights, target, frames)
        return m[:, 0]

    def frames(self, batch):
        """The mel frames, each with the prosody track's frame at its time
        when there is one (frames only one track has are left out)."""
        speech, mask = batch["speech"], batch["speech_mask"]
        if self.ratio is None:
            return speech, mask
        track, track_mask = track_at(speech.shape[1], self.ratio, batch["prosody"], batch["prosody_mask"])
        return torch.cat([speech, track], -1), mask & track_mask

    def encode_text(self, batch, hidden):
        """Text encodings (B, N, d) and the word mask; an item with no word
        (or hidden words) keeps one zero word so its attention stays defined."""
        x, mask = self.word_inputs(batch)
        mask = mask & ~hidden.unsqueeze(-1)
        for layer in self.highway:
            x = layer(x)
        t = self.prenet(x, mask)
        t = self.dropout(t + sinusoids(t.shape[1], self.config.d, t.device))
        keys = mask.clone()
        keys[:, 0] |= ~mask.any(1)
        t = torch.where(keys.unsqueeze(-1), t, torch.zeros_like(t))
        for layer in self.text_encoder:
            t = layer(t, src_key_padding_mask=~keys)
        return t, keys

    def word_inputs(self, batch):
        """Per word: phoneme vector and/or word vector (concatenated), and the
        word mask. Both come from the same words stage; where both are read,
        a word counts only when both have it."""
        parts, masks = [], []
        if self.use_phonemes:
            lengths, l_mask = batch["phoneme_lengths"].squeeze(-1), batch["phoneme_lengths_mask"]
            ids, id_mask = regroup(batch["phoneme_ids"].squeeze(-1), batch["phoneme_ids_mask"], lengths, l_mask)
            parts.append(self.phonemes(ids, id_mask))
            masks.append(l_mask)
        if self.use_words:
            parts.append(batch["words"])
            masks.append(batch["words_mask"])
        n = min(p.shape[1] for p in parts)
        mask = masks[0][:, :n]
        for other in masks[1:]:
            mask = mask & other[:, :n]
        return zero_pad(torch.cat([p[:, :n] for p in parts], -1), mask), mask


def frame_seconds(config) -> float:
    """Seconds between frames of the speech stage (its frame rate), for the
    alignment target; ConfigError when the stage has no frame rate."""
    rate = stage_rate(config.speech_stage)
    if not rate:
        raise ConfigError(f"align_weight needs a speech stage with a frame rate; {config.speech_stage} has none")
    return 1.0 / rate


def alignment_target(spans, spans_mask, word_mask, n_steps, hop_s, pool, epsilon):
    """(target (B, n_steps, N), frames (B, n_steps)) for the dummy-prefixed
    mel steps: a step's target is one-hot on the word whose [start, end)
    holds the step's time, smoothed by epsilon over the item's words;
    `frames` marks the steps inside a word (never the dummy at 0)."""
    n_words = word_mask.shape[1]
    spans = spans[:, :n_words]
    spans_mask = spans_mask[:, :n_words]
    if spans.shape[1] < n_words:            # fewer spans than words: the rest untimed
        pad = n_words - spans.shape[1]
        spans = nn.functional.pad(spans, (0, 0, 0, pad), value=float("nan"))
        spans_mask = nn.functional.pad(spans_mask, (0, pad), value=False)
    # Step j >= 1 holds frames (j-1)*pool .. j*pool-1 (frame i at i*hop_s): its time is their middle.
    times = ((torch.arange(n_steps, device=spans.device) - 1) * pool + (pool - 1) / 2) * hop_s
    start, end = spans[..., 0].unsqueeze(1), spans[..., 1].unsqueeze(1)           # (B, 1, N)
    valid = (word_mask & spans_mask).unsqueeze(1)
    inside = valid & (times.view(1, -1, 1) >= start) & (times.view(1, -1, 1) < end)   # nan compares False
    first = inside & (inside.cumsum(-1) == 1)     # overlapping spans: the earlier word
    counts = word_mask.sum(1, keepdim=True).clamp_min(1).unsqueeze(-1).to(spans.dtype)
    target = (1 - epsilon) * first.to(spans.dtype) + epsilon * word_mask.unsqueeze(1).to(spans.dtype) / counts
    frames = first.any(-1)
    frames[:, 0] = False
    return target, frames


def alignment_kl(weights, target, frames):
    """Mean over the marked steps of KL(target || weights) over the words."""
    if not frames.any():
        return weights.new_zeros(())
    t = target[frames]
    w = weights[frames].clamp_min(1e-8)
    kl = torch.where(t > 0, t * (t.clamp_min(1e-12).log() - w.log()), torch.zeros_like(t)).sum(-1)
    return kl.mean()
