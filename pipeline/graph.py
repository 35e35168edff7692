"""Stage specs, the dependency order, cache keys, and the plan of what is stale.

key(spec, item) = blake2b(stage name, version, canonical config, stage
identity (model digests), dataset and item id, a digest of each Item field
the stage reads, keys of the upstream outputs it consumes).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .digests import canonical, digest_text
from .presets import named_configs
from .registry import UnknownName
from .stage import ConfigError, make_config
from .stages import load_all


@dataclass
class StageSpec:
    label: str                 # "fbank" or "fbank@tsin"
    stage: object              # the Stage instance
    upstream: dict = field(default_factory=dict)   # role -> StageSpec

    @property
    def name(self):
        return self.stage.name

    @property
    def config_json(self):
        """Every option, as the workers need them."""
        return canonical(asdict(self.stage.config))

    @property
    def key_config(self):
        """The options that can change the output: runtime ones (batch size,
        threads, device) and file locations (whose content is in identity())
        are left out, so changing them recomputes nothing."""
        left_out = set(self.stage.runtime_options) | set(self.stage.location_options)
        return {k: v for k, v in asdict(self.stage.config).items() if k not in left_out}

    @property
    def config_id(self):
        """Names the configuration (not the inputs): shards of one config share a folder."""
        ident = canonical([self.name, self.stage.version, self.key_config, self.stage.identity()])
        return digest_text(ident)[:16]

    def describe(self):
        return {"label": self.label, "stage": self.name, "version": self.stage.version,
                "config": asdict(self.stage.config), "identity": self.stage.identity(),
                "config_id": self.config_id}


def resolve(labels, overrides=None) -> list:
    """Build the StageSpecs for `labels` plus everything they consume, in
    dependency order. `overrides` maps a label (or a bare stage name, which
    then applies to every spec of that stage) to option values."""
    stages = load_all()
    overrides = overrides or {}
    _check_override_targets(overrides, stages)
    built, order = {}, []

    def build(label, chain=()):
        if label in built:
            return built[label]
        if label in chain:
            raise ConfigError(f"stage cycle: {' -> '.join(chain + (label,))}")
        stage_name, _, preset = label.partition("@")
        cls = stages.get_or_fail(stage_name)
        values = {}
        if preset:
            known = named_configs()
            if label not in known:
                names = ", ".join(sorted(k for k in known if k.startswith(stage_name + "@"))) or "none"
                raise UnknownName(f"unknown named configuration {label!r} (known for {stage_name}: {names})")
            values.update(known[label][1])
        values.update(overrides.get(stage_name, {}))
        values.update(overrides.get(label, {}) if preset else {})
        stage = cls(make_config(cls, values))
        stage.validate()
        spec = StageSpec(label, stage)
        for role, up_label in stage.upstream_specs().items():
            spec.upstream[role] = build(up_label, chain + (label,))
        built[label] = spec
        order.append(spec)
        return spec

    for label in labels:
        build(label)
    return order


def closure(spec) -> list:
    """`spec` and everything it consumes, in dependency order."""
    out = []

    def visit(s):
        for up in s.upstream.values():
            visit(up)
        if s not in out:
            out.append(s)
    visit(spec)
    return out


def _check_override_targets(overrides, stages):
    for label in overrides:
        stage_name = label.partition("@")[0]
        stages.get_or_fail(stage_name)


def default_labels():
    return [name for name, cls in load_all().items() if cls.default_on]


class InputDigests:
    """Digests of the Item fields stages read, memoised per run. Notes which
    items had a media file missing (`missing`: item id -> paths) and which
    were judged by a recorded digest because the corpus is not mounted
    (`unverified`: item ids)."""

    def __init__(self, files):
        self.files = files      # digests.FileDigests
        self._memo = {}
        self.missing = {}
        self.unverified = set()

    def field(self, item, name) -> str:
        key = (item.id, name)
        if key not in self._memo:
            self._memo[key] = _FIELD_DIGESTS[name](self, item)
        return self._memo[key]

    def media(self, item, media) -> str:
        if media is None:
            return "none"
        digest, state = self.files.digest_and_state(media.path)
        if state == "recorded" or (state == "missing" and self.files.trust_recorded):
            self.unverified.add(item.id)        # the corpus is not mounted: nothing to check against
        elif state == "missing":
            self.missing.setdefault(item.id, []).append(media.path)
        return f"{digest}|{media.start}|{media.end}|{media.region}"


_FIELD_DIGESTS = {
    "audio": lambda d, item: d.media(item, item.audio),
    "video": lambda d, item: d.media(item, item.video),
    "text": lambda d, item: digest_text(canonical([item.text, item.text_clean])),
    "words": lambda d, item: digest_text(canonical([[w.word, w.start, w.end] for w in item.words or ()])),
    "labels": lambda d, item: digest_text(canonical(item.labels)),
}


def item_keys(specs, items, digests, dataset) -> dict:
    """label -> list of keys, aligned with `items`."""
    keys = {}
    for spec in specs:
        unknown = [f for f in spec.stage.reads if f not in _FIELD_DIGESTS]
        if unknown:
            raise ConfigError(f"stage {spec.name} reads unknown item fields {unknown}")
        head = canonical([spec.name, spec.stage.version, spec.key_config, spec.stage.identity(), dataset])
        ups = list(spec.upstream.items())
        keys[spec.label] = [
            digest_text(canonical([head, item.id,
                               [digests.field(item, f) for f in spec.stage.reads],
                               [(role, keys[up.label][i]) for role, up in ups]]))
            for i, item in enumerate(items)]
    return keys
