"""The SQLite index of a cache: where each output is, per-item errors, media
digests; orphan adoption, lookup, verification and rebuilding.

Layout of a cache folder:

    index.sqlite                     keys -> shard rows, per-item errors, file digests
    manifests/<dataset>.jsonl        the manifest of each extracted dataset
    manifests/<dataset>.json         its root and digest (the index's datasets row)
    shards/<stage>/<config_id>/<shard>.h5      (format: pipeline/shard.py)

The index is derived data: everything in it but media digests can be
rebuilt from the shards and manifests (`pipeline verify --rebuild-index`).
A shard that exists but is not indexed (the run was killed between the
rename and the commit) is adopted on the next run. Readers open the index
read-only and write nothing under the cache.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from .shard import TMP_MARK, read_receipt, shard_files

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
INDEX_FILE = "index.sqlite"


def default_cache_dir():
    return os.environ.get("EMOCACHE_DIR", ".emocache")


class IndexDamaged(Exception):
    """index.sqlite cannot be read; it can be rebuilt from the shards."""


@dataclass
class Location:
    """Where one item's output of one stage configuration is, and whether it is current.

    state: "current" (an output made from the item's present inputs), "stale"
    (only an output from other inputs), "missing" (never extracted, its shard
    is gone, or an input file is missing), or "failed" (the stage recorded this
    input as bad); `reason` says why when it is not current."""
    item_id: str
    key: str
    state: str
    shard: str | None = None
    row: int | None = None
    reason: str = ""
    unverified: bool = False    # current by the digests recorded at extraction (corpus not mounted)


class Index:
    def __init__(self, cache_dir, readonly=False):
        self.root = Path(cache_dir)
        self.readonly = readonly
        path = self.root / INDEX_FILE
        if readonly and not path.exists():
            raise FileNotFoundError(f"no emocache cache at {self.root} (run `pipeline extract` first)")
        try:
            self.db = self._connect(path)
        except sqlite3.DatabaseError as e:
            raise IndexDamaged(f"the index {path} cannot be read ({e}); rebuild it from the shards "
                               f"with `pipeline verify --rebuild-index --cache {self.root}`") from None
        self._shard_bytes = None

    def _connect(self, path):
        if self.readonly:
            db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=60)
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return db
        self.root.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, timeout=60)
        # A rollback journal, not WAL: a read-only connection then needs no
        # -shm/-wal files, so reading a cache never writes beside it.
        db.execute("PRAGMA journal_mode=DELETE")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        return db

    def close(self):
        self.db.close()

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
        self._record_config(spec.config_id, spec.name, spec.label, spec.stage.version, spec.describe())

    def _record_config(self, config_id, stage, label, version, description):
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO configs VALUES (?,?,?,?,?)",
                            (config_id, stage, label, version, json.dumps(description, sort_keys=True)))

    def config_rows(self) -> dict:
        """config_id -> (stage, label) of every recorded configuration."""
        return {c: (s, lb) for c, s, lb in self.db.execute("SELECT config_id, stage, label FROM configs")}

    def locations(self, keys) -> dict:
        """key -> (shard relative path, row) for keys that have outputs."""
        out = {}
        keys = list(keys)
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            q = "SELECT key, shard, row FROM entries WHERE key IN (%s)" % ",".join("?" * len(chunk))
            out.update({k: (s, r) for k, s, r in self.db.execute(q, chunk)})
        return out

    def lookup(self, config_id, keys, item_ids) -> list:
        """A Location per item (aligned with `keys`, `item_ids`): the one answer
        to "where is this output, and is it current?". An output whose shard
        is gone or changed size since it was indexed counts as missing."""
        found = self.locations(keys)
        failed = dict(self.db.execute("SELECT key, message FROM errors WHERE config_id=?", (config_id,)))
        stored = None
        out = []
        for key, item_id in zip(keys, item_ids):
            if key in found:
                shard, row = found[key]
                problem = self.shard_problem(shard)
                out.append(Location(item_id, key, "missing" if problem else "current", shard, row, problem))
            elif key in failed:
                out.append(Location(item_id, key, "failed", reason=failed[key]))
            else:
                if stored is None:
                    stored = dict(self.db.execute("SELECT item_id, key FROM entries WHERE config_id=?",
                                                  (config_id,)))
                out.append(Location(item_id, key, "stale", reason="made from other inputs") if item_id in stored
                           else Location(item_id, key, "missing", reason="never extracted"))
        return out

    def stored_location(self, config_id, item_id):
        """(key, shard, row) of the output stored for an item, whatever its inputs were."""
        return self.db.execute("SELECT key, shard, row FROM entries WHERE config_id=? AND item_id=?",
                               (config_id, item_id)).fetchone()

    def shard_problem(self, shard) -> str:
        """'' when the shard file is there with its indexed size (a stat, no read)."""
        if self._shard_bytes is None:
            self._shard_bytes = dict(self.db.execute("SELECT shard, bytes FROM shards"))
        try:
            size = (self.root / shard).stat().st_size
        except OSError:
            return f"its shard {shard} is missing"
        expected = self._shard_bytes.get(shard)
        return "" if expected in (None, size) else f"its shard {shard} changed size"

    def commit_receipt(self, r, worker=None):
        """Record a written shard. Keys already indexed keep their first row."""
        with self.db:
            self.db.execute("INSERT OR IGNORE INTO shards VALUES (?,?,?,?,?,?,?,?)",
                            (r["shard"], r["config_id"], len(r["keys"]), len(r["errors"]),
                             r["digest"], r["bytes"], r.get("created", time.time()),
                             worker or r.get("worker", "adopted")))
            self.db.executemany("INSERT OR IGNORE INTO entries VALUES (?,?,?,?,?)",
                                [(k, r["config_id"], i, r["shard"], row)
                                 for row, (k, i) in enumerate(zip(r["keys"], r["items"]))])
            self.db.executemany("INSERT OR REPLACE INTO errors VALUES (?,?,?,?,?)",
                                [(k, r["config_id"], i, m, r["shard"]) for k, i, m in r["errors"]])
            self.db.executemany("DELETE FROM errors WHERE key=?", [(k,) for k in r["keys"]])
        self._shard_bytes = None

    def forget_errors(self, config_id):
        with self.db:
            self.db.execute("DELETE FROM errors WHERE config_id=?", (config_id,))

    def shards(self):
        return self.db.execute("SELECT shard, config_id, n_items, digest, bytes, created FROM shards").fetchall()

    def drop_shards(self, shards, delete_files=True):
        """Forget shards (so their items are recomputed) and delete their files."""
        with self.db:
            for shard in shards:
                for table in ("entries", "errors", "shards"):
                    self.db.execute(f"DELETE FROM {table} WHERE shard=?", (shard,))
        self._shard_bytes = None
        if delete_files:
            for shard in shards:
                (self.root / shard).unlink(missing_ok=True)

    def drop_configs(self, config_ids):
        with self.db:
            for cid in config_ids:
                for table in ("entries", "errors", "shards", "configs"):
                    self.db.execute(f"DELETE FROM {table} WHERE config_id=?", (cid,))
        self._shard_bytes = None

    # --- media digests (digests.FileDigests) --------------------------------
    def file_rows(self) -> dict:
        return {p: (s, m, i, d) for p, s, m, i, d in self.db.execute("SELECT * FROM files")}

    def save_file_rows(self, rows):
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?)", rows)

    # --- shards on disk that the index does not know yet -------------------
    def adopt_orphans(self, config_ids=None) -> int:
        """Index complete shards left by a run killed before it committed them,
        and delete temporary files of killed writers."""
        known = {s for (s, *_rest) in self.shards()}
        adopted = 0
        for path in shard_files(self.root, config_ids, include_tmp=True):
            rel = str(path.relative_to(self.root))
            if TMP_MARK in path.name:
                path.unlink(missing_ok=True)
            elif rel not in known:
                self.commit_receipt(read_receipt(self.root, rel))
                adopted += 1
        return adopted


# --- verification and rebuilding -------------------------------------------

def verify(cache_dir) -> dict:
    """Check the index (SQLite's quick_check), the manifests, and every shard
    (re-hashed): 'ok', 'corrupt', 'missing' shards, unindexed files, and
    'problems' with the index or manifests. Reads only."""
    index = Index(cache_dir, readonly=True)
    report = {"ok": [], "corrupt": [], "missing": [], "unindexed": [], "problems": []}
    try:
        check = index.db.execute("PRAGMA quick_check").fetchall()
        if check != [("ok",)]:
            report["problems"] += [f"index: {row[0]}" for row in check[:5]]
        report["problems"] += _manifest_problems(cache_dir, index.datasets())
        _check_shards(cache_dir, index.shards(), report)
    except (sqlite3.DatabaseError, ValueError, TypeError) as e:     # rows too damaged to read
        report["problems"].append(f"index: unreadable ({e})")
    finally:
        index.close()
    return report


def _check_shards(cache_dir, rows, report):
    known = set()
    for shard, _cfg, _n, digest, _bytes, _created in rows:
        known.add(shard)
        path = Path(cache_dir) / shard
        if not path.exists():
            report["missing"].append(shard)
        elif _digest_of(path) != digest:
            report["corrupt"].append(shard)
        else:
            report["ok"].append(shard)
    for path in shard_files(cache_dir, include_tmp=True):
        rel = str(path.relative_to(cache_dir))
        if rel not in known:
            report["unindexed"].append(rel)


def _digest_of(path):
    from .digests import file_digest
    return file_digest(path)


def _manifest_problems(cache_dir, datasets) -> list:
    """Each recorded dataset's manifest exists, parses, and has its item count."""
    out = []
    for name, info in datasets.items():
        path = Path(cache_dir) / "manifests" / f"{name}.jsonl"
        try:
            lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
        except OSError:
            out.append(f"manifest {path} is missing")
            continue
        except ValueError as e:
            out.append(f"manifest {path} is damaged ({e})")
            continue
        if len(lines) != info["n_items"]:
            out.append(f"manifest {path} has {len(lines)} items, the index says {info['n_items']}")
    return out


def rebuild_index(cache_dir) -> dict:
    """Build a new index.sqlite from the shards and the manifests alone; the
    old file is kept beside it as index.sqlite.damaged. Media digests are not
    in the shards: the next run re-hashes the corpus once."""
    root = Path(cache_dir)
    old = root / INDEX_FILE
    if old.exists():
        os.replace(old, root / f"{INDEX_FILE}.damaged")
    for leftover in (f"{INDEX_FILE}-journal", f"{INDEX_FILE}-wal", f"{INDEX_FILE}-shm"):
        (root / leftover).unlink(missing_ok=True)
    index = Index(root)
    counts = {"shards": 0, "datasets": 0}
    for path in shard_files(root):
        r = read_receipt(root, path.relative_to(root))
        index._record_config(r["config_id"], r["stage"], r["label"], r["version"],
                             {"label": r["label"], "stage": r["stage"], "version": r["version"],
                              "config": r["config"], "config_id": r["config_id"]})
        index.commit_receipt(r, worker="rebuilt")
        counts["shards"] += 1
    for path in sorted((root / "manifests").glob("*.json")):
        info = json.loads(path.read_text(encoding="utf-8"))
        index.record_dataset(path.stem, info["root"], info["options"], info["manifest_digest"], info["n_items"])
        counts["datasets"] += 1
    index.close()
    return counts
