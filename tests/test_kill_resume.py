"""SIGKILL to the whole extract process group mid-run, then a rerun: nothing
lost, nothing committed computed again, the store verifies clean."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline.store import verify
from tests.helpers import SENTENCES, espeak_wav, extract, index_rows, summary

N_ITEMS = 120


def _long_corpus(root):
    root.mkdir()
    parts = []
    for i, text in enumerate(SENTENCES):
        espeak_wav(root / "p.wav", text, pitch=20 + 10 * i)
        y, sr = sf.read(root / "p.wav", dtype="int16")
        parts.append(y)
    clip = np.concatenate(parts * 2)           # ~25 s of speech per item
    rows = ["id,audio"]
    for i in range(N_ITEMS):
        clip[i] ^= 1                             # each file's bytes differ
        sf.write(root / f"u{i:03d}.wav", clip, sr, subtype="PCM_16")
        rows.append(f"u{i:03d},u{i:03d}.wav")
    (root / "corpus.csv").write_text("\n".join(rows) + "\n")
    return root / "corpus.csv"


def _keys_in_complete_shards(cache):
    import h5py
    keys = []
    for path in (Path(cache) / "shards").rglob("*.h5"):
        with h5py.File(path, "r", locking=False) as f:
            keys += [(path.parent.parent.name, k) for k in f["keys"][()]]
    return keys


def test_sigkill_then_resume(tmp_path, capsys):
    corpus = _long_corpus(tmp_path / "corpus")
    cache = tmp_path / "cache"
    exe = Path(sys.executable).with_name("pipeline")
    proc = subprocess.Popen([str(exe), "extract", "--dataset", "table", "--root", str(corpus),
                             "--cache", str(cache), "--stages", "fbank,mfcc", "--workers", "2",
                             "--batch", "2", "--quiet"],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        shards = list((cache / "shards").rglob("*.h5")) if (cache / "shards").exists() else []
        if len(shards) >= 4:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = _keys_in_complete_shards(cache)
    assert 0 < len(done_before) < 2 * N_ITEMS, "the kill should land mid-run"

    capsys.readouterr()
    assert extract(corpus, cache, "--stages", "fbank,mfcc") == 0
    s = summary(capsys.readouterr().out)
    per_stage = {st: sum(1 for d, _ in done_before if d == st) for st in ("fbank", "mfcc")}
    for st in ("fbank", "mfcc"):
        assert s[st]["computed"] == N_ITEMS - per_stage[st]
        assert s[st]["reused"] == per_stage[st]
    rows = index_rows(cache, "SELECT key, COUNT(*) FROM entries GROUP BY key")
    assert len(rows) == 2 * N_ITEMS and all(n == 1 for _, n in rows)
    report = verify(cache)
    assert report["corrupt"] == report["missing"] == report["unindexed"] == []
    assert not list((cache / "shards").rglob("*.tmp-*"))
