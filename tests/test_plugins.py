"""Plugins: a distribution on sys.path that declares a stage, a corpus reader
and a head through the `emocache.*` entry-point groups is extracted and
trained with by the unmodified commands. Its code is the example of
docs/writing-a-{stage,corpus-reader,head}.md, taken from those pages as they
are, so the documentation cannot drift from what works. One more entry point
is broken: it is named in a warning and the rest still loads."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = ["writing-a-stage.md", "writing-a-corpus-reader.md", "writing-a-head.md"]
ENTRY_POINTS = """\
[emocache.stages]
energy = emo_energy.stage
broken_stage = emo_energy.not_there

[emocache.corpora]
wavfolder = emo_energy.corpus

[emocache.heads]
energy_gru = emo_energy.head
"""


def doc_files() -> dict:
    """Every fenced block of the pages whose first line is `# <path>`: path -> text."""
    out = {}
    for page in DOCS:
        for block in re.findall(r"```(?:python|toml)\n(.*?)```", (REPO / "docs" / page).read_text(), re.S):
            first = block.splitlines()[0]
            if re.fullmatch(r"# [\w/]+\.(py|toml)", first):
                out[first[2:]] = block
    return out


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """(site folder holding the distribution, user manifests folder)."""
    base = tmp_path_factory.mktemp("plugin")
    site, manifests = base / "site", base / "manifests"
    files = doc_files()
    assert {"emo_energy/stage.py", "emo_energy/corpus.py", "emo_energy/head.py",
            "manifests/wavfolder.toml", "manifests/energy_gru.toml"} <= set(files)
    for rel, text in files.items():
        dest = (base if rel.startswith("manifests/") else site) / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text)
    (site / "emo_energy" / "__init__.py").write_text("")
    info = site / "emo_energy-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: emo-energy\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return site, manifests


@pytest.fixture(scope="module")
def wav_folder(demo_root, tmp_path_factory):
    """The demo corpus's 4-class utterances as root/<emotion>/<speaker>_<id>.wav."""
    from pipeline.corpora import read_corpus
    root = tmp_path_factory.mktemp("wavfolder") / "wavs"
    for item in read_corpus("iemocap", demo_root):
        emotion = item.labels.get("emotion")
        if emotion in ("ang", "hap", "sad", "neu") and os.path.exists(item.audio.path):
            (root / emotion).mkdir(parents=True, exist_ok=True)
            shutil.copy(item.audio.path, root / emotion / f"{item.speaker}_{item.id}.wav")
    (root / "neu" / "notes.txt").write_text("not audio")
    return root


def command(plugin, *args):
    site, manifests = plugin
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(REPO)]),
               EMOCACHE_MANIFESTS=str(manifests))
    return subprocess.run([sys.executable, "-c", f"import sys; from {args[0]}.cli import main; "
                           "sys.exit(main(sys.argv[1:]))", *map(str, args[1:])],
                          env=env, capture_output=True, text=True, cwd=site.parent)


def test_plugin_listed_broken_one_named(plugin):
    r = command(plugin, "pipeline", "list")
    assert r.returncode == 0, r.stderr
    assert re.search(r"^\s+energy\s+v1\s+audio\s+Frame energy", r.stdout, re.M)
    assert "wavfolder" in r.stdout.splitlines()[0]
    assert "fbank" in r.stdout                      # the built-in stages are all still there
    assert "broken_stage" in r.stderr and "emo_energy.not_there" in r.stderr
    r = command(plugin, "heads", "list")
    assert r.returncode == 0, r.stderr
    assert "energy_gru" in r.stdout and "tsin" in r.stdout


def test_plugin_extracts_and_trains(plugin, wav_folder, tmp_path):
    cache, run = tmp_path / "cache", tmp_path / "run"
    r = command(plugin, "pipeline", "extract", "--dataset", "wavfolder", "--root", wav_folder,
                "--cache", cache, "--for", "energy_gru", "--preset", "demo", "--scheduler", "sync", "--json")
    assert r.returncode == 0, r.stderr
    tally = json.loads(r.stdout)
    n = sum(1 for _ in wav_folder.glob("*/*.wav"))
    assert tally["stages"]["energy"]["computed"] == n and tally["stages"]["energy"]["failed"] == 0
    assert "notes.txt: not a .wav file" in r.stderr         # the reader's report
    r = command(plugin, "heads", "train", "--model", "energy_gru", "--cache", cache, "--protocol", "kfold",
                "--folds", "2", "--preset", "demo", "--out", run, "--quiet")
    assert r.returncode == 0, r.stderr
    record = json.loads((run / "results.json").read_text())
    assert record["head"] == "energy_gru" and record["classes"] == ["ang", "hap", "sad", "neu"]
    assert len(record["runs"]) == 2 and list(record["features"]) == ["energy"]
    tested = sum(len(r["predictions"]) for r in record["runs"])
    assert tested == n



def test_entry_naming_an_object_and_broken_ones(tmp_path, monkeypatch):
    """An entry may name the object itself (registered under the entry's
    name); one that does not import, one whose name is taken and a module
    that registers nothing are each named in a warning, and the rest loads."""
    from pipeline.registry import PluginWarning, Registry
    (tmp_path / "emo_objects.py").write_text("def reader(root):\n    return []\n\n\ndef other(root):\n    return []\n")
    info = tmp_path / "emo_objects-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: emo-objects\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[emocache.test_objects]\nmine = emo_objects:reader\n"
                                           "gone = emo_objects:not_there\ntaken = emo_objects:other\n"
                                           "quiet = emo_objects\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry("corpus")
    registry.register("taken")(len)
    with pytest.warns(PluginWarning) as caught:
        registry.load_plugins("emocache.test_objects")
    messages = " | ".join(str(w.message) for w in caught)
    assert len(caught) == 3, messages
    assert "'gone' (emo_objects:not_there" in messages and "'quiet' (emo_objects" in messages
    assert "'taken'" in messages and "registered twice" in messages
    assert registry["mine"].__name__ == "reader" and registry["taken"] is len
