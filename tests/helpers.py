"""Plain helpers shared by tests (fixtures live in conftest.py)."""
from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "I cannot believe you did that again",
    "please leave the door open when you go",
    "we walked along the river until sunset",
    "this is the best day of my whole life",
    "nobody told me the meeting was cancelled",
]


def espeak_wav(path, text, voice="en-us", pitch=50, speed=160):
    subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", str(path), text],
                   check=True, capture_output=True)
    return Path(path)


def make_table_corpus(root, n=4):
    """A table corpus of n espeak-ng utterances (22.05 kHz mono, as espeak writes them)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    lines = ["id,audio,text,label,speaker"]
    for i in range(n):
        text = SENTENCES[i % len(SENTENCES)]
        espeak_wav(root / f"utt{i}.wav", text, pitch=30 + 10 * i)
        lines.append(f"u{i},utt{i}.wav,{text},{'neu' if i % 2 else 'ang'},s{i % 2}")
    (root / "corpus.csv").write_text("\n".join(lines) + "\n")
    return root / "corpus.csv"


def run_cli(*args):
    from pipeline.cli import main
    return main([str(a) for a in args])


def extract(root, cache, *extra, dataset="table"):
    return run_cli("extract", "--dataset", dataset, "--root", root, "--cache", cache,
                   "--scheduler", "sync", "--quiet", *extra)


def fbank_of_every_item(root, cache, dataset, items, capsys) -> dict:
    """Extract fbank from a demo corpus, check every item was computed, and
    return {item id: fbank array} read back through the API."""
    from pipeline.api import Cache

    assert extract(root, cache, "--stages", "fbank", dataset=dataset) == 0
    rows = summary(capsys.readouterr().out)
    assert rows["fbank"]["computed"] == len(items) and rows["fbank"]["failed"] == "0"
    feats = Cache(cache).load("fbank", [i.id for i in items])
    return {i.id: feats[i.id].arrays["fbank"] for i in items}


def summary(capsys_text):
    """Parse the per-stage summary table printed by `pipeline extract`."""
    rows = {}
    lines = capsys_text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("stage") and "computed" in line:
            for row in lines[i + 1:]:
                parts = row.split()
                if len(parts) != 6 or row.startswith(" "):
                    break
                rows[parts[0]] = {"computed": int(parts[1]), "reused": int(parts[2]),
                                  "failed": parts[3], "skipped": int(parts[4])}
    return rows


def index_rows(cache, sql, *params):
    db = sqlite3.connect(Path(cache) / "index.sqlite")
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def word_contexts(*texts):
    """Item contexts whose `words` upstream is the words stage's output, as a shard gives it."""
    from pipeline.context import ItemContext
    from pipeline.manifest import Item
    from pipeline.stages.words import Config as WordsConfig, Words
    out = []
    for i, text in enumerate(texts):
        item = Item(f"u{i}", "test", text=text)
        words = Words(WordsConfig()).compute(ItemContext(item, {}))
        stored = ({k: a.data for k, a in words.arrays.items()}, words.meta)
        out.append(ItemContext(item, {}, {"words": lambda s=stored: s}))
    return out


def demo_corpus_fixtures(layout, folder):
    """Module-scoped fixtures `root`, `truth` and `items` for a reader test:
    the session's small demo corpus of `layout` (conftest's demo_corpus,
    under `folder`), the truth its generator wrote, and what the reader of
    the same name makes of it.
    Use as `root, truth, items = demo_corpus_fixtures("meld", "MELD.Raw")`."""
    import json

    import pytest

    from pipeline.corpora import read_corpus
    from pipeline.demo import TRUTH_FILE

    @pytest.fixture(scope="module")
    def root(demo_corpus):
        return demo_corpus(layout, folder)

    @pytest.fixture(scope="module")
    def truth(root):
        return json.loads((root / TRUTH_FILE).read_text())

    @pytest.fixture(scope="module")
    def items(root):
        return read_corpus(layout, root)

    return root, truth, items


def demo_cache(base, layout, folder, heads, *demo_args) -> Path:
    """Write a full demo corpus of `layout` under base/folder and extract
    `--for heads --preset demo` (heads: "HEAD[,HEAD...]") into base/cache
    (in this process); returns the cache."""
    from pipeline.cli import main as pipeline

    root = Path(base) / folder
    assert pipeline(["demo-corpus", "--layout", layout, "--out", str(root), "--size", "full", *demo_args]) == 0
    cache = Path(base) / "cache"
    assert pipeline(["extract", "--dataset", layout, "--root", str(root), "--cache", str(cache),
                     "--for", heads, "--preset", "demo", "--scheduler", "sync", "--quiet"]) == 0
    return cache


def train_run(cache, out, model, *args, protocol="session", preset="demo") -> dict:
    """`heads train` one head on `cache` into `out`; returns its results.json."""
    import json

    from heads.cli import main as heads

    rc = heads(["train", "--model", model, "--cache", str(cache), "--protocol", protocol, "--preset", preset,
                "--out", str(out), "--quiet", *args])
    assert rc == 0
    return json.loads((Path(out) / "results.json").read_text())
