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

from .regularize import drop_groups, parse_shares
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
    pool: int = 1                   # average every `pool` consecutive steps (after the cap)
    track: Optional["Input"] = None  # a second frame sequence joined feature-wise at this one's step times

    @property
    def is_feature(self) -> bool:
        return self.kind in ("seq", "vec")

    @property
    def stages(self) -> tuple:
        """The stage specs this input reads: its own, and its track's."""
        return (self.stage, *(self.track.stages if self.track else ()))


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
    # Shared training options (docs/training.md): the training layer applies
    # them to every head, no model reads them.
    # Per-feature standardisation of the inputs: "fold" with the training
    # fold's mean / std; "speaker" with each speaker's own (all of the
    # speaker's items, no labels: removes voice and level differences).
    standardize: Literal["fold", "speaker", "none"] = "fold"
    # With "speaker": the inputs that take the training fold's statistics
    # instead (a speaker's mix of lines shifts its text statistics, not only its voice).
    fold_inputs: tuple[str, ...] = ()
    # Classification loss weights: "balanced" weighs each class by
    # n / (classes * n_class) over the training fold, so a frequent class
    # (IEMOCAP's merged hap+exc) does not pull the others' items towards it;
    # UA counts every class alike.
    class_weights: Literal["none", "balanced"] = "none"
    # While training, an item loses one modality group ("GROUP:SHARE" each,
    # shares disjoint, sum < 1): heads/regularize.py.
    modality_dropout: tuple[str, ...] = ()
    # The head's frame input (`Head.frames`): average every k steps, and join a
    # second frame track ("STAGE_SPEC:ARRAY") at its step times before pooling.
    frame_pool: int = 1
    frame_track: str = ""


# Fields that choose how a run executes, never what it computes: a paper
# preset's other fields each carry a source (`Head.sources`).
RUNTIME_FIELDS = ("num_workers", "threads")


class Head(nn.Module):
    """Base class: subclasses set name, Config (presets: the manifests), and
    implement `inputs(config)` and `classify(batch) -> logits (B, C)`.

    `forward` standardises every feature input with per-feature statistics
    (buffers, so they travel with the checkpoint; the identity until
    heads/standardize.py fills them), then, while training, drops modality
    groups (heads/regularize.py), then classifies. Models never read the
    shared training options themselves."""
    name = ""
    description = ""
    Config = TrainConfig
    # What the outputs mean and the base loss (heads/tasks.py); the training
    # loop sets the label set's task on each model, so heads never choose it.
    task = Classification()
    # The input holding the head's frames (mel / MFCC / fbank): the one that
    # `frame_pool` and `frame_track` apply to; None for heads without one.
    frames: Optional[str] = None

    def __init__(self, config, dims: dict, n_classes: int):
        super().__init__()
        self.config = config
        self.dims = dict(dims)      # input name -> feature width (trailing dim)
        self.n_classes = n_classes
        self.class_weight = None    # per-class loss weights (tensor) set by the training loop, or None
        for name, d in self.dims.items():
            self.register_buffer(f"mean_{name}", torch.zeros(d))
            self.register_buffer(f"std_{name}", torch.ones(d))
        self.drop_shares = parse_shares(config.modality_dropout)
        self.drop_groups = self.modality_groups(config) if self.drop_shares else {}

    def forward(self, batch):
        batch = dict(batch)
        for name in self.dims:
            batch[name] = (batch[name] - getattr(self, f"mean_{name}")) / getattr(self, f"std_{name}")
        if self.training and self.drop_shares:
            batch = drop_groups(batch, self.drop_groups, self.drop_shares)
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
        """name -> Input: the cached arrays the model reads (as it declares them)."""
        raise NotImplementedError

    @classmethod
    def declared_inputs(cls, config) -> dict:
        """`inputs(config)` with the shared frame options applied to the frame
        input (`frames`): `pool=config.frame_pool` and the `frame_track`
        read beside it. Everything that reads a head's inputs uses this."""
        inputs = dict(cls.inputs(config))
        frame = inputs.get(cls.frames) if cls.frames else None
        if frame is None:
            return inputs
        from .data import track_input
        track = track_input(frame, config.frame_track) if config.frame_track else None
        inputs[cls.frames] = dataclasses.replace(frame, pool=config.frame_pool, track=track)
        return inputs

    @classmethod
    def modality_groups(cls, config) -> dict:
        """group -> input names that `modality_dropout` drops together; by
        default one group per feature or ids input, named after it ("raw"
        inputs, e.g. word times, are never dropped). Heads override this
        where a modality has several inputs."""
        return {name: (name,) for name, inp in cls.inputs(config).items() if inp.kind != "raw"}

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
        cls.check_shared(config)

    @classmethod
    def check_shared(cls, config):
        """ConfigError for bad shared training options (TrainConfig's), before any work."""
        features = sorted(n for n, i in cls.inputs(config).items() if i.is_feature)
        unknown = sorted(set(config.fold_inputs) - set(features))
        if config.fold_inputs and (config.standardize != "speaker" or unknown):
            raise ConfigError(f"head {cls.name}: fold_inputs needs standardize=speaker and names among "
                              f"the feature inputs {features} (not {unknown})")
        groups = cls.modality_groups(config)
        shares = parse_shares(config.modality_dropout, f"head {cls.name}: modality_dropout")
        unknown = sorted(set(shares) - set(groups))
        if unknown:
            raise ConfigError(f"head {cls.name}: modality_dropout names unknown group(s) {unknown} "
                              f"(groups: {sorted(groups)})")
        if config.frame_pool < 1:
            raise ConfigError(f"head {cls.name}: frame_pool must be >= 1")
        # A configuration that leaves the frame input out (a text-only ablation) pools nothing.
        if (config.frame_pool > 1 or config.frame_track) and cls.frames is None:
            raise ConfigError(f"head {cls.name}: frame_pool and frame_track need a head with a frame input "
                              "(this one reads no mel / MFCC frames)")
        cls.declared_inputs(config)             # refuses a bad frame_track

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
        return Data(cache, dataset, cls.declared_inputs(config), config.labelset, overrides)

    @classmethod
    def variant(cls, config) -> str:
        """The name a run and the papers' table give this configuration."""
        return getattr(config, "ablation", "full")

    @classmethod
    def stages(cls, config=None) -> list:
        """Stage specs the head reads with this config (default: the paper's)."""
        config = config or cls.make_config()
        return sorted({s for i in cls.declared_inputs(config).values() for s in i.stages})


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
