"""SUPERB's emotion-recognition downstream on cached SSL hidden states.

The model of the SUPERB benchmark's ER task (Yang et al., 2021; s3prl's
`emotion` downstream, `UtteranceLevel` with mean pooling): a learnable
softmax-weighted sum of the upstream's layers, a linear projection (256),
mean pooling over the valid frames, and a linear classifier trained with
cross-entropy. It reads the `ssl` stage (pipeline/stages/ssl.py):

- `source=frames`: the (T, L, D) frame states (`ssl` with pool=none);
- `source=pooled`: the per-layer utterance vectors (`ssl` with pool=mean or
  mean+std). A linear projection commutes with a mean, so mean-pooled
  vectors give the same model as frames with mean pooling at ~1/100 of
  the disk; attentive pooling needs frames.

Options beyond the paper: `pooling=attentive` (self-attentive pooling: a
score per projected frame from a one-hidden-layer net, softmax over the
valid frames), `layer=N`
(one cached layer, no weighting), and `fusion_stage`/`fusion_array`: any
cached utterance vector (e.g. `bert@tsin` `cls`) concatenated with the
pooled speech vector before the classifier (late fusion).

The `paper` preset is SUPERB's recipe: Adam, lr 1e-4, batches of 32 (4 x 8
accumulated steps there), gradient norm clipped at 1, no input
normalisation, 30k steps, i.e. about 270 epochs of an IEMOCAP fold's
training part; SUPERB selects on a dev part (`heads train --dev ...`).

The stage's options (its model first of all) are given as on `pipeline
extract`: `heads train --model superb --set ssl.model=ID_OR_FOLDER ...`.
The number of cached layers is read from the `layers` array the stage
stores with every item (its width is the layer count). The learned layer
weights go into each run's record and the report (heads/report.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import torch
from torch import nn

from pipeline.stage import ConfigError

from ..head import Head, Input, TrainConfig
from ..layers import masked_mean, masked_softmax
from . import HEADS


@dataclass(frozen=True)
class SuperbConfig(TrainConfig):
    stage: str = "ssl"                              # the ssl stage spec (its options via --set ssl.KEY=...)
    source: Literal["frames", "pooled"] = "frames"
    layer: Optional[int] = None                     # one cached layer (0-based among them) instead of the weighted sum
    projector: int = 256
    pooling: Literal["mean", "attentive"] = "mean"
    fusion_stage: str = ""                          # optional utterance vector for late fusion, e.g. bert@tsin
    fusion_array: str = "cls"
    dropout: float = 0.0
    epochs: int = 270
    batch_size: int = 32
    lr: float = 1e-4
    clip: float = 1.0
    standardize: Literal["fold", "speaker", "none"] = "none"


@HEADS.register()
class Superb(Head):
    name = "superb"
    description = "SUPERB emotion downstream: weighted layer sum, projection, mean pooling, linear (SSL speech)"
    Config = SuperbConfig

    @classmethod
    def inputs(cls, config) -> dict:
        array, kind = ("frames", "seq") if config.source == "frames" else ("pooled", "vec")
        out = {"speech": Input(config.stage, array, kind), "layers": Input(config.stage, "layers", "vec")}
        if config.fusion_stage:
            out["fusion"] = Input(config.fusion_stage, config.fusion_array, "vec")
        return out

    @classmethod
    def modality_groups(cls, config) -> dict:
        """The speech states and the late-fusion vector; `layers` (the cached
        layer count) is no modality."""
        return {"speech": ("speech",), **({"fusion": ("fusion",)} if config.fusion_stage else {})}

    @classmethod
    def check(cls, config):
        super().check(config)
        if config.projector < 1 or not 0 <= config.dropout < 1:
            raise ConfigError("head superb: projector must be >= 1 and dropout in [0, 1)")
        if config.source == "pooled" and config.pooling == "attentive":
            raise ConfigError("head superb: pooling=attentive needs frames (source=frames, ssl pool=none)")
        if config.layer is not None and config.layer < 0:
            raise ConfigError("head superb: layer must be >= 0 (a position among the cached layers)")

    @classmethod
    def check_dims(cls, config, dims):
        n, width = dims["layers"], dims["speech"]
        if width % n:
            raise ConfigError(f"head superb: the speech input width {width} is not {n} layers of one width")
        if config.layer is not None and config.layer >= n:
            raise ConfigError(f"head superb: layer={config.layer}, but the cache holds {n} layers")

    def __init__(self, config, dims, n_classes):
        super().__init__(config, dims, n_classes)
        self.n_layers = dims["layers"]
        self.width = dims["speech"] // self.n_layers
        # softmax(0) = equal weights; frozen when one layer is chosen
        self.layer_logits = nn.Parameter(torch.zeros(self.n_layers), requires_grad=config.layer is None)
        self.project = nn.Linear(self.width, config.projector)
        # Self-attentive pooling as s3prl's: a one-hidden-layer scorer per frame.
        self.score = nn.Sequential(nn.Linear(config.projector, config.projector), nn.ReLU(),
                                   nn.Linear(config.projector, 1)) if config.pooling == "attentive" else None
        self.dropout = nn.Dropout(config.dropout)
        self.classify_ = nn.Linear(config.projector + dims.get("fusion", 0), n_classes)

    def layer_weights(self):
        if self.config.layer is not None:
            return nn.functional.one_hot(torch.tensor(self.config.layer), self.n_layers).float()
        return torch.softmax(self.layer_logits, dim=0)

    def classify(self, batch):
        x = batch["speech"]
        x = x.view(*x.shape[:-1], self.n_layers, self.width)          # (B, [T,] L, D)
        x = torch.einsum("...ld,l->...d", x, self.layer_weights().to(x.device))
        h = self.project(x)
        if self.config.source == "frames":
            mask = batch["speech_mask"]
            if self.score is None:
                h = masked_mean(h, mask)
            else:
                w = masked_softmax(self.score(h).squeeze(-1), mask, dim=1)
                h = torch.einsum("bn,bnd->bd", w, h)
        if "fusion" in batch:
            h = torch.cat([h, batch["fusion"]], dim=-1)
        return self.classify_(self.dropout(h))

    def learned(self) -> dict:
        return {"layer_weights": [round(float(w), 6) for w in self.layer_weights().detach().cpu()]}
