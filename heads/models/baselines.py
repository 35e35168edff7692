"""The single-modality baselines the papers compare against.

- `egemaps_mlp`: an MLP on the 88 eGeMAPS functionals of each utterance
  (openSMILE, `opensmile@egemaps`).
- `fbank_bilstm`: a BiLSTM over the log-mel filterbank frames (the same
  `fbank@tsin` features TSIN reads) with attention pooling over the frames.
- `bert_mlp`: an MLP on the BERT [CLS] vector (`bert@tsin`'s `cls`); also
  named `bert_only`, the "BERT only" row of HarmoFusion and MUSE.

The papers give no recipe for these; ours (Adam, lr 1e-3, 50 epochs, batch
32, dropout 0.3) is the Config defaults, so `--preset paper` means "the
standard baseline" here. `--dev` with early stopping works as for any head.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from pipeline.stage import ConfigError

from ..head import Head, Input, TrainConfig
from ..layers import masked_softmax, run_lstm
from . import HEADS


def mlp(d_in, hidden, n_layers, n_classes, dropout):
    layers, d = [], d_in
    for _ in range(n_layers):
        layers += [nn.Linear(d, hidden), nn.ReLU(), nn.Dropout(dropout)]
        d = hidden
    return nn.Sequential(*layers, nn.Linear(d, n_classes))


@dataclass(frozen=True)
class MLPConfig(TrainConfig):
    stage: str = ""
    array: str = ""
    hidden: int = 256
    layers: int = 2
    dropout: float = 0.3
    epochs: int = 50
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4


class VectorMLP(Head):
    """An MLP on one utterance-level vector."""
    Config = MLPConfig

    @classmethod
    def inputs(cls, config) -> dict:
        return {"x": Input(config.stage, config.array, "vec")}

    @classmethod
    def check(cls, config):
        super().check(config)
        if config.hidden < 1 or config.layers < 0:
            raise ConfigError(f"head {cls.name}: hidden must be >= 1 and layers >= 0")

    def __init__(self, config, dims, n_classes):
        super().__init__(config, dims, n_classes)
        self.net = mlp(dims["x"], config.hidden, config.layers, n_classes, config.dropout)

    def classify(self, batch):
        return self.net(batch["x"])


@dataclass(frozen=True)
class EgemapsConfig(MLPConfig):
    stage: str = "opensmile@egemaps"
    array: str = "functionals"


@HEADS.register()
class EgemapsMLP(VectorMLP):
    name = "egemaps_mlp"
    description = "MLP on eGeMAPS functionals (speech-only baseline)"
    Config = EgemapsConfig


@dataclass(frozen=True)
class BertConfig(MLPConfig):
    stage: str = "bert@tsin"
    array: str = "cls"


@HEADS.register()
class BertMLP(VectorMLP):
    name = "bert_mlp"
    description = "MLP on the BERT [CLS] vector (text-only baseline)"
    Config = BertConfig


# HarmoFusion's and MUSE's "BERT only" row is this baseline.
HEADS.alias("bert_only", "bert_mlp")


@dataclass(frozen=True)
class BiLSTMConfig(TrainConfig):
    stage: str = "fbank@tsin"
    array: str = "fbank"
    max_frames: int = 500
    hidden: int = 128               # per direction
    attention: int = 64             # width of the attention scorer
    dropout: float = 0.3
    epochs: int = 50
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    pooling: Literal["attention", "mean"] = "attention"


@HEADS.register()
class FbankBiLSTM(Head):
    """BiLSTM over filterbank frames; a learned score per frame, softmax over
    the real frames, and the weighted sum of the states feeds a linear layer."""
    name = "fbank_bilstm"
    description = "BiLSTM + attention pooling on log-mel frames (speech-only baseline)"
    Config = BiLSTMConfig
    frames = "speech"

    @classmethod
    def inputs(cls, config) -> dict:
        return {"speech": Input(config.stage, config.array, "seq", config.max_frames)}

    @classmethod
    def check(cls, config):
        super().check(config)
        if min(config.hidden, config.attention, config.max_frames) < 1:
            raise ConfigError("head fbank_bilstm: widths and max_frames must be >= 1")

    def __init__(self, config, dims, n_classes):
        super().__init__(config, dims, n_classes)
        self.lstm = nn.LSTM(dims["speech"], config.hidden, batch_first=True, bidirectional=True)
        self.score = nn.Sequential(nn.Linear(2 * config.hidden, config.attention), nn.Tanh(),
                                   nn.Linear(config.attention, 1))
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(2 * config.hidden, n_classes)

    def classify(self, batch):
        mask = batch["speech_mask"]
        h = run_lstm(self.lstm, batch["speech"], mask)
        if self.config.pooling == "attention":
            w = masked_softmax(self.score(h).squeeze(-1), mask, dim=1)
        else:
            w = mask.to(h.dtype) / mask.sum(1, keepdim=True).clamp_min(1)
        return self.fc(self.dropout(torch.einsum("bn,bnd->bd", w, h)))
