"""The cache on disk: HDF5 shards, the SQLite index, file digests, verification.

Layout of a cache folder:

    index.sqlite                     keys -> shard rows, per-item errors, file digests
    manifests/<dataset>.jsonl        the manifest of each extracted dataset
    shards/<stage>/<config_id>/<shard>.h5

Shard layout (one file per task and stage configuration, written once):

    attrs: format, stage, label, version, config_id, config (JSON), stage_attrs (JSON)
    keys, items, meta            (N,) strings: cache key, item id, per-item JSON
    errors/keys, errors/items, errors/messages     items that failed
    arrays/<name>/values         "seq": (sum of T_i, ...) concatenated;
                                 "vec": (N, ...) stacked
    arrays/<name>/offsets        "seq" only: (N + 1,) int64, item i is
                                 values[offsets[i]:offsets[i + 1]]
    arrays/<name>/times          optional (sum T_i,) seconds, per step
    arrays/<name> attrs: kind, dims (trailing shape), rate (Hz, or NaN),
                         offsets_s (per-item time of step 0, in meta when not 0)

A shard is written under a temporary name and renamed into place when
complete, so a shard that exists is whole. The index is derived data: a
shard that exists but is not in the index (the run was killed between the
rename and the commit) is adopted on the next run.
"""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from pathlib import Path

FORMAT = "emocache-shard/1"
TMP_MARK = ".tmp-"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (name TEXT PRIMARY KEY, root TEXT, options TEXT,
    manifest_digest TEXT, n_items INTEGER, updated REAL);
CREATE TABLE IF NOT EXISTS configs (config_id TEXT PRIMARY KEY, stage TEXT, label TEXT,
    version TEXT, config TEXT);
CREATE TABLE IF NOT EXISTS shards (shard TEXT PRIMARY KEY, config_id TEXT, n_items INTEGER,
    n_errors INTEGER, digest TEXT, bytes INTEGER, created REAL, worker TEXT);
CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, config_id TEXT, item_id TEXT,
    shard TEXT, row INTEGER);
CREATE INDEX IF NOT EXISTS entries_by_item ON entries (config_id, item_id);
CREATE TABLE IF NOT EXISTS errors (key TEXT PRIMARY KEY, config_id TEXT, item_id TEXT,
    message TEXT, shard TEXT);
CREATE INDEX IF NOT EXISTS errors_by_item ON errors (config_id, item_id);
CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER,
    inode INTEGER, digest TEXT);
"""


def default_cache_dir():
    return os.environ.get("EMOCACHE_DIR", ".emocache")


class Index:
    def __init__(self, cache_dir):
        self.root = Path(cache_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.root / "index.sqlite", timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)

    # --- datasets ----------------------------------------------------------
    def record_dataset(self, name, root, options, manifest_digest, n_items):
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO datasets VALUES (?,?,?,?,?,?)",
                            (name, str(root), json.dumps(options, sort_keys=True),
                             manifest_digest, n_items, time.time()))

    def datasets(self) -> dict:
        rows = self.db.execute("SELECT name, root, options, manifest_digest, n_items FROM datasets")
        return {r[0]: {"root": r[1], "options": json.loads(r[2]), "manifest_digest": r[3],
                       "n_items": r[4]} for r in rows}

    # --- configs, entries, errors -------------------------------------------
    def record_config(self, spec):
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO configs VALUES (?,?,?,?,?)",
                            (spec.config_id, spec.name, spec.label, spec.stage.version,
                             json.dumps(spec.describe(), sort_keys=True)))

    def configs(self):
        return self.db.execute("SELECT config_id, stage, label, version, config FROM configs").fetchall()

    def existing(self, config_id) -> tuple:
        """(set of keys with outputs, {key: error message}) for one configuration."""
        done = {k for (k,) in self.db.execute("SELECT key FROM entries WHERE config_id=?", (config_id,))}
        failed = dict(self.db.execute("SELECT key, message FROM errors WHERE config_id=?", (config_id,)))
        return done, failed

    def item_keys(self, config_id) -> dict:
        """item id -> key currently stored for that configuration (for 'stale')."""
        return dict(self.db.execute("SELECT item_id, key FROM entries WHERE config_id=?", (config_id,)))

    def locations(self, keys) -> dict:
        """key -> (shard relative path, row) for keys that have outputs."""
        out = {}
        keys = list(keys)
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            q = "SELECT key, shard, row FROM entries WHERE key IN (%s)" % ",".join("?" * len(chunk))
            out.update({k: (s, r) for k, s, r in self.db.execute(q, chunk)})
        return out

    def commit_receipt(self, r):
        """Record a written shard. Keys already indexed keep their first row."""
        with self.db:
            self.db.execute("INSERT OR IGNORE INTO shards VALUES (?,?,?,?,?,?,?,?)",
                            (r["shard"], r["config_id"], len(r["keys"]), len(r["errors"]),
                             r["digest"], r["bytes"], time.time(), r.get("worker", "adopted")))
            self.db.executemany("INSERT OR IGNORE INTO entries VALUES (?,?,?,?,?)",
                                [(k, r["config_id"], i, r["shard"], row)
                                 for row, (k, i) in enumerate(zip(r["keys"], r["items"]))])
            self.db.executemany("INSERT OR REPLACE INTO errors VALUES (?,?,?,?,?)",
                                [(k, r["config_id"], i, m, r["shard"]) for k, i, m in r["errors"]])
            self.db.executemany("DELETE FROM errors WHERE key=?", [(k,) for k in r["keys"]])

    def forget_errors(self, config_id):
        with self.db:
            self.db.execute("DELETE FROM errors WHERE config_id=?", (config_id,))

    def shards(self):
        return self.db.execute("SELECT shard, config_id, n_items, digest FROM shards").fetchall()

    def drop_shard(self, shard):
        with self.db:
            for table in ("entries", "errors", "shards"):
                self.db.execute(f"DELETE FROM {table} WHERE shard=?", (shard,))

    # --- shards on disk that the index does not know yet -------------------
    def adopt_orphans(self, config_ids=None) -> int:
        """Index complete shards left by a run killed before it committed them,
        and delete temporary files of killed writers."""
        known = {s for (s, *_rest) in self.shards()}
        adopted = 0
        base = self.root / "shards"
        if not base.exists():
            return 0
        for path in _shard_files(base, config_ids, include_tmp=True):
            rel = str(path.relative_to(self.root))
            if TMP_MARK in path.name:
                path.unlink(missing_ok=True)
            elif rel not in known:
                self.commit_receipt(read_receipt(self.root, rel))
                adopted += 1
        return adopted


def _shard_files(base, config_ids, include_tmp=False):
    for stage_dir in base.iterdir():
        for cfg_dir in stage_dir.iterdir():
            if config_ids is not None and cfg_dir.name not in config_ids:
                continue
            for path in cfg_dir.iterdir():
                if path.suffix == ".h5" or (include_tmp and TMP_MARK in path.name):
                    yield path


class FileDigests:
    """Content digests of media files, re-hashed only when (size, mtime, inode) change."""

    def __init__(self, index: Index):
        self.db = index.db
        self._rows = {p: (s, m, i, d) for p, s, m, i, d in self.db.execute("SELECT * FROM files")}
        self._dirty = []

    def digest(self, path) -> str:
        try:
            st = os.stat(path)
        except OSError:
            return f"missing:{path}"
        row = self._rows.get(path)
        if row and row[:3] == (st.st_size, st.st_mtime_ns, st.st_ino):
            return row[3]
        d = file_digest(path)
        self._rows[path] = (st.st_size, st.st_mtime_ns, st.st_ino, d)
        self._dirty.append((path, st.st_size, st.st_mtime_ns, st.st_ino, d))
        return d

    def save(self):
        if self._dirty:
            with self.db:
                self.db.executemany("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?)", self._dirty)
            self._dirty = []


def file_digest(path, algorithm="xxh3_128") -> str:
    if algorithm == "xxh3_128":
        import xxhash
        h = xxhash.xxh3_128()
    else:
        import hashlib
        h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_DIGESTS_FILE = os.path.join(os.path.expanduser("~"), ".cache", "emocache", "file-digests.json")
_digest_memo = {}   # (algorithm, path) -> (size, mtime_ns, digest), this process


def remembered_digest(path, algorithm="xxh3_128") -> str:
    """Digest of a large file that is not corpus media (model weights, vector
    files), hashed once and remembered by (size, mtime) in this process and in
    a small JSON file under ~/.cache/emocache, so a rerun that changes nothing
    does not re-read them. (Corpus media use FileDigests, kept in the index.)"""
    path = os.path.abspath(path)
    st = os.stat(path)
    sig = (st.st_size, st.st_mtime_ns)
    key = f"{algorithm}:{path}"
    hit = _digest_memo.get(key) or _load_digests().get(key)
    if hit and tuple(hit[:2]) == sig:
        _digest_memo[key] = tuple(hit)
        return hit[2]
    digest = file_digest(path, algorithm)
    _digest_memo[key] = (*sig, digest)
    _save_digest(key, (*sig, digest))
    return digest


def _load_digests() -> dict:
    try:
        with open(_DIGESTS_FILE, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _save_digest(key, row):
    """Best effort: a read-only home only costs a re-hash next time."""
    try:
        table = _load_digests()
        table[key] = list(row)
        os.makedirs(os.path.dirname(_DIGESTS_FILE), exist_ok=True)
        tmp = f"{_DIGESTS_FILE}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(table, f)
        os.replace(tmp, _DIGESTS_FILE)
    except OSError:
        pass


# --- writing ---------------------------------------------------------------

def write_shard(cache_dir, spec_info, keys, items, results, errors, stage_attrs) -> dict:
    """Write one shard atomically and return its receipt (what the index needs).

    `results` are stage Results aligned with keys/items; `errors` is a list of
    (key, item id, message). The shard's name is derived from its keys, so a
    task that is run twice (a worker died) writes the same file.
    """
    import h5py
    import numpy as np
    from .graph import _digest, canonical

    rel_dir = Path("shards") / spec_info["stage"] / spec_info["config_id"]
    name = _digest(canonical([keys, [e[0] for e in errors]])) + ".h5"
    final = Path(cache_dir) / rel_dir / name
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f"{name}{TMP_MARK}{socket.gethostname()}-{os.getpid()}")
    try:
        _write_file(h5py, np, tmp, spec_info, keys, items, results, errors, stage_attrs)
        digest = file_digest(tmp)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return {"shard": str(rel_dir / name), "config_id": spec_info["config_id"], "keys": list(keys),
            "items": list(items), "errors": [list(e) for e in errors], "digest": digest,
            "bytes": final.stat().st_size}


def _write_file(h5py, np, tmp, spec_info, keys, items, results, errors, stage_attrs):
    with h5py.File(tmp, "w", libver="latest") as f:
        f.attrs.update(format=FORMAT, stage=spec_info["stage"], label=spec_info["label"],
                       version=spec_info["version"], config_id=spec_info["config_id"],
                       config=json.dumps(spec_info["config"], sort_keys=True), stage_attrs=json.dumps(stage_attrs))
        _strings(f, "keys", keys)
        _strings(f, "items", items)
        _strings(f, "meta", [json.dumps(r.meta, sort_keys=True) for r in results])
        _strings(f, "errors/keys", [e[0] for e in errors])
        _strings(f, "errors/items", [e[1] for e in errors])
        _strings(f, "errors/messages", [e[2] for e in errors])
        for arr_name in (results[0].arrays if results else {}):
            _write_array(f.create_group(f"arrays/{arr_name}"), [r.arrays[arr_name] for r in results], np)


def _strings(f, name, values):
    import h5py
    values = list(values)
    if values:
        f.create_dataset(name, data=values, dtype=h5py.string_dtype())
    else:
        f.create_dataset(name, shape=(0,), dtype=h5py.string_dtype())


def _write_array(g, arrays, np):
    first = arrays[0]
    g.attrs["kind"] = first.kind
    if first.kind == "vec":
        values = np.stack([_as_array(a.data, np) for a in arrays])
        _values(g, values, np)
        g.attrs["dims"] = np.array(values.shape[1:], dtype=np.int64)
        return
    datas = [_as_array(a.data, np) for a in arrays]
    lengths = np.array([len(d) for d in datas], dtype=np.int64)
    g.create_dataset("offsets", data=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
    values = np.concatenate(datas) if len(datas) else np.zeros((0,))
    _values(g, values, np)
    g.attrs["dims"] = np.array(values.shape[1:], dtype=np.int64)
    rates = {a.rate for a in arrays}
    g.attrs["rate"] = float(first.rate) if len(rates) == 1 and first.rate is not None else float("nan")
    g.attrs["offsets_s"] = [float(a.offset) for a in arrays]
    if any(a.times is not None for a in arrays):
        g.create_dataset("times", data=np.concatenate(
            [np.asarray(a.times if a.times is not None else _rate_times(a, len(d), np), dtype=np.float64)
             for a, d in zip(arrays, datas)]))


def _rate_times(a, n, np):
    return a.offset + np.arange(n) / a.rate


def _values(g, values, np):
    if values.dtype.kind in "OU":
        _strings(g, "values", [str(v) for v in values.reshape(-1)])
        return
    g.create_dataset("values", data=values, chunks=True if values.size else None)


def _as_array(data, np):
    arr = np.asarray(data)
    return arr.astype(str) if arr.dtype.kind == "U" else arr


def check_consistent(results):
    """The arrays of all items in a shard must agree in names, kind and trailing shape."""
    ref = results[0]
    for r in results[1:]:
        if r.arrays.keys() != ref.arrays.keys():
            return f"array names differ: {sorted(r.arrays)} vs {sorted(ref.arrays)}"
        for name, a in r.arrays.items():
            b = ref.arrays[name]
            sa, sb = _shape(a), _shape(b)
            if a.kind != b.kind or sa[1 if a.kind == "seq" else 0:] != sb[1 if b.kind == "seq" else 0:]:
                return f"array {name}: shape {sa} does not match {sb}"
    return None


def _shape(a):
    import numpy as np
    return np.shape(a.data)


def read_receipt(cache_dir, rel) -> dict:
    import h5py
    path = Path(cache_dir) / rel
    with h5py.File(path, "r", locking=False) as f:
        keys = _read_strings(f["keys"])
        items = _read_strings(f["items"])
        errors = list(zip(_read_strings(f["errors/keys"]), _read_strings(f["errors/items"]),
                          _read_strings(f["errors/messages"])))
        config_id = f.attrs["config_id"]
    return {"shard": rel, "config_id": config_id, "keys": keys, "items": items,
            "errors": errors, "digest": file_digest(path), "bytes": path.stat().st_size}


def _read_strings(ds):
    return [s.decode() if isinstance(s, bytes) else s for s in ds[()]] if ds.shape[0] else []


# --- reading ---------------------------------------------------------------

class ShardReader:
    """Opens shards lazily, read-only and without HDF5 file locks, one handle
    per file per process (handles never cross a fork)."""

    def __init__(self, cache_dir):
        self.cache_dir = Path(cache_dir)
        self._files = {}
        self._layouts = {}
        self._pid = os.getpid()

    def file(self, rel):
        import h5py
        if os.getpid() != self._pid:
            self._files, self._layouts, self._pid = {}, {}, os.getpid()
        if rel not in self._files:
            self._files[rel] = h5py.File(self.cache_dir / rel, "r", locking=False)
        return self._files[rel]

    def row(self, rel, row) -> tuple:
        """(arrays dict, meta dict) of one item."""
        layout, meta = self._layout(rel)
        arrays = {name: _read_row(parts, row) for name, parts in layout.items()}
        return arrays, json.loads(_read_strings_at(meta, row))

    def _layout(self, rel):
        """Per array (offsets or None for "vec", values dataset, holds strings),
        and the meta dataset: looked up once per shard, because h5py's group and
        attribute lookups cost several times more than reading one row."""
        f = self.file(rel)   # first: after a fork it resets both caches
        if rel not in self._layouts:
            arrays = {}
            for name, g in f["arrays"].items():
                values = g["values"]
                offsets = g["offsets"][()] if g.attrs["kind"] == "seq" else None
                arrays[name] = (offsets, values, values.dtype.kind == "O")
            self._layouts[rel] = (arrays, f["meta"])
        return self._layouts[rel]

    def times(self, rel, row, name):
        """Seconds of each step of a sequence array for one item."""
        import numpy as np
        g = self.file(rel)["arrays"][name]
        a, b = g["offsets"][row:row + 2]
        if "times" in g:
            return g["times"][a:b]
        return float(g.attrs["offsets_s"][row]) + np.arange(b - a) / float(g.attrs["rate"])

    def attrs(self, rel) -> dict:
        f = self.file(rel)
        return {"stage_attrs": json.loads(f.attrs["stage_attrs"]), "config": json.loads(f.attrs["config"]),
                "arrays": {n: dict(g.attrs) for n, g in f["arrays"].items()}}

    def close(self):
        for f in self._files.values():
            f.close()
        self._files = {}
        self._layouts = {}


def _read_row(parts, row):
    offsets, values, strings = parts
    v = values[row] if offsets is None else values[offsets[row]:offsets[row + 1]]
    if strings:
        import numpy as np
        v = np.array([s.decode() if isinstance(s, bytes) else s for s in np.atleast_1d(v)], dtype=str)
    return v


def _read_strings_at(ds, row):
    s = ds[row]
    return s.decode() if isinstance(s, bytes) else s


# --- verification ----------------------------------------------------------

def verify(cache_dir) -> dict:
    """Re-hash every indexed shard: 'ok', 'corrupt', 'missing'; plus unindexed files."""
    index = Index(cache_dir)
    report = {"ok": [], "corrupt": [], "missing": [], "unindexed": []}
    known = set()
    for shard, _cfg, _n, digest in index.shards():
        known.add(shard)
        path = Path(cache_dir) / shard
        if not path.exists():
            report["missing"].append(shard)
        elif file_digest(path) != digest:
            report["corrupt"].append(shard)
        else:
            report["ok"].append(shard)
    base = Path(cache_dir) / "shards"
    if base.exists():
        for path in _shard_files(base, None, include_tmp=True):
            rel = str(path.relative_to(cache_dir))
            if rel not in known:
                report["unindexed"].append(rel)
    return report
