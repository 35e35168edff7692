"""What a head reads, seen from the cache: the inputs a preset requires,
whether the cache holds them for every item (`check_cache`), and the other configurations of a stage the cache holds when the one a run
resolved is not there (with the flags that select each)."""
from __future__ import annotations

import json
import shlex

from pipeline.stage import ConfigError


class StagesMissing(Exception):
    """The cache lacks (up-to-date) outputs the head needs."""


def check_inputs(cls, preset, config, stages):
    """Exit 2 before any work when a model the run reads is not on this machine,
    or the preset requires an option the stages lack (a paper preset's GloVe file)."""
    from pipeline.graph import resolve
    from pipeline.presets import check_preset_inputs
    check_preset_inputs(preset, resolve(cls.stages(config), stages))


def preset_dev(cls, preset) -> str:
    """The dev part `heads train` uses without --dev: the preset's `dev`, or
    none (fixed epochs); a value no protocol knows is a ConfigError."""
    from pipeline.presets import find_preset
    from .protocols import DEV_CHOICES
    table = find_preset(cls.name, preset)
    if table.dev and table.dev not in DEV_CHOICES:
        raise ConfigError(f"{table.label}: dev = {table.dev!r} is none of {', '.join(DEV_CHOICES)}")
    return table.dev or "none"


def extract_command(cache, dataset, cls, needed, stages, preset=None) -> str:
    """The `pipeline extract` command that extracts the configurations `needed`
    as the run resolved them (the overrides of the stages it reads as --set):
    `--for HEAD --preset P` when the preset's list holds them all."""
    from pipeline.graph import resolve
    from pipeline.presets import find_preset
    from .cli import _toml_value
    preset = preset or "paper"
    selection = (f"--for {cls.name}" + (f" --preset {preset}" if preset != "paper" else "")
                 if set(needed) <= set(find_preset(cls.name, preset).extract) else f"--stages {','.join(needed)}")
    read = {x for s in resolve(needed, stages) for x in (s.label, s.name)}
    sets = "".join(f" --set {shlex.quote(f'{label}.{k}={_toml_value(v)}')}"
                   for label, opts in (stages or {}).items() if label in read for k, v in opts.items())
    return f"pipeline extract --cache {cache.dir} --dataset {dataset} {selection}{sets}"


def other_configurations(cache, labels, stages) -> str:
    """For the error of a run whose `labels` are missing: the other
    configurations of their stages in the cache, with the flags that select each."""
    lines = [line for label in labels for line in _others(cache, label, stages)]
    head = "\nother configurations in the cache (select one with these flags on heads train):"
    return head + "".join(f"\n  {line}" for line in lines) if lines else ""


def _others(cache, label, stages) -> list:
    """One line per other configuration of `label`'s stage that has outputs in
    the cache: its label and the `--set` flags (on pipeline extract and heads
    train alike) that select it instead of the one resolved now."""
    from .cli import _toml_value as toml_value
    spec = cache.spec(label, stages)
    mine = json.loads(spec.config_json)
    rows = cache.index.db.execute(
        "SELECT config_id, label, config FROM configs WHERE stage = ? AND config_id IN "
        "(SELECT DISTINCT config_id FROM entries)", (spec.name,)).fetchall()
    lines = []
    for config_id, other, description in sorted(rows, key=lambda r: r[1]):
        theirs = json.loads(description)["config"]
        flags = [f"--set {shlex.quote(f'{spec.name}.{k}={toml_value(v)}')}" for k, v in theirs.items()
                 if k not in spec.stage.runtime_options and mine.get(k) != v]
        if config_id != spec.config_id and flags:
            lines.append(f"{other}: {' '.join(flags)}")
    return lines


def check_cache(cache, dataset, cls, config, allow_missing=False, stages=None, preset=None) -> dict:
    """Raise StagesMissing with the exact extract command (for the run's
    `preset`) when any stage the head reads (with the stage overrides
    `stages`) is missing or stale for some item of its label set; with
    `allow_missing`, return those items instead (id -> why)."""
    needed = cls.stages(config)
    statuses = {label: cache.status(label, dataset, stages) for label in needed}
    wanted = {it.id for it in cache.items(dataset) if in_labelset(it, config.labelset)}
    lacking, problems = missing_features(statuses, wanted)
    if not problems or allow_missing:
        return lacking
    command = extract_command(cache, dataset, cls, needed, stages, preset)
    found = other_configurations(cache, [label for label in needed if statuses[label]["missing"]], stages)
    raise StagesMissing(f"the cache lacks features {cls.name} needs for {len(lacking)} item(s) of label set "
                        f"{config.labelset} ({'; '.join(problems)}).{found}\n"
                        f"run:\n  {command}\n(or train without them: heads train ... --allow-missing)")


# Why an item lacks a stage output, by its state in `Cache.status`. An infrastructure
# fault (out of memory, a lost worker) records nothing, so its items read as never extracted.
LACKING = {"missing": "missing (never extracted, or stopped by an infrastructure fault)",
           "stale": "stale (extracted from inputs that have changed since)"}


def missing_features(statuses, wanted) -> tuple:
    """({item id: why}, one line per stage and reason) for the `wanted` items
    that lack an output, from per-stage statuses (label -> Cache.status).
    Items whose extraction failed (a recorded bad input) are not lacking:
    the data drops and lists them."""
    lacking, problems = {}, []
    for label, status in statuses.items():
        for state, why in LACKING.items():
            ids = [i for i in status[state] if i in wanted]
            lacking.update({i: f"{label}: {why}" for i in ids if i not in lacking})
            if ids:
                problems.append(f"{label}: {len(ids)} item(s) {why}")
    return lacking, problems


def in_labelset(item, labelset) -> bool:
    """Whether the label set keeps the item (per-frame labels: always; the head picks frames)."""
    from pipeline import labels
    if isinstance(item.labels.get(labels.label_key(item.corpus, labelset)), (list, tuple)):
        return True
    return labels.apply(item, labelset) is not None
