"""The corpus contract, for every reader in the registry, on a small corpus
in its real layout (the demo generator's, or a table of espeak-ng
utterances): it lists every item once, with its speaker, session and labels
and media files that exist (or a warning saying which is missing); items
survive the manifest; it writes nothing into the corpus; a missing or wrong
root and an unknown option are clear errors before any reading.

The per-corpus modules (test_corpus_*.py) check each layout's quirks against
the truth its generator wrote; this module checks what every reader owes the
pipeline. A new reader joins by being registered, plus one line in CORPUS
and in EMPTY_ROOT_SAYS."""
import json
import re
from pathlib import Path

import pytest

from pipeline import labels
from pipeline.corpora import load_all, read_corpus
from pipeline.demo import TRUTH_FILE
from pipeline.manifest import Item

from tests.helpers import espeak_wav, run_cli, SENTENCES

READERS = sorted(load_all())


def table_corpus(folder: Path) -> list:
    """A CSV corpus of four espeak-ng utterances, two speakers in two sessions;
    returns the ids it lists."""
    folder.mkdir(parents=True)
    lines = ["id,audio,text,label,speaker,session"]
    for i in range(4):
        espeak_wav(folder / f"utt{i}.wav", SENTENCES[i], pitch=30 + 10 * i)
        lines.append(f"u{i},utt{i}.wav,{SENTENCES[i]},{'neu' if i % 2 else 'ang'},s{i % 2},dialog{i // 2}")
    (folder / "corpus.csv").write_text("\n".join(lines) + "\n")
    return [f"u{i}" for i in range(4)]


# reader -> (folder, the demo truth's table of items); table: no demo layout, espeak-ng utterances.
CORPUS = {
    "affwild2": ("Aff-Wild2", "subjects"),
    "iemocap": ("IEMOCAP_full_release", "items"),
    "meld": ("MELD.Raw", "items"),
    "mosei": ("CMU_MOSEI", "items"),
    "table": ("corpus", None),
}


# Words of the error that reading an empty folder gives: what the reader looked for.
EMPTY_ROOT_SAYS = {
    "affwild2": "no Annotations/EXPR_Classification_Challenge folder",
    "iemocap": "no Session*/dialog folders",
    "meld": "none of train_sent_emo.csv, dev_sent_emo.csv, test_sent_emo.csv",
    "mosei": "CMU_MOSEI_Labels.csd is missing",
    "table": "expected exactly one table",
}


@pytest.fixture(scope="module", params=READERS)
def corpus(request, tmp_path_factory):
    """(reader name, root, the ids the corpus was written with, the items read)."""
    name = request.param
    folder, truth_items = CORPUS[name]
    if truth_items is None:
        root = tmp_path_factory.mktemp(name) / folder
        ids = table_corpus(root)
    else:
        root = request.getfixturevalue("demo_corpus")(name, folder)
        ids = sorted(json.loads((root / TRUTH_FILE).read_text())[truth_items])
    return name, root, ids, read_corpus(name, root)


def tree(root):
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(Path(root).rglob("*"))}


def test_every_reader_has_a_corpus_here():
    assert sorted(CORPUS) == sorted(EMPTY_ROOT_SAYS) == READERS


def test_lists_every_item_once(corpus):
    name, _root, ids, items = corpus
    assert isinstance(items, list) and all(isinstance(line, str) for line in getattr(items, "report", ()))
    assert sorted(i.id for i in items) == ids
    assert len({i.id for i in items}) == len(items)
    assert all(isinstance(i, Item) and i.corpus == name and i.id for i in items)


def test_items_have_a_speaker_a_session_and_labels(corpus):
    name, _root, _ids, items = corpus
    for item in items:
        assert isinstance(item.speaker, str) and item.speaker, item.id
        assert isinstance(item.session, str) and item.session, item.id
    for set_name in labels.set_names(name):
        key = labels.label_key(name, set_name)
        assert all(item.labels.get(key) is not None for item in items), (set_name, key)


def test_label_sets_give_their_own_classes(corpus):
    name, _root, _ids, items = corpus
    for set_name in labels.set_names(name):
        key = labels.label_key(name, set_name)
        if labels.kind(name, set_name) == "regression":
            continue
        known = labels.classes(name, set_name, items)
        if isinstance(items[0].labels[key], list):      # per-frame class indices, -1 = not annotated
            frames = {v for item in items for v in item.labels[key]}
            assert frames - {-1} and frames <= set(range(len(known))) | {-1}, (set_name, frames)
            continue
        got = [labels.apply(item, set_name) for item in items]
        assert {c for c in got if c is not None} <= set(known) and any(c is not None for c in got), set_name


def test_media_paths_are_absolute_and_exist_or_are_named_missing(corpus):
    _name, _root, _ids, items = corpus
    for item in items:
        media = [m for m in (item.audio, item.video) if m is not None]
        assert media, f"{item.id}: neither audio nor video"
        for m in media:
            assert Path(m.path).is_absolute(), (item.id, m.path)
            assert Path(m.path).is_file() or any("missing" in w for w in item.warnings), (item.id, m.path)
            assert m.start is None or m.start >= 0, item.id
            assert m.start is None or m.end is None or m.end > m.start, item.id
    assert sum(Path(m.path).is_file() for i in items for m in (i.audio, i.video) if m) > 0


def test_items_survive_the_manifest(corpus):
    for item in corpus[3]:
        assert Item.from_dict(json.loads(item.to_json())) == item


def test_reading_writes_nothing_into_the_corpus(corpus):
    name, root, _ids, _items = corpus
    before = tree(root)
    read_corpus(name, root)
    assert tree(root) == before


@pytest.mark.parametrize("name", READERS)
def test_missing_or_empty_root_is_a_clear_error(name, tmp_path, capsys):
    missing = tmp_path / "nowhere"
    with pytest.raises(ValueError, match=re.escape(str(missing))):
        read_corpus(name, missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=f"{re.escape(str(empty))}.*{re.escape(EMPTY_ROOT_SAYS[name])}"):
        read_corpus(name, empty)
    cache = tmp_path / "cache"
    assert run_cli("extract", "--dataset", name, "--root", missing, "--cache", cache, "--stages", "fbank",
                   "--scheduler", "sync") == 2
    assert f"corpus root {missing} does not exist" in capsys.readouterr().err
    assert not cache.exists() and not missing.exists()      # refused before the cache folder is made


@pytest.mark.parametrize("name", READERS)
def test_unknown_option_is_refused_naming_it_before_reading(name, tmp_path):
    with pytest.raises(ValueError, match=f"the {name} reader takes .*got bogus"):
        read_corpus(name, tmp_path / "nowhere", bogus=1)

