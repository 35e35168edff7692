"""MELD reader (layout and quirks: ../shared/CORPORA.md).

One Item per row of `train_sent_emo.csv`, `dev_sent_emo.csv` and
`test_sent_emo.csv`, id `<split>_dia<D>_utt<U>` (dialogue and utterance
numbers restart in each split, so the split is part of the id). Audio and
video are both the utterance clip (`dia<D>_utt<U>.mp4` in the split's clip
folder); the clips are already cut, so the media have no span.

The CSVs are UTF-8 with stray Windows-1252 punctuation bytes (curly quotes,
dashes): those bytes are decoded as Windows-1252, the valid UTF-8 around them
is kept, and the row gets a warning naming the line.

A row whose clip is missing from the folder is kept, with a warning, and
listed in the reader's report: its text and labels are still usable by text
heads, and the audio and video stages record the missing file as that
item's failure, so audio and video heads leave it out by name.
"""
from __future__ import annotations

import csv
import io
import os

from ..manifest import Item, Media
from . import CORPORA, Items, no_options
from ._text import read_text

# split -> (label table, clip folder), as in MELD.Raw.
SPLITS = {
    "train": ("train_sent_emo.csv", "train_splits"),
    "dev": ("dev_sent_emo.csv", "dev_splits_complete"),
    "test": ("test_sent_emo.csv", "output_repeated_splits_test"),
}
COLUMNS = ("Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID",
           "Season", "Episode", "StartTime", "EndTime")


@CORPORA.register("meld")
def read_meld(root, **options) -> Items:
    no_options("meld", options)
    root = os.path.abspath(root)
    if not any(os.path.isfile(os.path.join(root, table)) for table, _ in SPLITS.values()):
        raise ValueError(f"MELD root {root} has none of {', '.join(t for t, _ in SPLITS.values())} "
                         "(point --root at MELD.Raw)")
    items, report = [], []
    for split, (table, folder) in SPLITS.items():
        path = os.path.join(root, table)
        if not os.path.isfile(path):
            report.append(f"{table} is missing: no {split} items")
            continue
        clips = _listing(os.path.join(root, folder))
        for item in _read_table(path, split, os.path.join(root, folder), clips):
            items.append(item)
            if any(w.startswith("clip ") for w in item.warnings):
                report.append(f"{item.id}: clip {folder}/{os.path.basename(item.video.path)} is missing; "
                              "kept for its text, the audio and video stages will fail on it")
    return Items(items, report)


def _listing(folder):
    try:
        return frozenset(os.listdir(folder))
    except FileNotFoundError:
        return frozenset()


def _read_table(path, split, folder, clips):
    text, problems = read_text(path)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"{path}: the header lacks {', '.join(missing)}")
    table = os.path.basename(path)
    previous = 1
    for row in reader:
        # A quoted field can span lines: the row owns every line since the previous row.
        line = reader.line_num
        warnings = [f"{table}:{n}: {p}" for n, p in problems.items() if previous < n <= line]
        previous = line
        yield _item(table, line, row, split, folder, clips, warnings)


def _item(table, line, row, split, folder, clips, warnings):
    try:
        dialogue, utterance = int(row["Dialogue_ID"]), int(row["Utterance_ID"])
    except (TypeError, ValueError):
        raise ValueError(f"{table}:{line}: Dialogue_ID {row['Dialogue_ID']!r} / Utterance_ID "
                         f"{row['Utterance_ID']!r} are not integers") from None
    clip = f"dia{dialogue}_utt{utterance}.mp4"
    if clip not in clips:
        warnings.append(f"clip {clip} is missing from {os.path.basename(folder)}")
    path = os.path.join(folder, clip)
    text = row["Utterance"].strip()
    return Item(
        id=f"{split}_dia{dialogue}_utt{utterance}",
        corpus="meld",
        audio=Media(path),
        video=Media(path),
        text=text,
        text_clean=text,
        speaker=row["Speaker"].strip(),
        session=f"{split}_dia{dialogue}",
        labels={"emotion": row["Emotion"].strip().lower(), "sentiment": row["Sentiment"].strip().lower()},
        split=split,
        extra={"sr_no": row["Sr No."].strip(), "season": row["Season"].strip(), "episode": row["Episode"].strip(),
               "start_time": row["StartTime"].strip(), "end_time": row["EndTime"].strip()},
        warnings=tuple(warnings),
    )
