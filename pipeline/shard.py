"""The HDF5 shard format: written and read here, and nowhere else.

A shard holds one stage configuration's outputs for one task's items:

    attrs: format, stage, label, version, config_id, config (JSON), stage_attrs (JSON)
    keys, items, meta            (N,) strings: cache key, item id, per-item JSON
    errors/keys, errors/items, errors/messages     items that failed
    arrays/<name>/values         "seq": (sum of T_i, ...) concatenated;
                                 "vec": (N, ...) stacked
    arrays/<name>/offsets        "seq" only: (N + 1,) int64, item i is
                                 values[offsets[i]:offsets[i + 1]]
    arrays/<name>/times          optional (sum T_i,) seconds, per step
    arrays/<name> attrs: kind, dims (trailing shape), rate (Hz, or NaN),
                         offsets_s (per-item time of step 0)

Numeric datasets carry HDF5's Fletcher-32 checksum, so a damaged byte is an
error on read, never a wrong number; every row's key is stored beside it and
checked by the reader. A shard is written under a temporary name and renamed
into place when complete, so a shard that exists is whole.
"""
from __future__ import annotations

import json
import os
import socket
from collections import OrderedDict
from pathlib import Path

from .digests import canonical, digest_text, file_digest

FORMAT = "emocache-shard/2"
TMP_MARK = ".tmp-"
MAX_OPEN = 128      # shard files a reader keeps open per process
MAX_LAYOUTS = 4096  # shards whose layout (keys, offsets) a reader remembers


class ShardError(OSError):
    """A shard is missing, unreadable or damaged: the cache needs repair."""


def repair_hint(cache_dir) -> str:
    return f"run `pipeline verify --fix --cache {cache_dir}`, then `pipeline extract` to recompute"


# --- writing ---------------------------------------------------------------

def write_shard(cache_dir, spec_info, keys, items, results, errors, stage_attrs) -> dict:
    """Write one shard atomically and return its receipt (what the index needs).

    `results` are stage Results aligned with keys/items; `errors` is a list of
    (key, item id, message). The shard's name is derived from its keys, so a
    task that is run twice (a worker died) writes the same file.
    """
    rel_dir = Path("shards") / spec_info["stage"] / spec_info["config_id"]
    name = digest_text(canonical([keys, [e[0] for e in errors]])) + ".h5"
    final = Path(cache_dir) / rel_dir / name
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f"{name}{TMP_MARK}{socket.gethostname()}-{os.getpid()}")
    try:
        _write_file(tmp, spec_info, keys, items, results, errors, stage_attrs)
        digest = file_digest(tmp)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return {"shard": str(rel_dir / name), "config_id": spec_info["config_id"], "keys": list(keys),
            "items": list(items), "errors": [list(e) for e in errors], "digest": digest,
            "bytes": final.stat().st_size}


def _write_file(tmp, spec_info, keys, items, results, errors, stage_attrs):
    import h5py
    with h5py.File(tmp, "w", libver="latest") as f:
        f.attrs.update(format=FORMAT, stage=spec_info["stage"], label=spec_info["label"],
                       version=spec_info["version"], config_id=spec_info["config_id"],
                       config=json.dumps(spec_info["config"], sort_keys=True),
                       stage_attrs=json.dumps(stage_attrs))
        _strings(f, "keys", keys)
        _strings(f, "items", items)
        _strings(f, "meta", [json.dumps(r.meta, sort_keys=True) for r in results])
        _strings(f, "errors/keys", [e[0] for e in errors])
        _strings(f, "errors/items", [e[1] for e in errors])
        _strings(f, "errors/messages", [e[2] for e in errors])
        for arr_name in (results[0].arrays if results else {}):
            _write_array(f.create_group(f"arrays/{arr_name}"), [r.arrays[arr_name] for r in results])


def _strings(f, name, values):
    import h5py
    values = list(values)
    if values:
        f.create_dataset(name, data=values, dtype=h5py.string_dtype())
    else:
        f.create_dataset(name, shape=(0,), dtype=h5py.string_dtype())


CHUNK_BYTES = 1 << 16


def _numbers(g, name, data):
    """A numeric dataset with a checksum (the filter needs chunks; an empty one has none).
    Chunks hold whole rows, about 64 KiB: reading one item then touches few
    chunks, and the checksum runs over little more than the item."""
    if not data.size:
        g.create_dataset(name, data=data)
        return
    row_bytes = data.itemsize * max(1, int(data[:1].size))
    rows = int(min(len(data), max(1, CHUNK_BYTES // row_bytes)))
    g.create_dataset(name, data=data, chunks=(rows, *data.shape[1:]), fletcher32=True)


def _write_array(g, arrays):
    import numpy as np
    first = arrays[0]
    g.attrs["kind"] = first.kind
    datas = [_as_array(a.data) for a in arrays]
    if first.kind == "vec":
        values = np.stack(datas)
        _values(g, values)
        g.attrs["dims"] = np.array(values.shape[1:], dtype=np.int64)
        return
    lengths = np.array([len(d) for d in datas], dtype=np.int64)
    _numbers(g, "offsets", np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
    values = np.concatenate(datas) if datas else np.zeros((0,))
    _values(g, values)
    g.attrs["dims"] = np.array(values.shape[1:], dtype=np.int64)
    rates = {a.rate for a in arrays}
    g.attrs["rate"] = float(first.rate) if len(rates) == 1 and first.rate is not None else float("nan")
    g.attrs["offsets_s"] = [float(a.offset) for a in arrays]
    if any(a.times is not None for a in arrays):
        _numbers(g, "times", np.concatenate(
            [np.asarray(a.times if a.times is not None else a.offset + np.arange(len(d)) / a.rate,
                        dtype=np.float64) for a, d in zip(arrays, datas)]))


def _values(g, values):
    if values.dtype.kind in "OU":
        _strings(g, "values", [str(v) for v in values.reshape(-1)])
    else:
        _numbers(g, "values", values)


def _as_array(data):
    import numpy as np
    arr = np.asarray(data)
    return arr.astype(str) if arr.dtype.kind == "U" else arr


def check_consistent(results):
    """The arrays of all items in a shard must agree in names, kind and trailing shape."""
    import numpy as np
    ref = results[0]
    for r in results[1:]:
        if r.arrays.keys() != ref.arrays.keys():
            return f"array names differ: {sorted(r.arrays)} vs {sorted(ref.arrays)}"
        for name, a in r.arrays.items():
            b = ref.arrays[name]
            sa, sb = np.shape(a.data), np.shape(b.data)
            if a.kind != b.kind or sa[1 if a.kind == "seq" else 0:] != sb[1 if b.kind == "seq" else 0:]:
                return f"array {name}: shape {sa} does not match {sb}"
    return None


# --- what a shard says about itself (adoption, verify, rebuilding the index) ---

def read_receipt(cache_dir, rel) -> dict:
    """The receipt a writer returned for this shard, read back from the file,
    plus its configuration (enough to rebuild the index from shards alone)."""
    import h5py
    path = Path(cache_dir) / rel
    with h5py.File(path, "r", locking=False) as f:
        receipt = {"shard": str(rel), "config_id": str(f.attrs["config_id"]),
                   "keys": _decoded(f["keys"]), "items": _decoded(f["items"]),
                   "errors": [list(e) for e in zip(_decoded(f["errors/keys"]), _decoded(f["errors/items"]),
                                                   _decoded(f["errors/messages"]))],
                   "stage": str(f.attrs["stage"]), "label": str(f.attrs["label"]),
                   "version": str(f.attrs["version"]), "config": json.loads(f.attrs["config"])}
    receipt.update(digest=file_digest(path), bytes=path.stat().st_size, created=path.stat().st_mtime)
    return receipt


def shard_files(cache_dir, config_ids=None, include_tmp=False):
    """Paths of the shard files under a cache (optionally only some configurations)."""
    base = Path(cache_dir) / "shards"
    if not base.exists():
        return
    for stage_dir in sorted(base.iterdir()):
        for cfg_dir in sorted(stage_dir.iterdir()):
            if config_ids is not None and cfg_dir.name not in config_ids:
                continue
            for path in sorted(cfg_dir.iterdir()):
                if path.suffix == ".h5" or (include_tmp and TMP_MARK in path.name):
                    yield path


def _decoded(ds):
    return [s.decode() if isinstance(s, bytes) else s for s in ds[()]] if ds.shape[0] else []


# --- reading ---------------------------------------------------------------

class _Layout:
    """What a reader needs to find rows in one shard: its keys and, per array,
    kind, offsets and attributes. Small (a few KiB per shard) and kept for many
    more shards than are open, because reading it costs more than a row."""

    def __init__(self, f):
        self.keys = _decoded(f["keys"])
        self.arrays = {}
        for name, g in f["arrays"].items():
            values = g["values"]
            self.arrays[name] = {"kind": g.attrs["kind"], "strings": values.dtype.kind == "O",
                                 "offsets": g["offsets"][()] if g.attrs["kind"] == "seq" else None,
                                 "attrs": dict(g.attrs), "times": "times" in g}

    def array(self, name):
        if name not in self.arrays:
            raise KeyError(f"no array {name!r} (it has: {', '.join(self.arrays)})")
        return self.arrays[name]


class ShardReader:
    """Reads item rows on demand, read-only and without HDF5 file locks.

    At most `max_open` shard files are open at once (least recently used
    closed first; each open file costs about 0.5 MiB), and the layouts of at
    most `max_layouts` shards are kept, so memory does not grow with the
    corpus. No chunk cache: rows are read in random order, a chunk is rarely
    read twice. Handles never cross a fork or a pickle: a new process opens
    its own."""

    def __init__(self, cache_dir, max_open=MAX_OPEN, max_layouts=MAX_LAYOUTS):
        self.cache_dir = Path(cache_dir)
        self.max_open = max_open
        self.max_layouts = max_layouts
        self._open = OrderedDict()          # rel -> (h5py.File, {array name: dataset})
        self._layouts = OrderedDict()       # rel -> _Layout
        self._pid = os.getpid()

    def __getstate__(self):
        return {"cache_dir": self.cache_dir, "max_open": self.max_open, "max_layouts": self.max_layouts}

    def __setstate__(self, state):
        self.__init__(state["cache_dir"], state["max_open"], state["max_layouts"])

    def _file(self, rel):
        if os.getpid() != self._pid:        # forked: the parent's handles are not ours
            self._open, self._layouts, self._pid = OrderedDict(), OrderedDict(), os.getpid()
        hit = self._open.get(rel)
        if hit is not None:
            self._open.move_to_end(rel)
            return hit
        opened = (self._opened(rel), {})
        self._open[rel] = opened
        while len(self._open) > self.max_open:
            self._open.popitem(last=False)[1][0].close()
        return opened

    def _opened(self, rel):
        import h5py
        path = self.cache_dir / rel
        if not path.is_file():
            raise ShardError(f"shard {path} is missing; {repair_hint(self.cache_dir)}")
        try:
            return h5py.File(path, "r", locking=False, rdcc_nbytes=0)
        except OSError as e:
            raise ShardError(f"shard {path} cannot be read ({e}); {repair_hint(self.cache_dir)}") from None

    def layout(self, rel) -> _Layout:
        hit = self._layouts.get(rel)
        if hit is None or os.getpid() != self._pid:
            try:
                hit = _Layout(self._file(rel)[0])
            except (OSError, KeyError) as e:
                raise ShardError(f"shard {self.cache_dir / rel} cannot be read ({e}); "
                                 f"{repair_hint(self.cache_dir)}") from None
            self._layouts[rel] = hit
            while len(self._layouts) > self.max_layouts:
                self._layouts.popitem(last=False)
        else:
            self._layouts.move_to_end(rel)
        return hit

    def _dataset(self, rel, name, part="values"):
        f, datasets = self._file(rel)
        if (name, part) not in datasets:
            datasets[(name, part)] = f["arrays"][name][part]
        return datasets[(name, part)]

    def _checked(self, rel, row, key, what):
        """Run `what(layout)` after checking the row holds `key`; damage becomes a ShardError."""
        layout = self.layout(rel)
        if key is not None and (row >= len(layout.keys) or layout.keys[row] != key):
            raise ShardError(f"shard {self.cache_dir / rel} row {row} does not hold key {key} "
                             f"(the index is out of step with the shards); "
                             f"run `pipeline verify --rebuild-index --cache {self.cache_dir}`")
        try:
            return what(layout)
        except OSError as e:
            item = self._file(rel)[0]["items"][row] if row < len(layout.keys) else "?"
            item = item.decode() if isinstance(item, bytes) else item
            raise ShardError(f"shard {self.cache_dir / rel}, item {item}: {e}; "
                             f"{repair_hint(self.cache_dir)}") from None

    def _row(self, rel, layout, name, row, cap=None):
        a = layout.array(name)
        values = self._dataset(rel, name)
        offsets = a["offsets"]
        if offsets is None:
            v = values[row]
        else:
            start, end = offsets[row], offsets[row + 1]
            v = values[start:end if cap is None else min(end, start + cap)]
        if a["strings"]:
            import numpy as np
            v = np.array([s.decode() if isinstance(s, bytes) else s for s in np.atleast_1d(v)], dtype=str)
        return v

    def array(self, rel, row, name, key=None, cap=None):
        """One array of one item (a sequence cut to its first `cap` steps)."""
        return self._checked(rel, row, key, lambda lay: self._row(rel, lay, name, row, cap))

    def row(self, rel, row, key=None) -> tuple:
        """(arrays dict, meta dict) of one item."""
        def read(lay):
            arrays = {name: self._row(rel, lay, name, row) for name in lay.arrays}
            meta = self._file(rel)[0]["meta"][row]
            return arrays, json.loads(meta.decode() if isinstance(meta, bytes) else meta)
        return self._checked(rel, row, key, read)

    def times(self, rel, row, name, key=None):
        """Seconds of each step of a sequence array for one item."""
        def read(lay):
            import numpy as np
            a = lay.array(name)
            start, end = a["offsets"][row], a["offsets"][row + 1]
            if a["times"]:
                return self._dataset(rel, name, "times")[start:end]
            return float(a["attrs"]["offsets_s"][row]) + np.arange(end - start) / float(a["attrs"]["rate"])
        return self._checked(rel, row, key, read)

    def dims(self, rel, name) -> tuple:
        """Trailing shape of an array (e.g. (240,) for fbank with deltas)."""
        return tuple(int(x) for x in self.layout(rel).array(name)["attrs"]["dims"])

    def attrs(self, rel) -> dict:
        f = self._file(rel)[0]
        return {"stage_attrs": json.loads(f.attrs["stage_attrs"]), "config": json.loads(f.attrs["config"]),
                "arrays": {n: a["attrs"] for n, a in self.layout(rel).arrays.items()}}

    def close(self):
        for f, _ in self._open.values():
            f.close()
        self._open = OrderedDict()
