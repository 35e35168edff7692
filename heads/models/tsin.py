"""TSIN: Time and Semantic Interaction Network (MODELS.md §1, papers/003).

Speech (log-mel filterbank with deltas, up to 500 frames) and text (BERT
token states, up to 150 tokens) are encoded separately, the speech is
re-expressed on the token axis (temporal alignment, TA), each modality is
re-weighted with the other's summary (semantic interaction, SI), an LSTM
fuses the two, and a multi-kernel block, a masked mean and a linear layer
classify. Padded frames and tokens take part in no softmax, mean or
recurrence.

Our choices where the paper is vague (all configurable):
- The speech LSTM is unidirectional with d hidden units (`bidirectional`
  makes it two directions of d/2, still width d); the fusion LSTM likewise.
- x_s, x_t in the SI scores are linear maps d -> `si_dim` (V: si_dim -> 1).
- SI weights are normalised over the valid positions with a masked softmax
  (the paper's plain ratio can divide by ~0) and, so the fusion LSTM sees
  inputs of the usual size whatever the length, multiplied by the number of
  valid positions (mean weight 1).
- Inputs are standardised per feature with the training fold's statistics
  (`standardize`, a shared training option: docs/training.md; the paper does
  not say). Its frame input is "speech" (`frame_pool`, `frame_track`).
- Ablations: `speech_only` and `text_only` are the paper's unimodal models
  (§IV-D 2): that branch's encoder and the MEC classifier, no fusion LSTM;
  the MEC block maps the encoder's d to d' as in the full model. `no_ta`
  replaces the aligned
  speech U by the masked mean of S at every token; `no_si` skips the
  re-weighting.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from pipeline.stage import ConfigError

from ..head import Head, Input, TrainConfig
from ..layers import masked_mean, masked_softmax, run_lstm, zero_pad
from . import HEADS


@dataclass(frozen=True)
class Config(TrainConfig):
    # inputs: named stage configurations (manifests/tsin.toml)
    speech_stage: str = "fbank@tsin"
    speech_array: str = "fbank"
    text_stage: str = "bert@tsin"
    text_array: str = "tokens"
    max_frames: int = 500
    max_tokens: int = 150
    # model
    ablation: Literal["full", "speech_only", "text_only", "no_ta", "no_si"] = "full"
    d: int = 768                    # speech and text embedding width
    d_fusion: int = 512             # fusion LSTM width (d')
    si_dim: int = 128
    kernels: tuple[int, ...] = (1, 3, 5)
    bidirectional: bool = False
    dropout: float = 0.0
    # the paper's recipe
    epochs: int = 80
    batch_size: int = 64
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-4
    weight_decay: float = 1e-3
    schedule: Literal["none", "step", "plateau"] = "step"
    lr_step: int = 50
    lr_gamma: float = 0.1


@HEADS.register()
class TSIN(Head):
    name = "tsin"
    description = "speech LSTM + BERT tokens, temporal alignment, semantic interaction, LSTM fusion"
    Config = Config
    frames = "speech"

    @classmethod
    def inputs(cls, config) -> dict:
        out = {}
        if config.ablation != "text_only":
            out["speech"] = Input(config.speech_stage, config.speech_array, "seq", config.max_frames)
        if config.ablation != "speech_only":
            out["text"] = Input(config.text_stage, config.text_array, "seq", config.max_tokens)
        return out

    @classmethod
    def modality_groups(cls, config) -> dict:
        """Speech and text, in every ablation: a unimodal ablation reads one of
        them, so the other group holds nothing to drop (its items lose nothing)."""
        return {"speech": ("speech",), "text": ("text",)}

    @classmethod
    def check(cls, config):
        super().check(config)
        if any(k < 1 or k % 2 == 0 for k in config.kernels):
            raise ConfigError(f"head tsin: kernels={config.kernels}: each must be odd and >= 1")
        if config.bidirectional and (config.d % 2 or config.d_fusion % 2):
            raise ConfigError("head tsin: bidirectional LSTMs need even d and d_fusion")
        if min(config.d, config.d_fusion, config.si_dim, config.max_frames, config.max_tokens) < 1:
            raise ConfigError("head tsin: widths and length caps must be >= 1")

    def __init__(self, config, dims, n_classes):
        super().__init__(config, dims, n_classes)
        c = config
        d = c.d
        self.use_speech = c.ablation != "text_only"
        self.use_text = c.ablation != "speech_only"
        if self.use_speech:
            self.speech_lstm = _lstm(dims["speech"], d, c.bidirectional)
        if self.use_text:
            self.text_block = MultiKernel(dims["text"], d, c.kernels)
        if c.ablation in ("full", "no_ta"):
            self.si = SemanticInteraction(d, c.si_dim)
        # The unimodal ablations have no fusion LSTM: the encoder feeds the MEC block.
        self.fusion_lstm = _lstm(2 * d, c.d_fusion, c.bidirectional) if self.use_speech and self.use_text else None
        self.dropout = nn.Dropout(c.dropout)
        self.mec = MultiKernel(c.d_fusion if self.fusion_lstm is not None else d, c.d_fusion, c.kernels)
        self.fc = nn.Linear(c.d_fusion, n_classes)

    def classify(self, batch):
        seq, mask = self.fuse_input(batch)
        f = self.dropout(seq)
        if self.fusion_lstm is not None:
            f = run_lstm(self.fusion_lstm, f, mask)
        f = self.mec(f, mask)
        return self.fc(self.dropout(masked_mean(f, mask)))

    def fuse_input(self, batch):
        """The sequence the fusion LSTM reads and its mask, per ablation."""
        if self.use_speech:
            s_mask = batch["speech_mask"]
            s = run_lstm(self.speech_lstm, batch["speech"], s_mask)
        if self.use_text:
            t_mask = batch["text_mask"]
            t = self.text_block(batch["text"], t_mask)
        if not self.use_text:
            return s, s_mask
        if not self.use_speech:
            return t, t_mask
        if self.config.ablation == "no_ta":
            u = masked_mean(s, s_mask).unsqueeze(1).expand_as(t)
        else:
            u = temporal_alignment(s, s_mask, t)
        if self.config.ablation != "no_si":
            u, t = self.si(u, t, t_mask)
        return torch.cat([u, t], -1), t_mask


def _lstm(d_in, d_out, bidirectional):
    return nn.LSTM(d_in, d_out // 2 if bidirectional else d_out, batch_first=True,
                   bidirectional=bidirectional)


def temporal_alignment(s, s_mask, t):
    """U (B, m, d): for each token j, the speech frames weighted by
    softmax_i(t_j . s_i / sqrt(d)) over the valid frames i."""
    scores = torch.einsum("bjd,bid->bji", t, s) / s.shape[-1] ** 0.5   # (B, m, n)
    weights = masked_softmax(scores, s_mask.unsqueeze(1), dim=-1)
    return torch.einsum("bji,bid->bjd", weights, s)


class SemanticInteraction(nn.Module):
    """Text-aware weights for the aligned speech and speech-aware weights for
    the text: w^t_i = V.tanh(x_s u_i + x_t h_t + b), w^s_i = V.tanh(x_t t_i +
    x_s h_s + b), with h_t, h_s the masked means of T and U; then
    u~_i = u_i w^s_i and t~_i = t_i w^t_i (as the paper pairs them)."""

    def __init__(self, d, si_dim):
        super().__init__()
        self.x_s = nn.Linear(d, si_dim, bias=False)
        self.x_t = nn.Linear(d, si_dim, bias=False)
        self.b = nn.Parameter(torch.zeros(si_dim))
        self.v = nn.Linear(si_dim, 1, bias=False)

    def forward(self, u, t, mask):
        h_t = masked_mean(t, mask).unsqueeze(1)
        h_s = masked_mean(u, mask).unsqueeze(1)
        w_t = self.v(torch.tanh(self.x_s(u) + self.x_t(h_t) + self.b)).squeeze(-1)   # (B, m)
        w_s = self.v(torch.tanh(self.x_t(t) + self.x_s(h_s) + self.b)).squeeze(-1)
        # Normalised over the valid positions, then scaled so the mean weight is 1.
        count = mask.sum(1, keepdim=True).clamp_min(1).to(u.dtype)
        w_t = masked_softmax(w_t, mask, dim=1) * count
        w_s = masked_softmax(w_s, mask, dim=1) * count
        return u * w_s.unsqueeze(-1), t * w_t.unsqueeze(-1)


class MultiKernel(nn.Module):
    """Three Conv1d branches (kernels 1, 3, 5 by default) over a sequence,
    combined by an element-wise max across the branches (TSIN's multi-kernel
    block). Padded steps are zeroed before the convolutions and after."""

    def __init__(self, d_in, d_out, kernels=(1, 3, 5)):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(d_in, d_out, k, padding=k // 2) for k in kernels)

    def forward(self, x, mask):
        x = zero_pad(x, mask).transpose(1, 2)                      # (B, D, N)
        branches = torch.stack([conv(x) for conv in self.convs])  # (K, B, D', N)
        return zero_pad(branches.max(0).values.transpose(1, 2), mask)
