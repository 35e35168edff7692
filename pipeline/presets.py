"""The manifests: data files (TOML) that name stage configurations, head
presets, label sets and paper tables.

The packaged ones are the package `manifests` (the repo's top-level
`manifests/` folder, shipped in the wheel), read through importlib.resources.
A user's own are read after them from `--manifests DIR` and from
`$EMOCACHE_MANIFESTS` (a path list, `:`-separated). A user file may declare

    [stage.<stage>.<name>]       a named configuration `<stage>@<name>`
    [preset.<head>.<name>]       a head preset: `extract` (the stage list
                                 `--for <head> --preset <name>` extracts), an
                                 optional `dev` and `about`, and head options
    [labelsets.<corpus>.sets.<name>]   a label set, as in labelsets.toml

A user file or entry whose name is already taken (by a packaged one or
another user file) is an error, never a silent shadow.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from .stage import ConfigError

_USER_DIRS: list = []


@dataclass(frozen=True)
class ManifestFile:
    name: str           # file name, e.g. "tsin.toml"
    source: str         # "packaged" or the user folder
    data: dict


def use_manifest_dirs(dirs):
    """Add user manifest folders (the `--manifests` option), read after the
    packaged ones and $EMOCACHE_MANIFESTS."""
    dirs = [str(d) for d in dirs or ()]
    if dirs == _USER_DIRS and not _env_changed():
        return
    _USER_DIRS[:] = dirs
    for cached in (manifest_files, named_configs, head_presets):
        cached.cache_clear()
    from . import labels            # label sets merge the user manifests' too
    labels._sets.cache_clear()


_SEEN_ENV = [None]


def _env_changed() -> bool:
    """Whether $EMOCACHE_MANIFESTS differs from what the cached tables were read with."""
    now = os.environ.get("EMOCACHE_MANIFESTS", "")
    changed, _SEEN_ENV[0] = _SEEN_ENV[0] != now, now
    return changed


def user_dirs() -> list:
    from_env = [d for d in os.environ.get("EMOCACHE_MANIFESTS", "").split(os.pathsep) if d]
    return from_env + _USER_DIRS


def packaged(name) -> dict:
    """One packaged manifest file, parsed."""
    return tomllib.loads(resources.files("manifests").joinpath(name).read_text(encoding="utf-8"))


@lru_cache(maxsize=None)
def manifest_files() -> tuple:
    """Every manifest file, packaged first; a clashing user file name is a ConfigError."""
    out = [ManifestFile(p.name, "packaged", tomllib.loads(p.read_text(encoding="utf-8")))
           for p in sorted(resources.files("manifests").iterdir(), key=lambda p: p.name)
           if p.name.endswith(".toml")]
    seen = {f.name: f.source for f in out}
    for folder in user_dirs():
        if not Path(folder).is_dir():
            raise ConfigError(f"manifests folder {folder} does not exist")
        for path in sorted(Path(folder).glob("*.toml")):
            if path.name in seen:
                raise ConfigError(f"user manifest {path} has the name of a {seen[path.name]} one "
                                  f"({path.name}); rename it")
            seen[path.name] = str(folder)
            out.append(ManifestFile(path.name, str(folder), _parse(path)))
    return tuple(out)


def _parse(path):
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"manifest {path}: {e}") from None


@lru_cache(maxsize=None)
def named_configs() -> dict:
    """'stage@name' -> (stage, overrides dict, source file)."""
    out = {}
    for f in manifest_files():
        for stage, table in f.data.get("stage", {}).items():
            for name, overrides in table.items():
                label = f"{stage}@{name}"
                if label in out:
                    raise ConfigError(f"{label} is declared twice ({out[label][2]} and {_where(f)})")
                out[label] = (stage, overrides, _where(f))
    return out


@dataclass(frozen=True)
class Preset:
    """One `[preset.<head>.<name>]` table: what `--for HEAD --preset NAME`
    extracts and the head options it sets (checked by the head's Config)."""
    head: str
    name: str
    extract: tuple                  # stage specs, in the table's order
    where: str                      # the manifest file that declares it
    dev: str = ""                   # `heads train --dev` when not given ("": none)
    about: str = ""                 # one line: why the preset exists
    values: dict = field(default_factory=dict)   # head option -> value

    @property
    def label(self) -> str:
        return f"{self.where} [preset.{self.head}.{self.name}]"


# Keys of a preset table that are not head options.
PRESET_KEYS = ("extract", "dev", "about")


@lru_cache(maxsize=None)
def head_presets() -> dict:
    """head name -> {preset name -> Preset}, across the packaged and user
    manifests; a preset declared twice is a ConfigError naming both files."""
    out = {}
    for f in manifest_files():
        if "extract" in f.data:
            raise ConfigError(f"manifest {_where(f)}: `extract` belongs in a [preset.<head>.<name>] table "
                              "(the stage list of that head's preset)")
        for head, table in f.data.get("preset", {}).items():
            for name, entry in table.items():
                preset = _preset(head, name, entry, _where(f))
                known = out.setdefault(head, {})
                if name in known:
                    raise ConfigError(f"preset {head}.{name} is declared twice "
                                      f"({known[name].where} and {preset.where})")
                known[name] = preset
    return out


def _preset(head, name, entry, where) -> Preset:
    label = f"{where} [preset.{head}.{name}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"{label}: a preset is a table")
    extract = entry.get("extract")
    if not isinstance(extract, list) or not extract or not all(isinstance(s, str) and s for s in extract):
        raise ConfigError(f"{label}: `extract` is required, the list of stage specs "
                          f"`pipeline extract --for {head} --preset {name}` extracts")
    for key in ("dev", "about"):
        if not isinstance(entry.get(key, ""), str):
            raise ConfigError(f"{label}: `{key}` is a string")
    values = {k: v for k, v in entry.items() if k not in PRESET_KEYS}
    return Preset(head, name, tuple(extract), where, entry.get("dev", ""), entry.get("about", ""), values)


def find_preset(head, name=None) -> Preset:
    """Preset `name` (default paper) of `head`; a ConfigError names the known ones."""
    name = name or "paper"
    presets = head_presets().get(head)
    if not presets:
        raise ConfigError(f"head {head}: no presets in the manifests (a [preset.{head}.paper] table with "
                          f"`extract`; heads with presets: {', '.join(sorted(head_presets())) or 'none'})")
    if name not in presets:
        raise ConfigError(f"head {head}: unknown preset {name!r} (known: {', '.join(presets)})")
    return presets[name]


def user_labelsets() -> list:
    """(corpus, set name, table, where) for the label sets user manifests declare."""
    return [(corpus, name, spec, _where(f)) for f in manifest_files() if f.source != "packaged"
            for corpus, entry in f.data.get("labelsets", {}).items()
            for name, spec in entry.get("sets", {}).items()]


def _where(f) -> str:
    return f.name if f.source == "packaged" else str(Path(f.source) / f.name)


def preset_stage_options(preset, overrides=None) -> dict:
    """The stage overrides of head preset `preset` (manifests/presets.toml),
    with the user's `overrides` (label or stage -> options) on top."""
    table = packaged("presets.toml").get(preset or "paper", {})
    out = {stage: dict(opts) for stage, opts in table.get("stages", {}).items()}
    for target, opts in (overrides or {}).items():
        out.setdefault(target, {}).update(opts)
    return out


def check_preset_inputs(preset, specs) -> list:
    """`specs`, or ConfigError (before any work) when a spec lacks an option the
    preset requires (a paper preset that reads GloVe needs the user's file)."""
    required = packaged("presets.toml").get(preset or "paper", {}).get("require", {})
    for spec in specs:
        for dotted, how in required.items():
            stage, _, option = dotted.partition(".")
            if spec.name == stage and getattr(spec.stage.config, option, None) in (None, ""):
                raise ConfigError(f"preset {preset or 'paper'}: {spec.label} needs {option} "
                                  f"(nothing is substituted in a paper preset): {how}")
    return specs


def head_labels(heads: str, preset=None) -> list:
    """The stage specs `--for HEAD[,HEAD...] --preset P` extracts: each head's
    preset's `extract`, in order, without repeats."""
    out = []
    for head in (h.strip() for h in heads.split(",") if h.strip()):
        out += [label for label in find_preset(_head_name(head), preset).extract if label not in out]
    return out


def _head_name(name) -> str:
    """The head an alias stands for (`bert_only` is `bert_mlp`): presets are
    declared under the registered name only."""
    if name in head_presets():
        return name
    from heads.models import load_all
    return load_all().aliases.get(name, name)
