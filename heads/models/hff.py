"""HFF: Hierarchical Feature Fusion (MODELS.md §3, papers/002).

Speech (a CNN over the MFCC matrix), text (BERT token states; [CLS] and the
token mean for the utterance vector) and vision (ResNet GAP per sampled
frame) are projected to a common width d (128) and fused in three levels:

1. dynamic weights alpha = softmax(W_dyn [f_s; f_t; f_v]) over the modality
   vectors, re-weighted by each modality's confidence 1 / (sigma^2 + eps),
   where a variance head per modality predicts sigma^2; the
   uncertainty-aware fusion is mu + noise * sigma (reparameterisation, noise
   only while training);
2. the core Transformer encoder (`layers` = 4 layers, 8 heads, feed-forward
   width `ff_mult` x d = 4d, LayerNorm, dropout 0.1; _hff_core.py): its first
   layer's attention reads the alpha-weighted fusion and adds it to the
   uncertainty-aware one (the paper's residual);
3. a GRU over the fused steps and attention pooling sum_t beta_t h_t;
then an MLP (ReLU, dropout 0.3) gives one output per class (`n_classes`
from the training machinery: 1 for a regression task).

Our choices where the paper is vague (all configurable):
- Alignment: each modality keeps a sequence (the speech CNN's feature map
  over time, the token states, the frame embeddings), projected to d and
  resampled onto `steps` (L = 32) equal bins of the item's span: a bin is the
  overlap-weighted mean of the steps covering it (`resample_steps`;
  `speech_bins=max` takes the speech CNN's max over them instead). Steps
  of a modality are taken as evenly spread over the item; token times are
  not used, since many corpora have none. The weights are computed per
  modality from its utterance vector and applied at every step.
  `no_alignment` pools each modality to its vector first, so attention and
  the GRU run over the (weighted) modality tokens instead.
- The speech CNN is a stack of conv layers, each with ReLU and max-pooling
  by 2: `speech_conv=1d` (the default) runs over time with the MFCCs as
  channels; `2d` runs over the MFCC matrix (time x coefficient) with its
  `speech_planes` (coefficients, deltas, delta-deltas) as input channels,
  pooling both axes, so its filters see local patterns across neighbouring
  coefficients rather than one weight per coefficient. The same linear
  layer maps each step of its output (the sequence) and its max over time
  (f_s) to d.
- Text: the sequence is a linear map of each token state; f_t a linear map
  of [CLS; masked mean of the tokens]. Vision: a linear map of each frame;
  f_v the masked mean of the mapped frames.
- Uncertainty: the variance heads predict a log-variance per feature from
  the modality vector (bias initialised to `init_logvar`, so training starts
  nearly deterministic); a modality's confidence uses the mean variance over
  its features; the fused weights are alpha * confidence, renormalised.
  The fused variance is sum_m weight_m^2 sigma_m^2 (independent modalities).
  An auxiliary KL(N(f_m, sigma_m^2) || N(0, I)) term, weighted by
  `uncertainty_weight`, keeps the variances from collapsing to zero; the
  paper's loss has no such term, so it is 0 (off) by default.
- Switches: `no_dynamic_weighting` fuses with equal weights and no
  uncertainty (the whole level-1 weighting); `uncertainty=false` keeps the
  softmax weights only; `no_attention` skips level 2; `no_temporal` pools
  the level-2 output without the GRU. `modalities` is any non-empty subset
  of s (speech), t (text), v (vision).
- Inputs are standardised per feature with the training fold's statistics
  (`standardize`); dropout 0.1 on the projected features and in attention.

The speech input is the head's frame input (`frames = "speech"`): the shared
options `frame_pool` and `frame_track` (heads/head.py) average its frames and
join a second frame track (e.g. eGeMAPS LLDs) to each MFCC frame before the
CNN sees it; the 2-D CNN then needs the joined width to be whole planes
(`check_dims`). The shared modality dropout (heads/regularize.py) has one
group per modality (speech, text, visual) in every ablation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from pipeline.stage import ConfigError

from ..head import Head, Input, SelectMetric, TrainConfig
from . import HEADS
from ._hff_core import CoreEncoder
from ._hff_encoders import ENCODERS, AttentionPool, check_planes

# Modality letter -> input name, in the fixed order of the fusion.
MODALITIES = {"s": "speech", "t": "text", "v": "visual"}
SWITCHES = ("no_attention", "no_dynamic_weighting", "no_temporal", "no_alignment")


@dataclass(frozen=True)
class Config(TrainConfig):
    # inputs: named stage configurations (manifests/hff.toml, vision.toml)
    speech_stage: str = "mfcc@hff"
    speech_array: str = "mfcc"
    text_stage: str = "bert@hff"
    text_array: str = "tokens"
    visual_stage: str = "frames@hff"
    visual_array: str = "embedding"
    max_frames: int = 1000          # MFCC frames (10 s at the 10 ms hop)
    max_tokens: int = 128
    max_images: int = 64            # sampled video frames
    # model
    modalities: str = "stv"         # any non-empty subset of s, t, v
    no_attention: bool = False
    no_dynamic_weighting: bool = False
    no_temporal: bool = False
    no_alignment: bool = False
    uncertainty: bool = True        # confidence re-weighting (off with no_dynamic_weighting)
    d: int = 128                    # common width of the projected modalities
    steps: int = 32                 # L: aligned steps per item
    heads: int = 8
    layers: int = 4                 # core Transformer encoder layers (level 2)
    ff_mult: int = 4                # its feed-forward width, in multiples of d (0: no feed-forward block)
    speech_channels: tuple[int, ...] = (128, 128)
    speech_kernel: int = 5
    speech_conv: Literal["1d", "2d"] = "1d"   # kernels over time, or over time x coefficient
    speech_planes: int = 3          # 2d: the MFCC matrix's planes (coefficients, deltas, ...)
    speech_bins: Literal["mean", "max"] = "mean"  # how the CNN's steps are pooled onto the aligned steps
    dropout: float = 0.1
    classifier_dropout: float = 0.3
    uncertainty_weight: float = 0.0   # KL keeping the variances up (not in the paper)
    confidence_eps: float = 1e-3
    init_logvar: float = -4.0
    # the paper's recipe
    epochs: int = 50
    batch_size: int = 64
    optimizer: Literal["adam", "adamw", "sgd"] = "adamw"
    lr: float = 3e-4
    weight_decay: float = 1e-2
    schedule: Literal["none", "step", "plateau"] = "plateau"
    clip: float = 1.0
    patience: int = 5
    select_metric: SelectMetric = "loss"      # a regression (MOSEI) may select on mae, acc2, ...

    @property
    def ablation(self) -> str:
        """The variant's name for run records and the papers' rows: the
        modality letters when not all three, then each switch that is on
        ("full" for the published model)."""
        letters = "".join(m for m in MODALITIES if m in self.modalities)
        parts = [letters] if letters != "".join(MODALITIES) else []
        parts += [s for s in SWITCHES if getattr(self, s)]
        if not self.uncertainty and not self.no_dynamic_weighting:
            parts.append("no_uncertainty")
        return "+".join(parts) or "full"


@HEADS.register()
class HFF(Head):
    name = "hff"
    manifest = "hff"
    description = "MFCC CNN + BERT + frame CNN, dynamic/uncertainty weights, attention, GRU"
    Config = Config
    frames = "speech"
    # The demo preset (to move to the manifests): narrower, a constant learning
    # rate (no dev part for a plateau schedule to follow), per-speaker
    # statistics, the eGeMAPS LLDs joined to the MFCC frames (so the 1-D CNN:
    # the joined frames are not whole planes; wider channels, as it keeps no
    # map per coefficient as the 2-D CNN does), the mean of the last weights,
    # and modality dropout so that no modality is left unused.
    presets = {
        "paper": {},
        "demo": {"layers": 1, "ff_mult": 0, "uncertainty_weight": 1e-3,
                 "d": 64, "speech_conv": "1d", "speech_channels": (64, 128), "speech_kernel": 3,
                 "epochs": 80, "batch_size": 16, "lr": 3e-4, "schedule": "none", "average_last": 20,
                 "max_frames": 600, "standardize": "speaker", "visual_stage": "frames@hff_demo",
                 "frame_track": "opensmile@egemaps_lld:lld", "frame_pool": 4,
                 "modality_dropout": ("speech:0.1", "text:0.1", "visual:0.1")},
    }

    @classmethod
    def inputs(cls, config) -> dict:
        sources = {"speech": (config.speech_stage, config.speech_array, config.max_frames),
                   "text": (config.text_stage, config.text_array, config.max_tokens),
                   "visual": (config.visual_stage, config.visual_array, config.max_images)}
        out = {}
        for m in modality_letters(config):
            stage, array, cap = sources[MODALITIES[m]]
            out[MODALITIES[m]] = Input(stage, array, "seq", cap)
        return out

    @classmethod
    def modality_groups(cls, config) -> dict:
        """Speech, text and visual, whichever `modalities` reads: an ablation
        without one holds nothing to drop in its group (its items lose nothing),
        so one modality_dropout setting serves every ablation."""
        return {name: (name,) for name in MODALITIES.values()}

    @classmethod
    def check(cls, config):
        letters = config.modalities         # first: the shared checks read the inputs it chooses
        if not letters or set(letters) - set(MODALITIES) or len(set(letters)) != len(letters):
            raise ConfigError(f"head hff: modalities={letters!r}: a non-empty subset of "
                              f"{', '.join(MODALITIES)} (s speech, t text, v vision), each once")
        super().check(config)
        if min(config.d, config.steps, config.heads, config.max_frames, config.max_tokens,
               config.max_images, config.speech_kernel, config.speech_planes, *config.speech_channels) < 1:
            raise ConfigError("head hff: widths, steps, heads, length caps, kernel and planes must be >= 1")
        if config.layers < 1 or config.ff_mult < 0 or (config.layers > 1 and config.ff_mult < 1):
            raise ConfigError("head hff: layers must be >= 1 and ff_mult >= 0 (>= 1 with more than one layer)")
        if config.d % config.heads:
            raise ConfigError(f"head hff: d={config.d} must be divisible by heads={config.heads}")
        if config.speech_kernel % 2 == 0 or not config.speech_channels:
            raise ConfigError("head hff: speech_kernel must be odd and speech_channels non-empty")
        if config.confidence_eps <= 0 or config.uncertainty_weight < 0:
            raise ConfigError("head hff: confidence_eps must be > 0 and uncertainty_weight >= 0")

    @classmethod
    def check_dims(cls, config, dims):
        if "speech" in dims:
            check_planes(config, dims["speech"])

    def __init__(self, config, dims, n_classes):
        super().__init__(config, dims, n_classes)
        c = config
        self.names = [MODALITIES[m] for m in modality_letters(c)]
        self.aligned = not c.no_alignment
        # Utterance vectors feed the level-1 weights, and are the tokens when not aligned.
        self.use_vectors = not (self.aligned and c.no_dynamic_weighting)
        self.encoders = nn.ModuleDict({name: ENCODERS[name](dims[name], c, self.aligned, self.use_vectors)
                                       for name in self.names})
        self.dropout = nn.Dropout(c.dropout)
        self.dynamic = None if c.no_dynamic_weighting else DynamicWeights(c.d, len(self.names))
        self.use_uncertainty = c.uncertainty and not c.no_dynamic_weighting
        if self.use_uncertainty:
            self.variance = nn.ModuleDict({name: _variance_head(c.d, c.init_logvar) for name in self.names})
        if not c.no_attention:
            self.core = CoreEncoder(c.d, c.heads, c.layers, c.ff_mult * c.d, c.dropout)
        if not c.no_temporal:
            self.gru = nn.GRU(c.d, c.d, batch_first=True)
        self.pool = AttentionPool(c.d)
        self.classifier = nn.Sequential(nn.Linear(c.d, c.d), nn.ReLU(), nn.Dropout(c.classifier_dropout),
                                        nn.Linear(c.d, n_classes))
        self.aux_losses = {}

    def classify(self, batch):
        steps, vectors = self.encode(batch)                    # (B, M, S, d), (B, M, d)
        f0, f1 = self.level1(steps, vectors)
        if not self.config.no_attention:                       # level 2
            f1 = self.core(f0, f1)
        h = f1 if self.config.no_temporal else self.gru(f1)[0]   # level 3
        return self.classifier(self.pool(h))

    def encode(self, batch):
        """Per modality, its steps (aligned: L resampled steps; otherwise its
        utterance vector as one step) and its utterance vector (None when
        nothing reads it)."""
        steps, vectors = [], []
        for name in self.names:
            seq, mask, vec = self.encoders[name](batch[name], batch[f"{name}_mask"])
            if self.use_vectors:
                vectors.append(self.dropout(vec))
            if self.aligned:
                steps.append(self.encoders[name].resample(self.dropout(seq), mask, self.config.steps))
            else:
                steps.append(vectors[-1].unsqueeze(1))
        return torch.stack(steps, 1), (torch.stack(vectors, 1) if vectors else None)

    def level1(self, steps, vectors):
        """(f0, f1): the dynamically weighted fusion and the uncertainty-aware
        one (mu + noise * sigma while training), both (B, S', d)."""
        alpha = (self.dynamic(vectors) if self.dynamic is not None
                 else steps.new_full(steps.shape[:2], 1.0 / steps.shape[1]))
        f0 = combine(alpha, steps, self.aligned)
        self.aux_losses = {}
        if not self.use_uncertainty:
            return f0, f0
        logvar = torch.stack([self.variance[name](vectors[:, i]) for i, name in enumerate(self.names)], 1)
        logvar = logvar.clamp(-10.0, 10.0)
        weights = uncertainty_weights(alpha, logvar, self.config.confidence_eps)
        mu = combine(weights, steps, self.aligned)
        if self.training:
            sigma = fused_variance(weights, logvar, self.aligned).sqrt()
            mu = mu + torch.randn_like(mu) * sigma
        if self.config.uncertainty_weight > 0:
            self.aux_losses["uncertainty"] = self.config.uncertainty_weight * gaussian_kl(vectors, logvar)
        return f0, mu


def modality_letters(config):
    """The chosen modalities in the fusion's fixed order (s, t, v)."""
    return [m for m in MODALITIES if m in config.modalities]


# --- level 1 -------------------------------------------------------------------

class DynamicWeights(nn.Module):
    """alpha = softmax(W_dyn [f_1; ...; f_M] + b): one weight per modality
    from the concatenated modality vectors."""

    def __init__(self, d, n_modalities):
        super().__init__()
        self.linear = nn.Linear(d * n_modalities, n_modalities)

    def forward(self, vectors):                                 # (B, M, d) -> (B, M)
        return torch.softmax(self.linear(vectors.flatten(1)), dim=-1)


def confidence(logvar, eps):
    """Per modality, 1 / (sigma^2 + eps) with sigma^2 the mean predicted
    variance over its features: (B, M, d) log-variances -> (B, M)."""
    return 1.0 / (logvar.exp().mean(-1) + eps)


def uncertainty_weights(alpha, logvar, eps):
    """The dynamic weights re-weighted by confidence, summing to 1 per item."""
    w = alpha * confidence(logvar, eps)
    return w / w.sum(-1, keepdim=True)


def combine(weights, steps, aligned):
    """Aligned: the weighted sum of the modalities at every step (B, L, d).
    Not aligned: the modality tokens themselves (B, M, d), each scaled by M
    times its weight (so equal weights leave them unchanged)."""
    if aligned:
        return torch.einsum("bm,bmsd->bsd", weights, steps)
    return steps[:, :, 0] * weights.unsqueeze(-1) * weights.shape[1]


def fused_variance(weights, logvar, aligned):
    """Variance of `combine` for independent Gaussian modalities:
    sum_m w_m^2 sigma_m^2 (aligned, the same at every step), or per token
    (M w_m)^2 sigma_m^2."""
    var = logvar.exp()
    if aligned:
        return torch.einsum("bm,bmd->bd", weights ** 2, var).unsqueeze(1)
    return (weights.unsqueeze(-1) * weights.shape[1]) ** 2 * var


def gaussian_kl(mu, logvar):
    """Mean over items, modalities and features of KL(N(mu, e^logvar) || N(0, 1))."""
    return 0.5 * (mu ** 2 + logvar.exp() - 1.0 - logvar).mean()


def _variance_head(d, init_logvar):
    head = nn.Linear(d, d)
    nn.init.constant_(head.bias, init_logvar)
    return head
