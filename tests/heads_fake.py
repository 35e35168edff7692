"""A small cache written directly (no audio): labelled IEMOCAP-like items
whose stage outputs are synthetic arrays that carry the class, for fast tests
of the heads' data, protocols and CLI."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.graph import InputDigests, item_keys, resolve
from pipeline.manifest import Item, Media
from pipeline.plan import record_dataset
from pipeline.stage import Result, Seq, Vec
from pipeline.digests import FileDigests
from pipeline.shard import write_shard
from pipeline.store import Index

CODES = ("ang", "hap", "sad", "neu", "exc", "fru")


def fake_items(sessions=5, per_speaker=6, root="/nonexistent"):
    items = []
    for s in range(1, sessions + 1):
        for g in "FM":
            for i in range(per_speaker):
                code = CODES[(i + s) % len(CODES)]
                iid = f"Ses0{s}{g}_impro01_{g}{i:03d}"
                items.append(Item(id=iid, corpus="iemocap", audio=Media(f"{root}/{iid}.wav"),
                                  text=f"utterance {i}", speaker=f"{s}{g}", session=str(s),
                                  labels={"emotion": code}))
    return items


def class_signal(item, rng, length, width, strength=2.0):
    """Noise plus a class-dependent offset on one column (learnable)."""
    x = rng.normal(size=(length, width)).astype(np.float32)
    x[:, CODES.index(item.labels["emotion"]) % width] += strength
    return x


def write_fake_cache(cache_dir, items, arrays, dataset="iemocap", per_shard=16, seed=0, fail=(),
                     signal=class_signal, result=None, overrides=None):
    """arrays: {stage label: {array name: ("seq"|"vec", width)}}; items in `fail` get an error;
    `signal(item, rng, length, width)` makes each array (default: the class offset);
    `result(item, arrays of the stage, rng, signal)` the whole Result, where
    a test needs more than that (step times, several related arrays); `overrides`: stage
    options, as `--set STAGE.KEY=VALUE` gives them."""
    cache_dir = Path(cache_dir)
    index = Index(cache_dir)
    record_dataset(index, cache_dir, dataset, "/nonexistent", {}, items)
    specs = resolve(list(arrays), overrides)
    keys = item_keys(specs, items, InputDigests(FileDigests(index)), dataset)
    rng = np.random.default_rng(seed)
    for spec in specs:
        if spec.label not in arrays:
            continue
        index.record_config(spec)
        info = {"stage": spec.name, "label": spec.label, "version": spec.stage.version,
                "config_id": spec.config_id, "config": spec.describe()["config"]}
        for start in range(0, len(items), per_shard):
            chunk = list(zip(keys[spec.label], items))[start:start + per_shard]
            ok = [(k, it) for k, it in chunk if it.id not in fail]
            errors = [(k, it.id, "synthetic failure") for k, it in chunk if it.id in fail]
            results = [(result or _result)(it, arrays[spec.label], rng, signal) for _, it in ok]
            receipt = write_shard(cache_dir, info, [k for k, _ in ok], [it.id for _, it in ok],
                                  results, errors, {})
            index.commit_receipt(receipt)
    return cache_dir


def _result(item, arrays, rng, signal):
    out = {}
    for name, (kind, width) in arrays.items():
        if kind == "seq":
            out[name] = Seq(signal(item, rng, int(rng.integers(3, 12)), width), rate=100.0)
        else:
            out[name] = Vec(signal(item, rng, 1, width)[0])
    return Result(out, {})
