"""The manifests: data files (TOML) that name stage configurations, head
stage lists, label sets and paper tables.

The packaged ones are the package `manifests` (the repo's top-level
`manifests/` folder, shipped in the wheel), read through importlib.resources.
A user's own are read after them from `--manifests DIR` and from
`$EMOCACHE_MANIFESTS` (a path list, `:`-separated). A user file may declare

    [stage.<stage>.<name>]       a named configuration `<stage>@<name>`
    extract = ["fbank@mine"]     the stage list `--for <file stem>` extracts
    [labelsets.<corpus>.sets.<name>]   a label set, as in labelsets.toml

A user file or entry whose name is already taken (by a packaged one or
another user file) is an error, never a silent shadow.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
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
    for cached in (manifest_files, named_configs, head_stage_lists):
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


@lru_cache(maxsize=None)
def head_stage_lists() -> dict:
    """file stem -> list of stage specs it needs (`extract = [...]`)."""
    return {f.name[:-len(".toml")]: list(f.data["extract"]) for f in manifest_files() if "extract" in f.data}


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


def head_labels(heads, preset=None) -> list:
    """The stage specs `--for HEAD` extracts, for each head (a `--preset`
    other than paper reads `manifests/<head>_<preset>.toml` when it exists)."""
    lists = head_stage_lists()
    out = []
    for head in heads:
        name = f"{head}_{preset}" if preset and preset != "paper" and f"{head}_{preset}" in lists else head
        if name not in lists:
            raise ConfigError(f"--for {head}: no stage list for that head "
                              f"(known: {', '.join(sorted(lists)) or 'none'})")
        out += [label for label in lists[name] if label not in out]
    return out
