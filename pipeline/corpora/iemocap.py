"""IEMOCAP reader (layout and quirks: ../shared/CORPORA.md).

One Item per utterance listed in `Session*/dialog/EmoEvaluation/<dialog>.txt`.
The EmoEvaluation file is the list of record: an utterance missing from the
transcription still becomes an item (text None, with a warning), and
transcription lines that are not utterances (noise and overlap markers, lines
without a time span) are never looked at. Media files are not opened or
stat'ed here: a missing wav is reported per item by the stages that read it.

The utterance video is the dialog AVI (both actors, region None) cut to the
EmoEvaluation span. The corpus does not say which actor sits on which side of
the picture, so the face stage searches each half and keeps both.
"""
from __future__ import annotations

import gc
import os
import re
from bisect import bisect_right
from contextlib import contextmanager

from ..manifest import Item, Media, Word
from . import CORPORA, no_options
from ._text import read_text

# `[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]`
# ([ \t] rather than \s throughout: a match must never run on into the next line.)
_EVAL_HEADER = re.compile(
    r"^\[[ \t]*([\d.]+)[ \t]*-[ \t]*([\d.]+)[ \t]*\][ \t]+(\S+)[ \t]+(\S+)[ \t]+"
    r"\[[ \t]*([\d.]+),[ \t]*([\d.]+),[ \t]*([\d.]+)[ \t]*\]", re.M)

# `Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.`
_TRANSCRIPT_LINE = re.compile(r"^(\S+)[ \t]+\[[ \t]*[\d.]+[ \t]*-[ \t]*[\d.]+[ \t]*\]:[ \t]?(.*?)[ \t\r]*$", re.M)

# Ses05F_script01_1_F011b -> session Ses05, markers F, kind script, speaker F
_NAME = re.compile(r"(Ses\d\d)([FM])_(impro|script)\w*_([FM])\d+[a-z]*$")

_BRACKETED = re.compile(r"\[[^\]]*\]")

# A .wdseg row: SFrm EFrm SegAScr Word. The header and the `Total Score:`
# line do not start with a number, so they never match.
_WDSEG_ROW = re.compile(r"^[ \t]*(\d+)[ \t]+(\d+)[ \t]+-?\d+[ \t]+(\S+)", re.M)
# Aligner markers for sentence start/end and silence: not words.
_WDSEG_MARKERS = frozenset({"<s>", "</s>", "<sil>"})
_FRAMES_PER_SECOND = 100


@CORPORA.register("iemocap")
def read_iemocap(root, **options) -> list:
    no_options("iemocap", options)
    root = os.path.abspath(root)
    sessions = _session_dirs(root)
    items = []
    with _gc_paused():
        for session in sessions:
            for dialog, eval_path in _dialogs(os.path.join(root, session)):
                items.extend(_read_dialog(root, session, dialog, eval_path))
    return items


@contextmanager
def _gc_paused():
    """Reading makes about ten small objects per item and no reference cycles;
    the cyclic collector would scan the growing list over and over for nothing."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _session_dirs(root):
    if not os.path.isdir(root):
        raise ValueError(f"IEMOCAP root {root} is not a folder")
    sessions = sorted(n for n in os.listdir(root)
                      if n.startswith("Session") and os.path.isdir(os.path.join(root, n, "dialog")))
    if not sessions:
        raise ValueError(f"IEMOCAP root {root} has no Session*/dialog folders "
                         "(point --root at IEMOCAP_full_release)")
    return sessions


def _dialogs(session_dir):
    """(dialog name, EmoEvaluation path), skipping the Categorical/… subfolders
    and stray files such as macOS `._` copies."""
    eval_dir = os.path.join(session_dir, "dialog", "EmoEvaluation")
    if not os.path.isdir(eval_dir):
        return []
    with os.scandir(eval_dir) as entries:
        found = [(e.name[:-4], e.path) for e in entries
                 if e.name.startswith("Ses") and e.name.endswith(".txt") and e.is_file()]
    return sorted(found)


def _read_dialog(root, session, dialog, eval_path):
    heads, eval_warnings = _read_evaluation(root, eval_path)
    texts = _read_transcription(root, session, dialog)
    session_dir = os.path.join(root, session)
    video = os.path.join(session_dir, "dialog", "avi", "DivX", dialog + ".avi")
    # Per-item paths by concatenation: os.path.join costs more than the rest of an item.
    wav_prefix = os.path.join(session_dir, "sentences", "wav", dialog, "")
    wdseg_prefix = os.path.join(session_dir, "sentences", "ForcedAlignment", dialog, "")
    items = []
    for i, (start, end, name, code, v, a, d) in enumerate(heads):
        warnings = list(eval_warnings.get(i, ()))
        text, text_warnings = texts(name)
        warnings.extend(text_warnings)
        words, word_warning = _read_wdseg(root, wdseg_prefix + name + ".wdseg")
        if word_warning:
            warnings.append(word_warning)
        parsed = _NAME.match(name)
        if parsed is None:
            warnings.append(f"utterance name {name!r} does not follow SesNNX_<dialog>_<F|M>NNN; "
                            "speaker unknown")
        items.append(Item(
            id=name,
            corpus="iemocap",
            audio=Media(wav_prefix + name + ".wav"),
            video=Media(video, float(start), float(end)),
            text=text,
            text_clean=None if text is None else clean_text(text),
            words=words,
            speaker=parsed and parsed[1] + parsed[4],
            session=parsed and parsed[1],
            labels={"emotion": code, "valence": float(v), "arousal": float(a), "dominance": float(d)},
            extra={"dialog": dialog,
                   "gender_with_markers": parsed and parsed[2],
                   "kind": parsed and parsed[3]},
            warnings=tuple(warnings),
        ))
    return items


def clean_text(text: str) -> str:
    """The transcript without bracketed tokens ([LAUGHTER]), whitespace normalised."""
    return " ".join(_BRACKETED.sub(" ", text).split())


def _read_evaluation(root, path):
    """Utterance header tuples in file order, and {header index: [warning]}."""
    text, problems = read_text(path)
    matches = list(_EVAL_HEADER.finditer(text))
    heads = [m.groups() for m in matches]
    return heads, _warnings_by_block(root, path, text, matches, problems)


def _warnings_by_block(root, path, text, matches, problems):
    """Give each undecodable line's warning to the block it lies in; a line
    before the first block concerns the whole file, so every item gets it."""
    if not problems:
        return {}
    rel = os.path.relpath(path, root)
    head_lines = [text.count("\n", 0, m.start()) + 1 for m in matches]
    out = {}
    for line, problem in problems.items():
        block = bisect_right(head_lines, line) - 1
        owners = [block] if block >= 0 else range(len(matches))
        for i in owners:
            out.setdefault(i, []).append(f"{rel}:{line}: {problem}")
    return out


def _read_transcription(root, session, dialog):
    """A lookup name -> (text or None, [warnings]) for one dialog."""
    path = os.path.join(root, session, "dialog", "transcriptions", dialog + ".txt")
    rel = os.path.relpath(path, root)
    try:
        text, problems = read_text(path)
    except FileNotFoundError:
        missing = [f"transcription file {rel} is missing"]
        return lambda name: (None, missing)
    lines = {m[1]: m[2] for m in _TRANSCRIPT_LINE.finditer(text)}
    notes = _line_warnings(rel, text, problems)

    def lookup(name):
        if name not in lines:
            return None, [f"no line for this utterance in {rel}"]
        return lines[name], notes.get(name, [])
    return lookup


def _line_warnings(rel, text, problems):
    """{utterance name: [warning]} for undecodable transcription lines."""
    if not problems:
        return {}
    all_lines = text.split("\n")
    out = {}
    for number, problem in problems.items():
        m = _TRANSCRIPT_LINE.match(all_lines[number - 1])
        if m:
            out.setdefault(m[1], []).append(f"{rel}:{number}: {problem}")
    return out


def _read_wdseg(root, path):
    """(tuple of Word, warning or None); (None, None) when there is no file.
    Frames are 10 ms and the end frame is inclusive."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode("latin-1")
    except FileNotFoundError:
        return None, None
    words = [Word(token, int(first) / _FRAMES_PER_SECOND, (int(last) + 1) / _FRAMES_PER_SECOND)
             for first, last, token in _WDSEG_ROW.findall(text) if token not in _WDSEG_MARKERS]
    if not words:
        return None, f"{os.path.relpath(path, root)} holds no words"
    return tuple(words), None
