"""Options from the command line and from files, parsed once for both CLIs.

    --set fbank.n_mels=40        (pipeline: STAGE.KEY=VALUE)
    --set epochs=5               (heads: KEY=VALUE)
    --config FILE.toml

A value is read as TOML (`40`, `true`, `[1, 2]`, `"text"`); a bare word that
is not TOML is taken as a string, so `--set bert.model=/models/bert` works
without quotes.
"""
from __future__ import annotations

import tomllib
from pathlib import Path

from .stage import ConfigError


def parse_value(raw: str):
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def parse_pairs(pairs, form="KEY=VALUE") -> dict:
    """`KEY=VALUE` pairs -> {key: value}."""
    out = {}
    for pair in pairs or ():
        key, eq, raw = pair.partition("=")
        if not eq or not key.strip() or (form == "STAGE.KEY=VALUE" and not _dotted(key)):
            raise ConfigError(f"--set {pair!r}: expected {form}")
        out[key.strip()] = parse_value(raw)
    return out


def _dotted(key):
    label, dot, name = key.strip().partition(".")
    return bool(label and dot and name)


def parse_set(pairs) -> dict:
    """`STAGE.KEY=VALUE` pairs -> {stage label: {key: value}}."""
    out = {}
    for target, value in parse_pairs(pairs, "STAGE.KEY=VALUE").items():
        label, _, key = target.partition(".")
        out.setdefault(label, {})[key] = value
    return out


def read_config_file(path) -> dict:
    """A `--config` TOML file as a dict; a missing or invalid file is a ConfigError."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"--config {path}: {e.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"--config {path}: not valid TOML: {e}") from None


def stage_options(config_file=None, pairs=()) -> tuple:
    """(stage list or None, {stage label: options}) from `--config` and `--set`,
    `--set` winning over the file."""
    file_cfg = read_config_file(config_file) if config_file else {}
    overrides = {k: dict(v) for k, v in file_cfg.items() if isinstance(v, dict)}
    for label, values in parse_set(pairs).items():
        overrides.setdefault(label, {}).update(values)
    return file_cfg.get("stages"), overrides


def head_options(config_file=None, pairs=()) -> dict:
    """Flat head options from `--config` and `--set`, `--set` winning."""
    overrides = read_config_file(config_file) if config_file else {}
    overrides.update(parse_pairs(pairs))
    return overrides


def add_manifests_option(subparsers):
    """`--manifests DIR` (repeatable) on every subcommand of a CLI."""
    for parser in subparsers.choices.values():
        parser.add_argument("--manifests", action="append", default=[], metavar="DIR",
                            help="a folder of your own manifests (named configurations, stage lists, "
                                 "label sets), read after the packaged ones and $EMOCACHE_MANIFESTS")
