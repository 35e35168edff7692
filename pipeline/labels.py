"""Label sets: named maps from a corpus's label codes to training classes.

The maps are data (`manifests/labelsets.toml`), so adding a protocol's label
set never touches code. `apply(item, "4class")` gives the item's class in that
set, or None when the set drops the item's code.
"""
from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path

from .registry import UnknownName

LABELSETS_FILE = Path(__file__).resolve().parent.parent / "manifests" / "labelsets.toml"


@lru_cache(maxsize=None)
def _sets() -> dict:
    """corpus -> (label key, {set name: (classes tuple, {code: class})})."""
    with open(LABELSETS_FILE, "rb") as f:
        data = tomllib.load(f)
    return {corpus: _parse_corpus(corpus, entry) for corpus, entry in data.items()}


def _parse_corpus(corpus, entry):
    key = entry.get("label")
    if not isinstance(key, str):
        raise ValueError(f"{LABELSETS_FILE}: [{corpus}] needs a `label` entry naming the Item label")
    sets = {name: _parse_set(corpus, name, spec) for name, spec in entry.get("sets", {}).items()}
    return key, sets


def _parse_set(corpus, name, spec):
    classes = tuple(spec["classes"])
    mapping = dict(spec.get("map") or {c: c for c in classes})
    strays = sorted(set(mapping.values()) - set(classes))
    if strays:
        raise ValueError(f"{LABELSETS_FILE}: [{corpus}.sets.{name}] maps to {strays}, "
                         f"which are not among its classes {list(classes)}")
    return classes, mapping


def corpora() -> list:
    """Corpora that have label sets."""
    return sorted(_sets())


def set_names(corpus) -> list:
    return sorted(_corpus(corpus)[1])


def label_key(corpus) -> str:
    """The entry of Item.labels that this corpus's label sets read."""
    return _corpus(corpus)[0]


def label_set(corpus, name) -> dict:
    """code -> class for one label set (a copy: callers may change it)."""
    return dict(_set(corpus, name)[1])


def classes(corpus, name) -> list:
    """The set's classes in their fixed order (class index = position)."""
    return list(_set(corpus, name)[0])


def apply(item, name):
    """The item's class in label set `name`, or None when the set drops it."""
    key = label_key(item.corpus)
    return _set(item.corpus, name)[1].get(item.labels.get(key))


def _corpus(corpus):
    try:
        return _sets()[corpus]
    except KeyError:
        known = ", ".join(corpora()) or "none"
        raise UnknownName(f"no label sets for corpus {corpus!r} (corpora with label sets: {known})") from None


def _set(corpus, name):
    sets = _corpus(corpus)[1]
    try:
        return sets[name]
    except KeyError:
        known = ", ".join(sorted(sets))
        raise UnknownName(f"unknown label set {name!r} for {corpus} (known: {known})") from None
