"""Label sets: named maps from a corpus's label codes to training targets.

The maps are data (`manifests/labelsets.toml`), so adding a protocol's label
set never touches code. `apply(item, "4class")` gives the item's class in that
set, or None when the set drops the item's code.

A set has a kind (`KINDS`): `classes` maps codes to classes (the default);
the others read a numeric score (e.g. CMU-MOSEI's sentiment in [-3, 3]):
`regression` keeps the number itself as the target, `rounded` clips it to a
range and rounds it to an integer class ("-3" .. "3"), `threshold` splits it
into two classes at a value. `distinct` (a user's table) has no fixed list:
its classes are the sorted distinct label values of the items at hand.
`kind(corpus, name)` says whether training on the set is a classification
or a regression.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .registry import UnknownName
from .stage import ConfigError

LABELSETS_FILE = "labelsets.toml"


@dataclass(frozen=True)
class LabelSet:
    kind: str                       # a key of KINDS
    classes: tuple                  # class names in index order (empty for a regression)
    key: str                        # the entry of Item.labels the set reads
    rule: object                    # label value -> class name, number, or None (dropped)
    mapping: dict = field(default_factory=dict)    # kind "classes": code -> class
    range: tuple = ()               # kinds "regression" and "rounded": (lo, hi)


@lru_cache(maxsize=None)
def _sets() -> dict:
    """corpus -> (label key, {set name: LabelSet}): the packaged sets, then
    those of user manifests (a name already taken is an error)."""
    from .presets import packaged, user_labelsets
    out = {corpus: _parse_corpus(corpus, entry) for corpus, entry in packaged(LABELSETS_FILE).items()}
    for corpus, name, spec, where in user_labelsets():
        key, sets = out.setdefault(corpus, (spec.get("label", "label"), {}))
        if name in sets:
            raise ValueError(f"{where}: label set {corpus}/{name} is already declared")
        sets[name] = _parse_set(corpus, name, spec, key)
    return out


def _parse_corpus(corpus, entry):
    key = entry.get("label")
    if not isinstance(key, str):
        raise ValueError(f"{LABELSETS_FILE}: [{corpus}] needs a `label` entry naming the Item label")
    sets = {name: _parse_set(corpus, name, spec, key) for name, spec in entry.get("sets", {}).items()}
    return key, sets


def _parse_set(corpus, name, spec, default_key):
    where = f"{LABELSETS_FILE}: [{corpus}.sets.{name}]"
    kind = spec.get("kind", "classes")
    if kind not in KINDS:
        raise ValueError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
    return KINDS[kind](where, spec, spec.get("label", default_key))


def _classes_set(where, spec, key):
    classes = tuple(spec["classes"])
    mapping = dict(spec.get("map") or {c: c for c in classes})
    strays = sorted(set(mapping.values()) - set(classes))
    if strays:
        raise ValueError(f"{where} maps to {strays}, which are not among its classes {list(classes)}")
    return LabelSet("classes", classes, key, mapping.get, mapping)


def _range(where, spec):
    lo, hi = spec.get("range") or (None, None)
    if not (isinstance(lo, int) and isinstance(hi, int) and lo < hi):
        raise ValueError(f"{where} needs `range = [lo, hi]`, two integers with lo < hi")
    return lo, hi


def _regression_set(where, spec, key):
    return LabelSet("regression", (), key, number, range=_range(where, spec))


def _rounded_set(where, spec, key):
    lo, hi = _range(where, spec)

    def rule(value):
        x = number(value)
        return None if x is None else str(int(round_clip(x, lo, hi)))
    return LabelSet("rounded", tuple(str(k) for k in range(lo, hi + 1)), key, rule, range=(lo, hi))


def _threshold_set(where, spec, key):
    classes = tuple(spec.get("classes", ()))
    at, equal = spec.get("threshold", 0.0), spec.get("equal", "high")
    if len(classes) != 2 or equal not in ("high", "drop"):
        raise ValueError(f"{where} needs two `classes` (below, above) and `equal` = \"high\" or \"drop\"")

    def rule(value):
        x = number(value)
        if x is None or (x == at and equal == "drop"):
            return None
        return classes[int(x >= at)]
    return LabelSet("threshold", classes, key, rule)


def _distinct_set(where, spec, key):
    return LabelSet("distinct", (), key, _label_text)


def _label_text(value):
    """A label value as its class name; an empty cell is no label."""
    return None if value is None or str(value).strip() == "" else str(value).strip()


KINDS = {"classes": _classes_set, "regression": _regression_set, "rounded": _rounded_set,
         "threshold": _threshold_set, "distinct": _distinct_set}


def number(value):
    """A label value as a finite float (numbers, or numeric strings from a
    table), else None."""
    if isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def round_clip(values, lo, hi):
    """Scores clipped to [lo, hi] and rounded to the nearest integer, halves
    to even (numpy's rounding, which the usual CMU-MOSEI ACC-7 code uses)."""
    return np.round(np.clip(np.asarray(values, dtype=np.float64), lo, hi)).astype(np.int64)


def corpora() -> list:
    """Corpora that have label sets."""
    return sorted(_sets())


def set_names(corpus) -> list:
    return sorted(_corpus(corpus)[1])


def label_key(corpus, name=None) -> str:
    """The entry of Item.labels that set `name` reads (without a name: the
    corpus's default, which every set reads unless it names another)."""
    return _corpus(corpus)[0] if name is None else _set(corpus, name).key


def label_set(corpus, name) -> dict:
    """code -> class for one label set of kind `classes` (a copy: callers may change it)."""
    s = _set(corpus, name)
    if s.kind != "classes":
        raise ValueError(f"label set {name!r} of {corpus} is of kind {s.kind}, not a map of codes")
    return dict(s.mapping)


def classes(corpus, name, items=None) -> list:
    """The set's classes in their fixed order (class index = position);
    empty for a regression set. A `distinct` set takes them from `items`."""
    s = _set(corpus, name)
    if s.kind != "distinct":
        return list(s.classes)
    if items is None:
        raise ConfigError(f"label set {name!r} of {corpus} takes its classes from the items; pass them")
    found = sorted({c for c in (s.rule(it.labels.get(s.key)) for it in items) if c is not None})
    if not found:
        raise ConfigError(f"label set {name!r} of {corpus}: no item has a `{s.key}` value")
    return found


def kind(corpus, name) -> str:
    """"regression" for a set whose target is a number, else "classification"."""
    return "regression" if _set(corpus, name).kind == "regression" else "classification"


def value_range(corpus, name) -> tuple:
    """(lo, hi) of a regression or rounded set's scores."""
    return _set(corpus, name).range


def apply(item, name):
    """The item's class (or, for a regression set, its number) in label set
    `name`, or None when the set drops it."""
    s = _set(item.corpus, name)
    return s.rule(item.labels.get(s.key))


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
