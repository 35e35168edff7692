"""What every stage is made of: a frozen config, a compute function, and the
values it returns.

A stage module defines a frozen dataclass `Config` and a `Stage` subclass
registered in `pipeline.stages.STAGES`. Stage modules import heavy libraries
only inside `setup`/`compute`, so listing stages and the no-op rerun stay
fast.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Optional


class ItemError(Exception):
    """A problem with one item's input: recorded against the item, the run goes on."""


class ConfigError(ValueError):
    """A bad stage option: reported before any work starts."""


@dataclass
class Seq:
    """A sequence of steps along the item's time: data has shape (T, ...).

    Give either `rate` (steps per second, step i at offset + i / rate) or
    explicit `times` (seconds, one per step) so heads can align stages that
    run at different rates.
    """
    data: Any
    rate: Optional[float] = None
    offset: float = 0.0
    times: Any = None
    kind = "seq"


@dataclass
class Vec:
    """One fixed-shape value per item (an utterance-level vector, a flag)."""
    data: Any
    kind = "vec"


@dataclass
class Result:
    arrays: dict
    meta: dict = field(default_factory=dict)   # small JSON-able facts per item


class Stage:
    """Base class. Subclasses set the class attributes and `compute`."""
    name: str = ""
    version: str = "1"
    Config: type = None
    reads: tuple = ()            # Item fields whose content goes into the key
    consumes: dict = {}          # role -> config field naming the upstream spec
    group: Optional[str] = None  # stages of one group share a task (and its memo)
    batch_items: int = 64        # items per task
    gpu_batch_items: int = 0     # items per task when a GPU worker runs it (0: batch_items)
    batched: bool = False        # True: compute_batch over all items of a task
    default_on: bool = False     # part of `pipeline extract` without --stages
    gpu: bool = False            # a neural stage that wants a GPU worker when there is one
    summary_meta: tuple = ()     # per-item meta numbers whose mean the run summary shows
    runtime_options: tuple = ()  # options that cannot change the output: not in the key
    # Options that say where a file is (a model folder, a weights file): not in the key,
    # identity() holds the file's content digest instead, so moving the file recomputes nothing.
    location_options: tuple = ()

    def __init__(self, config):
        self.config = config
        self._resources = None

    # --- driver side -------------------------------------------------------
    def validate(self) -> None:
        """Raise ConfigError for values the type check cannot catch."""

    def identity(self) -> dict:
        """Extra key material that is not in the config (e.g. a model digest)."""
        return {}

    def notes(self) -> list:
        """Lines `pipeline extract` prints about this configuration (e.g. a fallback in use)."""
        return []

    def upstream_specs(self) -> dict:
        return {role: getattr(self.config, fname) for role, fname in self.consumes.items()}

    # --- worker side -------------------------------------------------------
    @property
    def resources(self):
        if self._resources is None:
            self._resources = self.setup()
        return self._resources

    def setup(self):
        """Load models once per worker process; the return value is cached."""
        return {}

    def compute(self, ctx) -> Result:
        raise NotImplementedError(f"stage {self.name} defines neither compute nor compute_batch")

    def compute_batch(self, ctxs) -> list:
        """Results (or ItemError instances) for a list of item contexts."""
        out = []
        for ctx in ctxs:
            try:
                out.append(self.compute(ctx))
            except ItemError as e:
                out.append(e)
        return out

    def shard_attrs(self) -> dict:
        """Facts about the output shared by all items (e.g. column names)."""
        return {}


def catch_item_error(fn, *args):
    """fn(*args), or the ItemError it raised: batched stages return one result
    or error per item instead of failing the whole batch."""
    try:
        return fn(*args)
    except ItemError as e:
        return e


def config_fields(cls) -> dict:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def make_config(stage_cls, values: dict):
    """Build a stage's Config from overrides, checking names and types."""
    fields_ = config_fields(stage_cls.Config)
    clean = {}
    for key, value in values.items():
        if key not in fields_:
            known = ", ".join(fields_)
            raise ConfigError(f"stage {stage_cls.name}: unknown option {key!r} (options: {known})")
        clean[key] = _coerce(stage_cls.name, key, value, fields_[key])
    return stage_cls.Config(**clean)


def _coerce(stage, key, value, hint):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union:
        if value is None and type(None) in args:
            return None
        if isinstance(value, str) and value.lower() in ("none", "null") and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(stage, key, value, inner[0])
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            value = [value]
        return tuple(_coerce(stage, key, v, args[0] if args else str) for v in value)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"stage {stage}: option {key}={value!r} must be one of {list(args)}")
        return value
    try:
        if hint is bool:
            return _to_bool(value)
        if hint is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        return hint(value)
    except (TypeError, ValueError):
        raise ConfigError(f"stage {stage}: option {key}={value!r} is not a valid {hint.__name__}") from None


def _to_bool(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
        return True
    if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
        return False
    raise ValueError(value)
