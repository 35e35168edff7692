"""Evaluation protocols: how a corpus is cut into train / dev / test folds.

One place for every head. A protocol maps the items (pipeline Items) to a
list of Folds; `--dev` optionally carves a dev part out of the training side
so a model can be selected without ever looking at the test fold. Without a
dev part, training runs a fixed number of epochs and the last model is used.

Every fold is checked for leakage before training (`check_leakage`): no item
in two parts, and for group protocols no session/speaker on two sides. A
leaky fold raises LeakageError; the report of the check is kept with the
results.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from pipeline.registry import Registry

PROTOCOLS = Registry("protocol")
DEV_CHOICES = ("none", "next-session", "next-speaker", "next-fold", "session-share")
# --dev session-share: this share of the training sessions (Aff-Wild2: videos),
# whole, as the dev part; at least two when there are four or more. A fifth,
# as EMMA-Net's five-fold partition of the training videos (papers/004 §4.1).
DEV_SHARE = 0.2


class ProtocolError(ValueError):
    """A protocol that cannot be applied to these items or options."""


class LeakageError(RuntimeError):
    """A fold whose parts share items, sessions or speakers."""


@dataclass
class Fold:
    name: str
    train: list
    test: list
    dev: list = field(default_factory=list)
    group: str = ""                 # "session" / "speaker": the attribute kept apart
    unit: str = ""                  # an Item attribute or `extra` key (e.g. "dialog") no two parts share


@dataclass(frozen=True)
class Options:
    dev: str = "none"
    k: int = 10                     # random k-fold: number of folds
    ratios: tuple = (3, 1, 1)       # ratio protocol: train:dev:test parts
    seed: int = 0                   # shuffling of the random protocols


def make_folds(name, items, options=Options()) -> tuple:
    """(folds, leakage reports) of `items` for protocol `name`; raises
    LeakageError when any fold leaks."""
    if options.dev not in DEV_CHOICES:
        raise ProtocolError(f"--dev {options.dev!r}: must be one of {', '.join(DEV_CHOICES)}")
    folds = PROTOCOLS.get_or_fail(name)(list(items), options)
    if not folds:
        raise ProtocolError(f"protocol {name}: no folds for these items")
    return folds, assert_no_leakage(folds, items)


def assert_no_leakage(folds, items) -> list:
    """Leakage reports of every fold; raises LeakageError naming the first leaky one."""
    by_id = {it.id: it for it in items}
    reports = [check_leakage(fold, by_id) for fold in folds]
    for report in reports:
        if not report["ok"]:
            raise LeakageError(f"fold {report['fold']} leaks: {'; '.join(report['problems'])}")
    return reports


def _groups(items, attr):
    """attribute value -> item ids, in sorted order of the values."""
    out = {}
    for it in items:
        value = getattr(it, attr)
        if value is None:
            raise ProtocolError(f"item {it.id} has no {attr}: a leave-one-{attr}-out protocol needs one")
        out.setdefault(value, []).append(it.id)
    return dict(sorted(out.items()))


def _leave_one_group_out(items, options, attr):
    groups = _groups(items, attr)
    if len(groups) < 2:
        raise ProtocolError(f"leave-one-{attr}-out needs at least 2 {attr}s, found {len(groups)}")
    folds = []
    for value, test in groups.items():
        test_set = set(test)
        rest = [it for it in items if it.id not in test_set]
        train, dev = _split_dev(items, rest, test_set, value, attr, options)
        folds.append(Fold(f"{attr}={value}", train, test, dev, attr))
    return folds


@PROTOCOLS.register("session")
def leave_one_session_out(items, options):
    """One fold per session: that session is the test part (IEMOCAP: 5 folds)."""
    return _leave_one_group_out(items, options, "session")


@PROTOCOLS.register("speaker")
def leave_one_speaker_out(items, options):
    """One fold per speaker: that speaker is the test part (IEMOCAP: 10 folds)."""
    return _leave_one_group_out(items, options, "speaker")


def _split_dev(items, rest, test_set, test_value, attr, options):
    """(train ids, dev ids) from the non-test items, per --dev."""
    if options.dev == "none":
        return [it.id for it in rest], []
    if options.dev == "next-fold":
        raise ProtocolError("--dev next-fold is for the kfold protocol; use next-session or next-speaker")
    if options.dev == "session-share":
        held = share_of_sessions(rest, options.seed)
        return [it.id for it in rest if it.session not in held], [it.id for it in rest if it.session in held]
    dev_attr = options.dev.removeprefix("next-")
    dev_value = _next_group(items, rest, test_set, test_value if dev_attr == attr else None, dev_attr)
    train = [it.id for it in rest if getattr(it, dev_attr) != dev_value]
    dev = [it.id for it in rest if getattr(it, dev_attr) == dev_value]
    return train, dev


def _next_group(items, rest, test_set, test_value, attr):
    """The group (session/speaker) after the test one, cyclically, that has
    no test items; with no test group of that kind, the one after the
    first test item's group."""
    values = list(_groups(items, attr))
    if test_value is None:
        first_test = next(it for it in items if it.id in test_set)
        test_value = getattr(first_test, attr)
    start = values.index(test_value)
    candidates = {getattr(it, attr) for it in rest}
    clean = {v for v in candidates if not any(getattr(it, attr) == v and it.id in test_set for it in items)}
    for step in range(1, len(values) + 1):
        value = values[(start + step) % len(values)]
        if value in clean:
            return value
    raise ProtocolError(f"no {attr} is left for a dev part")


def share_of_sessions(items, seed) -> set:
    """DEV_SHARE of the items' sessions, drawn with `seed`: at least one,
    at least two when there are four or more, never all of them."""
    sessions = sorted(_groups(items, "session"))
    if len(sessions) < 2:
        raise ProtocolError(f"--dev session-share needs at least 2 training sessions, found {len(sessions)}")
    n = max(round(DEV_SHARE * len(sessions)), 2 if len(sessions) >= 4 else 1)
    return set(random.Random(seed).sample(sessions, n))


def _shuffled_parts(items, n_parts, seed):
    ids = sorted(it.id for it in items)
    random.Random(seed).shuffle(ids)
    return [ids[i::n_parts] for i in range(n_parts)]


@PROTOCOLS.register("kfold")
def random_kfold(items, options):
    """Random k folds over items (speaker and session dependent); a fixed
    seed gives the same folds. --dev next-fold takes the next part as dev."""
    if options.k < 2 or options.k > len(items):
        raise ProtocolError(f"--folds {options.k}: must be between 2 and the number of items ({len(items)})")
    if options.dev not in ("none", "next-fold"):
        raise ProtocolError(f"--dev {options.dev}: the kfold protocol supports none or next-fold")
    parts = _shuffled_parts(items, options.k, options.seed)
    folds = []
    for i, test in enumerate(parts):
        dev = parts[(i + 1) % len(parts)] if options.dev == "next-fold" else []
        train = [x for j, p in enumerate(parts) if j != i and p is not dev for x in p]
        folds.append(Fold(f"fold={i + 1}", train, test, dev))
    return folds


@PROTOCOLS.register("ratio")
def ratio_folds(items, options):
    """train:dev:test ratios (e.g. 3:1:1): items are shuffled into
    sum(ratios) parts; fold i tests on part i, takes the next parts as dev
    and the rest as train, so every part is tested once."""
    r_train, r_dev, r_test = options.ratios
    if min(options.ratios) < 0 or r_train < 1 or r_test < 1:
        raise ProtocolError(f"--ratios {':'.join(map(str, options.ratios))}: train and test need >= 1 part")
    if options.dev != "none":
        raise ProtocolError("the ratio protocol has its own dev part; leave --dev unset")
    n = r_train + r_dev + r_test
    parts = _shuffled_parts(items, n, options.seed)
    folds = []
    for i in range(0, n, r_test):
        order = [(i + j) % n for j in range(n)]
        test = [x for j in order[:r_test] for x in parts[j]]
        dev = [x for j in order[r_test:r_test + r_dev] for x in parts[j]]
        train = [x for j in order[r_test + r_dev:] for x in parts[j]]
        folds.append(Fold(f"fold={len(folds) + 1}", train, test, dev))
    return folds


@PROTOCOLS.register("holdout")
def holdout_split(items, options):
    """One random train / dev / test split in the proportions of --ratios
    (HarmoFusion's 6-class setting: 7:1:2, i.e. 70/10/20); a fixed seed
    gives the same split."""
    r_train, r_dev, r_test = options.ratios
    if min(options.ratios) < 0 or r_train < 1 or r_test < 1:
        raise ProtocolError(f"--ratios {':'.join(map(str, options.ratios))}: train and test need a share >= 1")
    if options.dev != "none":
        raise ProtocolError("the holdout protocol has its own dev part; leave --dev unset")
    ids = sorted(it.id for it in items)
    random.Random(options.seed).shuffle(ids)
    total = r_train + r_dev + r_test
    n_test = round(len(ids) * r_test / total)
    n_dev = round(len(ids) * r_dev / total)
    if n_test < 1 or len(ids) - n_test - n_dev < 1:
        raise ProtocolError(f"holdout: {len(ids)} items are too few for --ratios "
                            f"{':'.join(map(str, options.ratios))}")
    test, dev, train = ids[:n_test], ids[n_test:n_test + n_dev], ids[n_test + n_dev:]
    return [Fold("holdout", train, test, dev)]


_SPLIT_NAMES = {"train": "train", "training": "train", "dev": "dev", "val": "dev", "valid": "dev",
                "validation": "dev", "test": "test"}


HFF_DEV_SHARE = 0.1


@PROTOCOLS.register("hff")
def last_session_dialog_dev(items, options):
    """HFF's IEMOCAP split (DialogueGCN's and COGMEN's): the last session is
    the test part; the other sessions train, with a tenth of their dialogues
    (at least one, drawn with --seed) held out whole as the dev part."""
    if options.dev != "none":
        raise ProtocolError("the hff protocol has its own dev part (a tenth of the training "
                            "dialogues); leave --dev unset")
    sessions = _groups(items, "session")
    if len(sessions) < 2:
        raise ProtocolError(f"the hff protocol needs at least 2 sessions, found {len(sessions)}")
    test_session, test = list(sessions.items())[-1]
    rest = [it for it in items if it.session != test_session]
    dialogs = sorted({_unit_of(it, "dialog") for it in rest})
    if len(dialogs) < 2:
        raise ProtocolError(f"the hff protocol needs at least 2 training dialogues, found {len(dialogs)}")
    held = set(random.Random(options.seed).sample(dialogs, max(1, round(HFF_DEV_SHARE * len(dialogs)))))
    train = [it.id for it in rest if _unit_of(it, "dialog") not in held]
    dev = [it.id for it in rest if _unit_of(it, "dialog") in held]
    return [Fold(f"session={test_session}", train, test, dev, "session", unit="dialog")]


def _unit_of(item, unit):
    """The item's attribute `unit`, or its `extra[unit]` (e.g. IEMOCAP's dialog)."""
    value = getattr(item, unit) if hasattr(item, unit) else item.extra.get(unit)
    if value is None:
        raise ProtocolError(f"item {item.id} has no {unit} (an Item field or extra[{unit!r}])")
    return value


@PROTOCOLS.register("official")
def official_split(items, options):
    """The corpus's own train / dev / test tags (Item.split).

    A corpus that withholds its test labels and publishes train and
    validation parts only (Aff-Wild2's ABAW release) is scored on its
    validation part, as its papers report: that part is then the test part,
    so nothing is chosen on it; --dev next-session / next-speaker carves a
    dev part out of the training items instead (whole sessions or speakers).
    """
    parts = {"train": [], "dev": [], "test": []}
    untagged = []
    for it in items:
        part = _SPLIT_NAMES.get((it.split or "").lower())
        (parts[part] if part else untagged).append(it.id)
    if not parts["test"] and parts["dev"]:
        parts["test"], parts["dev"] = parts["dev"], []
    if not parts["test"] or not parts["train"]:
        raise ProtocolError("the official protocol needs items tagged train and test (or validation) "
                            f"({len(untagged)} item(s) carry no known split tag)")
    if options.dev != "none":
        if parts["dev"]:
            raise ProtocolError("the corpus tags its own dev part; leave --dev unset")
        train_ids = set(parts["train"])
        rest = [it for it in items if it.id in train_ids]
        parts["train"], parts["dev"] = _split_dev(items, rest, set(parts["test"]), None, "", options)
    return [Fold("official", parts["train"], parts["test"], parts["dev"])]


def default_protocol(items) -> str:
    """The protocol when none is named: the corpus's own split when every
    item carries a split tag, else leave-one-session-out when every item has
    a session, else random k-fold (a user's table without those columns)."""
    items = list(items)
    if items and all(_SPLIT_NAMES.get((it.split or "").lower()) for it in items):
        return "official"
    if items and all(it.session is not None for it in items):
        return "session"
    return "kfold"


def check_leakage(fold: Fold, by_id: dict) -> dict:
    """{'fold', 'ok', 'checks': [...], 'problems': [...]} for one fold."""
    parts = {"train": fold.train, "dev": fold.dev, "test": fold.test}
    problems, checks = [], []
    for name, ids in parts.items():
        if len(set(ids)) != len(ids):
            problems.append(f"{name} lists an item twice")
    for a, b in (("train", "test"), ("dev", "test"), ("train", "dev")):
        shared = set(parts[a]) & set(parts[b])
        checks.append(f"items {a}/{b} disjoint")
        if shared:
            problems.append(f"{len(shared)} item(s) in both {a} and {b} (e.g. {sorted(shared)[0]})")
    if fold.group:
        attr = fold.group
        test_values = {getattr(by_id[i], attr) for i in fold.test}
        for side in ("train", "dev"):
            shared = {getattr(by_id[i], attr) for i in parts[side]} & test_values
            checks.append(f"{attr}s {side}/test disjoint")
            if shared:
                problems.append(f"{attr} {sorted(shared)[0]} is in both {side} and test")
    if fold.unit:
        values = {name: {_unit_of(by_id[i], fold.unit) for i in ids} for name, ids in parts.items()}
        for a, b in (("train", "test"), ("dev", "test"), ("train", "dev")):
            checks.append(f"{fold.unit}s {a}/{b} disjoint")
            shared = values[a] & values[b]
            if shared:
                problems.append(f"{fold.unit} {sorted(shared)[0]} is in both {a} and {b}")
    if not fold.test:
        problems.append("the test part is empty")
    return {"fold": fold.name, "ok": not problems, "checks": checks, "problems": problems,
            "sizes": {k: len(v) for k, v in parts.items()}}
