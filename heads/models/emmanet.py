"""EMMA-Net: cross-temporal attention over face, audio and pose (MODELS.md §4, papers/004).

Per-frame expression classification (Aff-Wild2, 8 classes). An example is
a window of T steps on a common 2 Hz timeline ending at the target frame
(heads/frames.py cuts it from the whole video); the face input's last step
is the current face f_c, the sampled frame nearest the target. The face
steps go through a 2-layer bidirectional GRU, the audio (DeepSpectrum, or
windowed eGeMAPS) and pose (2-D keypoints) steps through 2-layer GRUs.
Attention anchored on the face: alpha^m = softmax(H^m W_Q^m (a W_K^m)^T /
sqrt(d_k)) over the steps of modality m, C^m = sum_t alpha^m_t H^m_t,
z = [a; C^f; C^a; C^p], and an MLP (one hidden layer, dropout) classifies.
Padded steps take part in no recurrence, softmax or mean.

Our choices where the paper is vague (all configurable):
- A prediction is made at every step of the window, anchored on that
  step's face vector (f_c at the last step) and attending to the steps up
  to it only, so the window's predictions form a sequence in time for the
  smoothness loss; the example's prediction is the last step's.
- Smoothness: lambda_smooth * sum_t |p_t - p_(t-1)|_1 over consecutive
  valid steps of the class probabilities p, averaged over the batch.
- Reconstruction: per modality a linear decoder maps the target step's z
  to the T x h states H^m; lambda_rec * the mean squared error over the
  valid steps, summed over modalities. The target states are detached:
  otherwise the encoders could shrink H towards a trivially reconstructed
  zero instead of z keeping each modality's information.
- Fusion variants: `attention` (the paper's); `concat`, no attention, the
  mean of each H^m over the steps so far; `gating`, each attention context
  scaled by a sigmoid gate computed from the anchor and that context;
  `additive`, the contexts summed with learned scalar weights (softmax over
  the modalities) instead of concatenated.
- Ablations: `face_only` classifies the face anchor alone (the paper's
  face-only baseline); `no_audio` and `no_pose` leave one stream out.
- Pose keypoints are stored as (x, y, z, visibility) per joint; `pose_xy`
  keeps x and y, the paper's 2-D joints.
- Training and scoring (MODELS.md §4): the lr is halved when the dev
  part plateaus; the dev part is a fifth of the training videos, whole
  (`heads train --dev session-share`; without a dev part the plateau can
  only follow the training loss). Every labelled frame of the scored part
  is predicted, also where no face was found (`report_no_face`).
- Hidden sizes, d_k, dropout and the loss weights are not given in the
  paper: h = 128, d_k = 64, an MLP of 128 units, dropout 0.3, both
  lambdas 0.1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from pipeline.stage import ConfigError

from ..frames import FrameData, Timeline
from ..head import Head, Input, SelectMetric, TrainConfig
from ..layers import masked_softmax, run_lstm
from . import HEADS

FUSIONS = ("attention", "concat", "gating", "additive")
KEYPOINT_VALUES = 4                 # x, y, z, visibility per joint (pipeline/stages/pose.py)


@dataclass(frozen=True)
class Config(TrainConfig):
    labelset: str = "8class"
    # inputs: named stage configurations (manifests/emmanet.toml)
    face_stage: str = "face@emmanet_expr"      # the paper's expression-trained face network (face@emmanet: MediaPipe features)
    face_array: str = "embedding"
    audio_stage: str = "deepspectrum@emmanet"   # or opensmile@egemaps_2hz with audio_array=functionals
    audio_array: str = "deepspectrum"
    pose_stage: str = "pose@emmanet"
    pose_array: str = "keypoints"
    pose_xy: bool = True            # keep x, y of each keypoint (the paper's 2-D joints)
    # the timeline (heads/frames.py)
    window: int = 12                # T steps (6 s at 2 Hz); the paper tried 6..18
    step_s: float = 0.5
    train_every: int = 5            # training targets: every 5th labelled frame (the face's sampling)
    # model
    fusion: Literal["attention", "concat", "gating", "additive"] = "attention"
    ablation: Literal["full", "face_only", "no_audio", "no_pose"] = "full"
    hidden: int = 128               # h: width of every stream's GRU states (face: h/2 per direction)
    layers: int = 2
    d_k: int = 64
    mlp_hidden: int = 128
    dropout: float = 0.3
    lambda_rec: float = 0.1
    lambda_smooth: float = 0.1
    # the paper's recipe: lr 0.02, batch 4, lr halved when the validation plateaus
    epochs: int = 30
    batch_size: int = 4
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 0.02
    schedule: Literal["none", "step", "plateau"] = "plateau"
    lr_gamma: float = 0.5
    patience: int = 4               # plateau: 2 epochs; early stop after 4 (with a dev part)
    select_metric: SelectMetric = "mf1_all"     # the per-frame mean F1 over all 8 classes


@HEADS.register()
class EMMANet(Head):
    name = "emmanet"
    description = "per-frame face BiGRU + audio and pose GRUs, attention anchored on the current face"
    Config = Config

    @classmethod
    def streams(cls, config) -> tuple:
        """The modalities whose GRU states are fused."""
        if config.ablation == "face_only":
            return ()
        return tuple(m for m in ("face", "audio", "pose") if config.ablation != f"no_{m}")

    @classmethod
    def inputs(cls, config) -> dict:
        out = {"face": Input(config.face_stage, config.face_array, "seq")}
        if "audio" in cls.streams(config):
            out["audio"] = Input(config.audio_stage, config.audio_array, "seq")
        if "pose" in cls.streams(config):
            out["pose"] = Input(config.pose_stage, config.pose_array, "seq")
        return out

    @classmethod
    def timeline(cls, config) -> Timeline:
        return Timeline(step_s=config.step_s, steps=config.window, anchor="face",
                        train_every=config.train_every)

    @classmethod
    def open_data(cls, cache, dataset, config, overrides=None):
        data = FrameData(cache, dataset, cls.declared_inputs(config), config.labelset, cls.timeline(config), overrides)
        report_no_face(data)
        return data

    @classmethod
    def variant(cls, config) -> str:
        if config.ablation == "face_only":
            return "face_only"
        parts = [config.fusion] if config.fusion != "attention" else []
        parts += [config.ablation] if config.ablation != "full" else []
        return "+".join(parts) or "full"

    @classmethod
    def check(cls, config):
        super().check(config)
        if min(config.window, config.hidden, config.layers, config.d_k, config.mlp_hidden,
               config.train_every) < 1:
            raise ConfigError("head emmanet: window, widths, layers and train_every must be >= 1")
        if config.hidden % 2:
            raise ConfigError(f"head emmanet: hidden={config.hidden} must be even (the face GRU "
                              "has hidden/2 units per direction)")
        if config.step_s <= 0:
            raise ConfigError("head emmanet: step_s must be > 0")
        if not 0 <= config.dropout < 1:
            raise ConfigError("head emmanet: dropout must be in [0, 1)")
        if config.lambda_rec < 0 or config.lambda_smooth < 0:
            raise ConfigError("head emmanet: lambda_rec and lambda_smooth must be >= 0")

    def __init__(self, config, dims, n_classes):
        super().__init__(config, dims, n_classes)
        c = config
        self.fused = self.streams(c)
        widths = {m: dims[m] for m in self.fused}
        # Keypoint data is a multiple of 4 values wide; anything else is used whole.
        self.xy = c.pose_xy and "pose" in widths and widths["pose"] % KEYPOINT_VALUES == 0
        if self.xy:
            widths["pose"] = widths["pose"] // KEYPOINT_VALUES * 2
        self.encoders = nn.ModuleDict({m: _gru(widths[m], c.hidden, c.layers, m == "face", c.dropout)
                                       for m in self.fused})
        d_face = dims["face"]
        if c.fusion != "concat":
            self.queries = nn.ModuleDict({m: nn.Linear(c.hidden, c.d_k, bias=False) for m in self.fused})
            self.keys = nn.ModuleDict({m: nn.Linear(d_face, c.d_k, bias=False) for m in self.fused})
        if c.fusion == "gating":
            self.gates = nn.ModuleDict({m: nn.Linear(d_face + c.hidden, c.hidden) for m in self.fused})
        if c.fusion == "additive":
            self.weights = nn.Parameter(torch.zeros(len(self.fused)))
        n_contexts = (1 if c.fusion == "additive" else len(self.fused)) if self.fused else 0
        d_z = d_face + n_contexts * c.hidden
        self.mlp = nn.Sequential(nn.Linear(d_z, c.mlp_hidden), nn.ReLU(), nn.Dropout(c.dropout),
                                 nn.Linear(c.mlp_hidden, n_classes))
        if c.lambda_rec > 0 and self.fused:
            self.decoders = nn.ModuleDict({m: nn.Linear(d_z, c.window * c.hidden) for m in self.fused})

    def classify(self, batch):
        c = self.config
        anchors, mask = batch["face"], batch["face_mask"]
        states = {m: self.encode(m, batch) for m in self.fused}
        z = torch.cat([anchors, *self.fuse(anchors, mask, states)], -1)        # (B, N, d_z)
        logits = self.mlp(z)                                                    # (B, N, C)
        last = mask.sum(1).clamp_min(1) - 1
        rows = torch.arange(len(last), device=last.device)
        self.aux_losses = {}
        if c.lambda_smooth > 0:
            self.aux_losses["smooth"] = c.lambda_smooth * smoothness(logits.softmax(-1), mask)
        if c.lambda_rec > 0 and self.fused:
            self.aux_losses["rec"] = c.lambda_rec * self.reconstruction(z[rows, last], states)
        return logits[rows, last]

    def encode(self, m, batch):
        """(H^m (B, N_m, h), mask (B, N_m)): the stream's GRU states."""
        x, mask = batch[m], batch[f"{m}_mask"]
        if m == "pose" and self.xy:
            x = x.unflatten(-1, (-1, KEYPOINT_VALUES))[..., :2].flatten(-2)
        return run_lstm(self.encoders[m], x, mask), mask

    def fuse(self, anchors, mask, states) -> list:
        """The per-step contexts that z concatenates after the anchor."""
        if not states:
            return []
        kind = self.config.fusion
        if kind == "concat":
            return [running_mean(h, m_mask, anchors.shape[1]) for h, m_mask in states.values()]
        contexts = {m: self.attend(m, anchors, mask, h, m_mask) for m, (h, m_mask) in states.items()}
        if kind == "gating":
            return [torch.sigmoid(self.gates[m](torch.cat([anchors, ctx], -1))) * ctx
                    for m, ctx in contexts.items()]
        if kind == "additive":
            w = torch.softmax(self.weights, 0)
            return [sum(w[i] * ctx for i, ctx in enumerate(contexts.values()))]
        return list(contexts.values())

    def attend(self, m, anchors, mask, h, h_mask):
        """C^m (B, N, h): per anchor step t, the states of steps <= t weighted
        by softmax(H W_Q (a_t W_K)^T / sqrt(d_k))."""
        scores = torch.einsum("bkd,bqd->bqk", self.queries[m](h), self.keys[m](anchors))
        scores = scores / self.config.d_k ** 0.5
        allowed = causal(anchors.shape[1], h.shape[1], h.device) & h_mask.unsqueeze(1)
        return torch.einsum("bqk,bkd->bqd", masked_softmax(scores, allowed, dim=-1), h)

    def reconstruction(self, z, states):
        """Sum over modalities of the mean squared error of H^m decoded from z."""
        total = 0.0
        for m, (h, mask) in states.items():
            n = min(h.shape[1], self.config.window)
            decoded = self.decoders[m](z).view(len(z), self.config.window, -1)[:, :n]
            total = total + masked_mse(decoded, h[:, :n].detach(), mask[:, :n])
        return total


def report_no_face(data, out=None):
    """Say, per split tag, how many labelled frames (and whole items) had no
    face found: they are scored all the same (ABAW scores every labelled
    frame), from the nearest found face or, in an item without any, the
    stage's fill."""
    import sys
    if not data.no_face:
        return
    parts = {}
    for item_id in data.items:
        split = data.items[item_id].split or "untagged"
        n, none = data.no_face.get(item_id, (0, False))
        frames, labelled, items, faceless = parts.get(split, (0, 0, 0, []))
        parts[split] = (frames + n, labelled + int((data.labels[item_id] >= 0).sum()), items + (n > 0),
                        faceless + ([item_id] if none else []))
    for split, (frames, labelled, items, faceless) in sorted(parts.items()):
        if frames:
            names = f": {', '.join(faceless[:5])}{' ...' if len(faceless) > 5 else ''}" if faceless else ""
            print(f"heads: {split}: {frames} of {labelled} labelled frame(s) in {items} item(s) had no face "
                  f"found ({len(faceless)} item(s) none at all{names}); scored from the filled face features",
                  file=out or sys.stderr)


def _gru(d_in, hidden, layers, bidirectional, dropout):
    return nn.GRU(d_in, hidden // 2 if bidirectional else hidden, num_layers=layers, batch_first=True,
                  bidirectional=bidirectional, dropout=dropout if layers > 1 else 0.0)


def causal(n_queries, n_keys, device):
    """(1, N_q, N_k): key step k is visible from query step q when k <= q."""
    return (torch.arange(n_keys, device=device)[None, :] <= torch.arange(n_queries, device=device)[:, None])[None]


def running_mean(h, mask, n_queries):
    """(B, N_q, h): per step t, the mean of the valid states of steps <= t."""
    allowed = (causal(n_queries, h.shape[1], h.device) & mask.unsqueeze(1)).to(h.dtype)
    return torch.einsum("bqk,bkd->bqd", allowed, h) / allowed.sum(-1, keepdim=True).clamp_min(1.0)


def smoothness(probs, mask):
    """Mean over the batch of sum_t |p_t - p_(t-1)|_1 over pairs of
    consecutive valid steps of probs (B, N, C)."""
    pairs = (mask[:, 1:] & mask[:, :-1]).to(probs.dtype)
    steps = (probs[:, 1:] - probs[:, :-1]).abs().sum(-1)
    return (steps * pairs).sum(1).mean()


def masked_mse(pred, target, mask):
    """Mean over the batch of the mean squared error over valid steps."""
    m = mask.to(pred.dtype)
    per_step = ((pred - target) ** 2).mean(-1)
    return ((per_step * m).sum(1) / m.sum(1).clamp_min(1.0)).mean()
