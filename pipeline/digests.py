"""Content hashing: canonical JSON digests, file digests, remembered digests.

Cache keys are blake2b digests of canonical JSON (sorted keys, no spaces),
so the same configuration always gives the same key. Files are hashed by
content (xxh3-128 by default); the digest is remembered against the file's
(size, mtime[, inode]) so an unchanged file is never read twice:

- corpus media in the cache's index (`FileDigests`),
- models, vector files and weights in ~/.cache/emocache (`remembered_digest`),
  since they are shared by every cache on the machine.
"""
from __future__ import annotations

import hashlib
import json
import os


def canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=list)


def digest_text(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def file_digest(path, algorithm="xxh3_128") -> str:
    if algorithm == "xxh3_128":
        import xxhash
        h = xxhash.xxh3_128()
    else:
        h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class FileDigests:
    """Content digests of media files, re-hashed only when (size, mtime, inode)
    change, remembered in the index's `files` table (written only by `save`,
    which a read-only index skips).

    `trust_recorded`: a file that cannot be found keeps the digest recorded
    for its path (the corpus is not mounted: judge outputs by what was
    extracted); otherwise it digests as missing, so nothing made from it is
    taken as current."""

    def __init__(self, index, trust_recorded=False):
        self.index = index
        self.trust_recorded = trust_recorded
        self._rows = index.file_rows()
        self._dirty = []

    def digest(self, path) -> str:
        return self.digest_and_state(path)[0]

    def digest_and_state(self, path) -> tuple:
        """(digest, "hashed" | "recorded" | "missing"). A path that is there
        but is no regular, readable file (a directory, a FIFO) is never opened:
        its digest says what it is, and the item fails when it is decoded."""
        try:
            st = os.stat(path)
        except OSError:
            row = self._rows.get(path)
            if self.trust_recorded and row:
                return row[3], "recorded"
            return f"missing:{path}", "missing"
        from .media import media_problem
        problem = media_problem(path)
        if problem:
            return f"unusable:{path}:{problem}", "hashed"
        row = self._rows.get(path)
        if row and row[:3] == (st.st_size, st.st_mtime_ns, st.st_ino):
            return row[3], "hashed"
        try:
            d = file_digest(path)
        except OSError as e:
            return f"unusable:{path}:{e.strerror}", "hashed"
        self._rows[path] = (st.st_size, st.st_mtime_ns, st.st_ino, d)
        self._dirty.append((path, st.st_size, st.st_mtime_ns, st.st_ino, d))
        return d, "hashed"

    def save(self):
        if self._dirty and not self.index.readonly:
            self.index.save_file_rows(self._dirty)
        self._dirty = []


_DIGESTS_FILE = os.path.join(os.path.expanduser("~"), ".cache", "emocache", "file-digests.json")
_digest_memo = {}   # (algorithm, path) -> (size, mtime_ns, digest), this process


def remembered_digest(path, algorithm="xxh3_128") -> str:
    """Digest of a large file that is not corpus media (model weights, vector
    files), hashed once and remembered by (size, mtime) in this process and in
    a small JSON file under ~/.cache/emocache, so a rerun that changes nothing
    does not re-read them."""
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
