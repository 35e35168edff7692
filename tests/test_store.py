"""Shards: layout readable with plain h5py, verification, adoption after a crash."""
import h5py
import pytest

from pipeline.store import Index, verify
from tests.helpers import extract, index_rows, make_table_corpus, run_cli


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    root = tmp_path_factory.mktemp("s")
    corpus = make_table_corpus(root / "corpus", n=3)
    assert extract(corpus, root / "cache", "--stages", "fbank") == 0
    return corpus, root / "cache"


def test_layout_with_plain_h5py(filled):
    _, cache = filled
    shard, row = index_rows(cache, "SELECT shard, row FROM entries WHERE item_id='u1'")[0]
    with h5py.File(cache / shard, "r", locking=False) as f:
        assert f.attrs["stage"] == "fbank"
        items = [s.decode() for s in f["items"][()]]
        g = f["arrays/fbank"]
        assert g.attrs["kind"] == "seq" and list(g.attrs["dims"]) == [80] and g.attrs["rate"] == 100.0
        off = g["offsets"][()]
        assert len(off) == len(items) + 1
        x = g["values"][off[row]:off[row + 1]]
        assert x.shape[1] == 80 and items[row] == "u1"


def test_verify_clean_then_flipped_byte(filled, tmp_path, capsys):
    _, cache = filled
    import shutil
    copy = tmp_path / "cache"
    shutil.copytree(cache, copy)
    assert run_cli("verify", "--cache", copy) == 0
    shard = index_rows(copy, "SELECT shard FROM shards")[0][0]
    path = copy / shard
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    capsys.readouterr()
    assert run_cli("verify", "--cache", copy) == 1
    assert f"corrupt: {path}" in capsys.readouterr().out
    assert run_cli("verify", "--cache", copy, "--fix") == 0
    assert not path.exists()


def test_orphan_shard_is_adopted_not_recomputed(filled, tmp_path, capsys):
    corpus, cache = filled
    import shutil
    copy = tmp_path / "cache"
    shutil.copytree(cache, copy)
    db = Index(copy)
    with db.db:   # as if the run was killed after the rename, before the commit
        db.db.execute("DELETE FROM entries")
        db.db.execute("DELETE FROM shards")
    (copy / "shards" / "fbank").mkdir(exist_ok=True)
    tmp_left = next((copy / "shards" / "fbank").iterdir()) / "x.h5.tmp-host-1"
    tmp_left.write_bytes(b"half written")
    capsys.readouterr()
    assert extract(corpus, copy, "--stages", "fbank") == 0
    out = capsys.readouterr().out
    assert [l.split()[1:3] for l in out.splitlines() if l.startswith("fbank")] == [["0", "3"]]
    assert not tmp_left.exists()
    assert verify(copy)["corrupt"] == []
