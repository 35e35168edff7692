"""The cache layer: one locate, read-only reading, integrity on read, a
rebuildable index, and `pipeline gc`."""
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from heads_fake import fake_items, write_fake_cache

from heads.data import Data
from heads.head import Input
from pipeline.api import Cache, NotInCache
from pipeline.shard import ShardError
from tests.helpers import extract, index_rows, make_table_corpus, run_cli, summary

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    """A table corpus extracted with fbank and mfcc, 2 items per shard."""
    base = Path(tempfile.mkdtemp(prefix="emocache-layer-"))
    os.chmod(base, 0o755)               # a non-root user must reach it (read-only test)
    corpus = make_table_corpus(base / "corpus", n=4)
    assert extract(corpus, base / "cache", "--stages", "fbank,mfcc", "--batch", "2") == 0
    yield corpus, base / "cache"
    shutil.rmtree(base, ignore_errors=True)


def copy_of(cache, tmp_path):
    out = tmp_path / "cache"
    shutil.copytree(cache, out)
    return out


def snapshot(folder):
    """Every path under a folder with its size and mtime (folders too)."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in [Path(folder), *Path(folder).rglob("*")]}


def fbank_of(cache, ids=None):
    return {i: f.arrays["fbank"] for i, f in Cache(cache).load("fbank", ids).items()}


# --- one locate --------------------------------------------------------------

def test_locate_says_where_and_why(filled, tmp_path):
    corpus, cache = filled
    found = Cache(cache).locate("fbank")
    assert [loc.state for loc in found.values()] == ["current"] * 4
    assert all(loc.shard.startswith("shards/fbank/") and loc.row in (0, 1) for loc in found.values())
    assert {loc.state for loc in Cache(cache).locate("fbank", items=["u0"], overrides={"fbank": {"n_mels": 40}})
            .values()} == {"missing"}
    c = copy_of(cache, tmp_path)
    gone = found["u0"].shard
    (c / gone).unlink()
    again = Cache(c).locate("fbank")
    assert again["u0"].state == "missing" and "missing" in again["u0"].reason
    with pytest.raises(NotInCache, match="is missing"):
        Cache(c).load("fbank", ["u0"])


# --- read-only reading ---------------------------------------------------------

def test_reading_writes_nothing(filled, tmp_path, capsys):
    corpus, cache = filled
    c = copy_of(cache, tmp_path)
    before = snapshot(c)
    assert run_cli("status", "--cache", c, "--stages", "fbank,mfcc") == 0
    assert run_cli("inspect", "u1", "--stage", "fbank", "--cache", c) == 0
    assert run_cli("verify", "--cache", c) == 0
    fbank_of(c)
    assert snapshot(c) == before


def test_heads_reading_writes_nothing(tmp_path):
    cache = write_fake_cache(tmp_path / "c", fake_items(sessions=2, per_speaker=4), {"mfcc": {"mfcc": ("seq", 4)}})
    before = snapshot(cache)
    data = Data(Cache(cache), None, {"x": Input("mfcc", "mfcc")}, "4class")
    ds = data.subset(data.ids)
    assert all(ds[j]["x"].shape[1] == 4 for j in range(len(ds)))
    assert snapshot(cache) == before


READ_ONLY_SCRIPT = """
import sys
from pathlib import Path
from pipeline.cli import main
cache = sys.argv[1]
try:                                   # the set-up works: this process cannot write there
    Path(cache, "probe").write_text("x")
    raise SystemExit("the cache is writable: the test proves nothing")
except PermissionError:
    pass
for args in (["status", "--cache", cache, "--stages", "fbank"], ["verify", "--cache", cache],
             ["inspect", "u2", "--stage", "fbank", "--cache", cache]):
    code = main(args)
    assert code == 0, (args, code)
from pipeline.api import Cache
assert Cache(cache).load("fbank")["u3"].arrays["fbank"].shape[1] == 80
print("read-only ok")
"""


def test_works_on_a_cache_without_write_bits(filled):
    """On a cache whose files and folders have no write bits, run by a process
    that cannot override file modes (root without its DAC capabilities)."""
    corpus, cache = filled
    c = cache.parent / "readonly-cache"
    shutil.copytree(cache, c)
    for p in [c, *c.rglob("*")]:
        os.chmod(p, 0o555 if p.is_dir() else 0o444)
    command = [sys.executable, "-c", READ_ONLY_SCRIPT, str(c)]
    if os.geteuid() == 0:
        capsh = shutil.which("capsh")
        assert capsh, "capsh (Debian libcap2-bin) is needed to test read-only access as root"
        command = [capsh, "--drop=cap_dac_override,cap_dac_read_search,cap_fowner", "--", "-c",
                   " ".join(f"'{a}'" for a in command)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(command, env=env, cwd=cache.parent, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "read-only ok" in out.stdout


# --- integrity on read ----------------------------------------------------------

def first_fbank_shard(cache):
    return index_rows(cache, "SELECT shard, item_id, row FROM entries WHERE shard LIKE 'shards/fbank/%' "
                             "ORDER BY shard, row")[0]


def test_flipped_data_byte_is_an_error_naming_shard_and_item(filled, tmp_path, capsys):
    corpus, cache = filled
    c = copy_of(cache, tmp_path)
    shard, item, _row = first_fbank_shard(c)
    with h5py.File(c / shard, "r") as f:
        where = f["arrays/fbank/values"].id.get_chunk_info(0).byte_offset
    data = bytearray((c / shard).read_bytes())
    data[where + 100] ^= 0x40
    (c / shard).write_bytes(bytes(data))
    with pytest.raises(ShardError, match=f"item {item}.*verify --fix"):
        fbank_of(c, [item])
    capsys.readouterr()
    assert run_cli("inspect", item, "--stage", "fbank", "--cache", c) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and shard in err and "verify --fix" in err


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_truncated_or_deleted_shard_is_recomputed(filled, tmp_path, capsys, damage):
    corpus, cache = filled
    c = copy_of(cache, tmp_path)
    want = fbank_of(cache)
    shard, item, _row = first_fbank_shard(c)
    if damage == "truncate":
        os.truncate(c / shard, (c / shard).stat().st_size // 2)
    else:
        (c / shard).unlink()
    capsys.readouterr()
    assert run_cli("status", "--cache", c, "--stages", "fbank") == 0
    assert "missing" in capsys.readouterr().out
    assert extract(corpus, c, "--stages", "fbank,mfcc") == 0
    counts = summary(capsys.readouterr().out)
    assert counts["fbank"]["computed"] == 2 and counts["fbank"]["reused"] == 2
    assert counts["mfcc"]["computed"] == 0
    got = fbank_of(c)
    assert all(np.array_equal(want[i], got[i]) for i in want)


def test_changed_index_row_is_caught(filled, tmp_path):
    corpus, cache = filled
    c = copy_of(cache, tmp_path)
    shard, item, row = first_fbank_shard(c)
    with sqlite3.connect(c / "index.sqlite") as db:
        db.execute("UPDATE entries SET row=? WHERE item_id=? AND shard=?", (1 - row, item, shard))
    with pytest.raises(ShardError, match="does not hold key.*--rebuild-index"):
        fbank_of(c, [item])


def test_zeroed_index_header_then_rebuild_gives_identical_reads(filled, tmp_path, capsys):
    corpus, cache = filled
    c = copy_of(cache, tmp_path)
    want = fbank_of(c)
    db = bytearray((c / "index.sqlite").read_bytes())
    db[:100] = bytes(100)
    (c / "index.sqlite").write_bytes(bytes(db))
    capsys.readouterr()
    for command in (["status", "--cache", c, "--stages", "fbank"], ["verify", "--cache", c],
                    ["inspect", "u0", "--stage", "fbank", "--cache", c]):
        assert run_cli(*command) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "verify --rebuild-index" in err[0]
    assert run_cli("verify", "--rebuild-index", "--cache", c) == 0
    got = fbank_of(c)
    assert want.keys() == got.keys() and all(np.array_equal(want[i], got[i]) for i in want)
    assert extract(corpus, c, "--stages", "fbank,mfcc") == 0
    assert summary(capsys.readouterr().out)["fbank"]["computed"] == 0


def test_random_bytes_in_the_index_fail_verify(filled, tmp_path, capsys):
    _, cache = filled
    c = copy_of(cache, tmp_path)
    db = bytearray((c / "index.sqlite").read_bytes())
    rng = np.random.default_rng(0)
    for page in range(1, len(db) // 4096):          # every page but the header's
        db[page * 4096 + 8: page * 4096 + 40] = rng.bytes(32)
    (c / "index.sqlite").write_bytes(bytes(db))
    capsys.readouterr()
    assert run_cli("verify", "--cache", c) == 1
    out = capsys.readouterr()
    assert "problem: index" in out.out or "verify --rebuild-index" in out.err


# --- gc --------------------------------------------------------------------------

def test_gc_dry_run_then_delete_then_reextract(filled, tmp_path, capsys):
    corpus, cache = filled
    c = copy_of(cache, tmp_path)
    fbank_dir = Path(index_rows(c, "SELECT shard FROM shards WHERE shard LIKE 'shards/fbank/%'")[0][0]).parent
    capsys.readouterr()
    assert run_cli("gc", "--cache", c) == 2                            # nothing said to keep: refused
    err = capsys.readouterr().err
    assert "say what to keep" in err
    assert run_cli("gc", "--cache", c, "--keep", "mfcc") == 0
    out = capsys.readouterr().out
    assert "would remove fbank" in out and "dry run" in out and (c / fbank_dir).exists()
    assert run_cli("gc", "--cache", c, "--keep", "mfcc", "--yes") == 0
    assert not (c / fbank_dir).exists() and run_cli("verify", "--cache", c) == 0
    assert not index_rows(c, "SELECT * FROM entries WHERE shard LIKE 'shards/fbank/%'")
    capsys.readouterr()
    assert extract(corpus, c, "--stages", "fbank,mfcc") == 0
    counts = summary(capsys.readouterr().out)
    assert counts["fbank"]["computed"] == 4 and counts["mfcc"]["computed"] == 0


def test_gc_killed_between_index_and_files_is_clean_and_finishes(filled, tmp_path, capsys):
    from pipeline.gc import collect
    from pipeline.store import Index
    _, cache = filled
    c = copy_of(cache, tmp_path)
    index = Index(c)
    doomed = collect(index, keep=set(), older_than_days=None)
    index.drop_configs([d.config_id for d in doomed])      # killed here: the folders are still there
    assert run_cli("verify", "--cache", c) == 0
    assert run_cli("gc", "--cache", c, "--older-than", "0", "--yes") == 0
    assert not list((c / "shards").glob("*/*/*.h5"))
    assert run_cli("verify", "--cache", c) == 0


def test_gc_older_than_keeps_recent_work(filled, tmp_path, capsys):
    _, cache = filled
    c = copy_of(cache, tmp_path)
    capsys.readouterr()
    assert run_cli("gc", "--cache", c, "--older-than", "1", "--yes") == 0
    assert "removed 0 configuration(s)" in capsys.readouterr().out
