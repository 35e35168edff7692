"""What every head shares: its inputs, its training options, its config.

A head is a torch Module with a `Config` dataclass that holds both its model
options and its training recipe (fields of `TrainConfig`), the defaults being
the paper's recipe. Its presets are data: `[preset.<head>.<name>]` tables
in the manifests (pipeline/presets.py), each a set of overrides with the
stage list it reads (`paper`: the values that differ from the defaults;
`demo`: a model a CPU run on the demo corpus trains in minutes).
`inputs(config)` says which cached arrays the head reads, so the
Dataset loads exactly those and `heads train` can check the cache for them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, Optional

import torch
from torch import nn

from pipeline.stage import ConfigError, make_config

from .tasks import Classification


@dataclass(frozen=True)
class Input:
    """One cached array a head reads: stage spec, array name, kind and length cap.

    Kinds: "seq" (float32 steps) and "vec" (float32 vector) are features:
    standardised and counted in the head's `dims`. "ids" (int64 steps, e.g.
    phoneme ids) and "raw" (float32 steps as stored, e.g. word times with
    nan) are read as they are: never standardised, not in `dims`. Every
    kind but "vec" is padded per batch and gets a `<name>_mask`."""
    stage: str                      # stage spec, e.g. "fbank@tsin"
    array: str                      # array name in that stage's output, e.g. "fbank"
    kind: Literal["seq", "vec", "ids", "raw"] = "seq"
    cap: Optional[int] = None       # keep at most this many steps (not for vec)

    @property
    def is_feature(self) -> bool:
        return self.kind in ("seq", "vec")


# Dev metrics a run can select on: a classification's (WA, UA, WF1, MF1), a
# regression's (heads/metrics.py regression_summary), and the loss. Whether
# the chosen one fits the label set's task is checked when the data is known.
SelectMetric = Literal["ua", "wa", "wf1", "mf1", "mf1_all", "mae", "corr", "acc2", "f1_2", "acc2_nonzero",
                       "f1_2_nonzero", "acc7", "loss"]


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe every head's Config inherits (defaults overridden per head)."""
    labelset: str = "4class"
    epochs: int = 50
    batch_size: int = 32
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: Literal["none", "step", "plateau"] = "none"
    lr_step: int = 50               # step schedule: epochs between decays
    lr_gamma: float = 0.1           # step / plateau: decay factor
    clip: float = 0.0               # max gradient norm; 0 = no clipping
    select_metric: SelectMetric = "ua"   # dev metric for selection (one of the task's: heads/tasks.py)
    patience: int = 0               # epochs without dev improvement before stopping; 0 = never stop early
    average_last: int = 0           # without a dev part: keep the mean weights of the last k epochs (0 = the last;
                                    # all epochs when there are fewer)
    num_workers: int = 0            # DataLoader worker processes
    threads: int = 1                # CPU threads for torch (0: torch's default); small
                                    # recurrent heads run fastest on one thread
    # Per-feature standardisation of the inputs: "fold" with the training
    # fold's mean / std; "speaker" with each speaker's own (all of the
    # speaker's items, no labels: removes voice and level differences).
    standardize: Literal["fold", "speaker", "none"] = "fold"
    # With "speaker": the inputs standardised per speaker (empty: every feature
    # input); the others take the training fold's statistics. A speaker's mix
    # of lines shifts its text statistics, not only its voice.
    speaker_inputs: tuple[str, ...] = ()
    # ... or the other way round: the inputs that take the training fold's
    # statistics, every other feature input its speaker's (not with speaker_inputs).
    fold_inputs: tuple[str, ...] = ()
    # With "speaker": where each speaker's statistics centre: "mean" of its
    # steps, or "median" of its items' means, which a speaker with many
    # items of one emotion moves less (its spread is then taken around it).
    speaker_center: Literal["mean", "median"] = "mean"
    # Classification loss weights: "balanced" weighs each class by
    # n / (classes * n_class) over the training fold, so a frequent class
    # (IEMOCAP's merged hap+exc) does not pull the others' items towards it;
    # UA counts every class alike.
    class_weights: Literal["none", "balanced"] = "none"


TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}
# Fields that choose how a run executes, never what it computes: a paper
# preset's other fields each carry a source (`Head.sources`).
RUNTIME_FIELDS = ("num_workers", "threads")


class Head(nn.Module):
    """Base class: subclasses set name, Config (presets: the manifests), and
    implement `inputs(config)` and `classify(batch) -> logits (B, C)`.

    `forward` first standardises every input with per-feature statistics
    of the training fold (buffers, so they travel with the checkpoint; the
    identity until `set_input_stats` is called)."""
    name = ""
    description = ""
    Config = TrainConfig
    # What the outputs mean and the base loss (heads/tasks.py); the training
    # loop sets the label set's task on each model, so heads never choose it.
    task = Classification()

    def __init__(self, config, dims: dict, n_classes: int):
        super().__init__()
        self.config = config
        self.dims = dict(dims)      # input name -> feature width (trailing dim)
        self.n_classes = n_classes
        self.class_weight = None    # per-class loss weights (tensor) set by the training loop, or None
        for name, d in self.dims.items():
            self.register_buffer(f"mean_{name}", torch.zeros(d))
            self.register_buffer(f"std_{name}", torch.ones(d))

    def set_input_stats(self, stats: dict):
        """stats: input name -> (mean, std) arrays of its feature width."""
        for name, (mean, std) in stats.items():
            getattr(self, f"mean_{name}").copy_(torch.as_tensor(mean))
            getattr(self, f"std_{name}").copy_(torch.as_tensor(std))

    def forward(self, batch):
        batch = dict(batch)
        for name in self.dims:
            batch[name] = (batch[name] - getattr(self, f"mean_{name}")) / getattr(self, f"std_{name}")
        return self.classify(batch)

    def classify(self, batch):
        raise NotImplementedError

    def learned(self) -> dict:
        """Small facts the trained model holds that a report should show
        (e.g. learned layer weights), JSON-able; none by default."""
        return {}

    def loss(self, logits, batch):
        """The training objective for a batch: the task's loss (cross-entropy
        for a classification, L1 for a regression), plus whatever auxiliary
        terms the head computed in `classify` (kept in `self.aux_losses`,
        name -> scalar tensor, already weighted)."""
        loss = self.task.loss(logits, batch["label"], self.class_weight)
        for term in getattr(self, "aux_losses", {}).values():
            loss = loss + term
        return loss

    @classmethod
    def inputs(cls, config) -> dict:
        raise NotImplementedError

    @classmethod
    def make_config(cls, preset="paper", overrides=None):
        """The Config of a preset (its manifest table) plus overrides (from
        --set or a TOML file); a preset value the Config lacks or refuses is
        a ConfigError naming the manifest file, the head and the preset."""
        from pipeline.presets import find_preset
        table = find_preset(cls.name, preset)
        unknown = sorted(set(table.values) - {f.name for f in dataclasses.fields(cls.Config)})
        try:
            if unknown:
                raise ConfigError(f"unknown option(s) {', '.join(unknown)} of head {cls.name}")
            make_config(cls, table.values)
        except ConfigError as e:
            raise ConfigError(f"{table.label}: {e}") from None
        config = make_config(cls, {**table.values, **(overrides or {})})
        cls.check(config)
        return config

    @classmethod
    def sources(cls) -> dict:
        """field -> where its paper-preset value comes from: a section of
        the paper or "choice: <why>" (manifests/sources.toml): the head's
        own [sources.<name>] table over its parent heads' over the common one."""
        tables = source_tables()
        out = dict(tables.get("common", {}))
        for klass in reversed(cls.__mro__):
            out.update(tables.get(getattr(klass, "name", ""), {}))
        return out

    @classmethod
    def check(cls, config):
        """Raise ConfigError for bad option combinations (runs before any work)."""
        for name in ("epochs", "batch_size"):
            if getattr(config, name) < 1:
                raise ConfigError(f"head {cls.name}: {name} must be >= 1")
        if config.lr <= 0:
            raise ConfigError(f"head {cls.name}: lr must be > 0")
        if config.average_last < 0:
            raise ConfigError(f"head {cls.name}: average_last must be >= 0")
        named = (*config.speaker_inputs, *config.fold_inputs)
        features = sorted(n for n, i in cls.inputs(config).items() if i.is_feature) if named else []
        for option in ("speaker_inputs", "fold_inputs"):
            unknown = sorted(set(getattr(config, option)) - set(features))
            if getattr(config, option) and (config.standardize != "speaker" or unknown):
                raise ConfigError(f"head {cls.name}: {option} needs standardize=speaker and names among "
                                  f"the feature inputs {features} (not {unknown})")
        if config.speaker_inputs and config.fold_inputs:
            raise ConfigError(f"head {cls.name}: give speaker_inputs or fold_inputs, not both")
        if config.speaker_center != "mean" and config.standardize != "speaker":
            raise ConfigError(f"head {cls.name}: speaker_center={config.speaker_center} needs standardize=speaker")

    @classmethod
    def speaker_normalised(cls, config) -> tuple:
        """The feature inputs standardised per speaker: none unless
        standardize=speaker; then speaker_inputs, or every feature input but
        fold_inputs."""
        if config.standardize != "speaker":
            return ()
        if config.speaker_inputs:
            return tuple(config.speaker_inputs)
        return tuple(n for n, i in cls.inputs(config).items() if i.is_feature and n not in config.fold_inputs)

    @classmethod
    def check_dims(cls, config, dims):
        """Raise ConfigError when an option does not fit the input widths
        (input name -> width, read from the cache before any training)."""

    @classmethod
    def open_data(cls, cache, dataset, config, overrides=None):
        """The labelled data the head trains on: by default one example per
        item (heads/data.py); per-frame heads return windows cut from items.
        `overrides`: stage options ({stage label: {key: value}}) that select
        which extraction of the head's stage specs is read."""
        from .data import Data
        return Data(cache, dataset, cls.inputs(config), config.labelset, overrides)

    @classmethod
    def variant(cls, config) -> str:
        """The name a run and the papers' table give this configuration."""
        return getattr(config, "ablation", "full")

    @classmethod
    def stages(cls, config=None) -> list:
        """Stage specs the head reads with this config (default: the paper's)."""
        config = config or cls.make_config()
        return sorted({i.stage for i in cls.inputs(config).values()})


def source_tables() -> dict:
    """[sources.<head>] tables of every manifest (head name -> field -> source)."""
    from pipeline.presets import manifest_files
    out = {}
    for f in manifest_files():
        for name, table in f.data.get("sources", {}).items():
            if name in out:
                raise ValueError(f"sources of {name} are declared twice (second in {f.name})")
            out[name] = table
    return out


def kept_modalities(b, m, share, device):
    """(B, M) 1.0 for each of M modalities an item keeps while training with
    modality dropout: a `share` of the items loses one modality drawn at
    random, so that no modality is left unused because another one fits the
    training items more easily (not in the papers; off by default)."""
    keep = torch.ones(b, m, device=device)
    if share <= 0 or m < 2:
        return keep
    dropped = torch.rand(b, device=device) < share
    which = torch.randint(m, (b,), device=device)
    keep[dropped, which[dropped]] = 0.0
    return keep


def masked_mean(x, mask):
    """Mean over dim 1 of x (B, N, D) counting only positions where mask (B, N) is True."""
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


def masked_softmax(scores, mask, dim):
    """Softmax that gives padded positions (mask False) exactly zero weight."""
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=dim) * mask.to(scores.dtype)


def pool_steps(x, mask, k):
    """Average every k consecutive valid steps (a shorter sequence for
    recurrent layers); a pooled step is valid when any of its steps is."""
    if k <= 1:
        return x, mask
    b, n, d = x.shape
    pad = (-n) % k
    x = nn.functional.pad(zero_pad(x, mask), (0, 0, 0, pad)).view(b, -1, k, d)
    m = nn.functional.pad(mask, (0, pad)).view(b, -1, k)
    counts = m.sum(-1, keepdim=True).clamp_min(1).to(x.dtype)
    return x.sum(2) / counts, m.any(-1)


def stage_rate(spec):
    """Steps per second of a stage spec's output (None when it has no fixed
    frame rate, e.g. utterance vectors)."""
    from pipeline.graph import resolve
    return getattr(resolve([spec])[-1].stage, "rate", None)


def frame_ratio(spec, track_spec, option):
    """How many `track_spec` steps one `spec` step lasts, for `track_at`;
    ConfigError (naming the head option) when either has no frame rate."""
    rates = {s: stage_rate(s) for s in (spec, track_spec)}
    lacking = [s for s, r in rates.items() if not r]
    if lacking:
        raise ConfigError(f"{option}: {', '.join(lacking)} has no frame rate; a second track must be a "
                          "frame sequence timed like the first (e.g. opensmile@egemaps_lld)")
    return rates[track_spec] / rates[spec]


def track_input(config, option="prosody_stage") -> Input:
    """The Input of a second frame track read beside the speech stage
    (`config.prosody_stage` / `prosody_array`), capped to the span that
    `max_frames` speech frames cover (through the step `track_at` pairs
    with the last of them)."""
    ratio = frame_ratio(config.speech_stage, config.prosody_stage, option)
    return Input(config.prosody_stage, config.prosody_array, "seq", round((config.max_frames - 1) * ratio) + 1)


def track_at(n, ratio, track, track_mask):
    """The steps of a second track at the times of n steps of a first one
    (step j of the first starts where step round(j * ratio) of the track
    does, both from the item's start): (B, n, E) and a mask that is False
    where the track has no step, so callers AND it with their own mask."""
    index = torch.round(torch.arange(n, device=track.device, dtype=torch.float64) * ratio).long()
    inside = index < track.shape[1]
    index = index.clamp(max=track.shape[1] - 1)
    return track[:, index], track_mask[:, index] & inside


def regroup(flat, flat_mask, lengths, lengths_mask):
    """Cut each item's flat sequence (B, P) into consecutive groups of the
    given lengths (B, N), e.g. a transcript's phoneme ids into words:
    (B, N, L) with L the longest group, and its mask (B, N, L). Padded
    groups count as empty; a step past the group's length or past the end
    of the item's flat steps is masked and zero."""
    lengths = torch.where(lengths_mask, lengths, torch.zeros_like(lengths))
    starts = torch.cumsum(lengths, 1) - lengths
    steps = torch.arange(max(int(lengths.max()) if lengths.numel() else 0, 1), device=flat.device)
    index = starts.unsqueeze(-1) + steps                                  # (B, N, L)
    b, n, length = index.shape
    inside = (steps < lengths.unsqueeze(-1)) & (index < flat.shape[1])
    flat_index = index.clamp(max=flat.shape[1] - 1).view(b, -1)
    mask = inside & torch.gather(flat_mask, 1, flat_index).view(b, n, length)
    values = torch.gather(flat, 1, flat_index).view(b, n, length)
    return values * mask.to(values.dtype), mask


def zero_pad(x, mask):
    """Set padded steps of x (B, N, D) to zero so convolutions cannot see them."""
    return x * mask.unsqueeze(-1).to(x.dtype)


def run_lstm(lstm: nn.LSTM, x, mask):
    """An LSTM over the valid steps only (packed), padded back to x's length.

    Packing keeps padded steps out of the recurrence in both directions, so
    their values never reach a valid step's output.
    """
    lengths = mask.sum(1).clamp_min(1).cpu()
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, _ = lstm(packed)
    out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return zero_pad(out, mask)


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
