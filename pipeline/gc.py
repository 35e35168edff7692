"""`pipeline gc`: remove the stage configurations nothing asks for.

A configuration (one folder `shards/<stage>/<config_id>`) goes when it is
not kept (`--keep-for`, `--keep`, with everything they consume) and, with
`--older-than`, was last written more than that many days ago.

Removal is safe to kill at any moment: the index rows go first, in one
transaction; the shard folders after. A gc killed in between leaves only
unindexed folders of configurations nobody keeps, which `verify` reports
without calling the cache damaged and the next gc removes.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Doomed:
    config_id: str
    stage: str
    label: str
    shards: int
    bytes: int


def collect(index, keep: set, older_than_days=None) -> list:
    """The configurations to remove, indexed or only on disk."""
    found = _on_disk(index.root)
    for shard, config_id, _n, _digest, size, created in index.shards():
        d = found.setdefault(config_id, [Path(shard).parts[1], 0, 0, 0.0])
        d[3] = max(d[3], created or 0.0)
    names = index.config_rows()
    for config_id, (stage, _label) in names.items():
        found.setdefault(config_id, [stage, 0, 0, 0.0])
    cutoff = None if older_than_days is None else time.time() - older_than_days * 86400
    out = []
    for config_id, (stage, n, size, newest) in sorted(found.items(), key=lambda kv: kv[1][0]):
        if config_id in keep or (cutoff is not None and newest > cutoff):
            continue
        out.append(Doomed(config_id, stage, names.get(config_id, (stage, ""))[1], n, size))
    return out


def _on_disk(root) -> dict:
    """config_id -> [stage, shard files, bytes, newest mtime] for folders under shards/."""
    out = {}
    base = Path(root) / "shards"
    for folder in sorted(base.glob("*/*")) if base.exists() else ():
        files = [p for p in folder.iterdir() if p.is_file()]
        stats = [p.stat() for p in files]
        out[folder.name] = [folder.parent.name, sum(p.suffix == ".h5" for p in files),
                            sum(st.st_size for st in stats), max((st.st_mtime for st in stats), default=0.0)]
    return out


def remove(index, doomed):
    index.drop_configs([d.config_id for d in doomed])
    for d in doomed:
        shutil.rmtree(Path(index.root) / "shards" / d.stage / d.config_id, ignore_errors=True)
