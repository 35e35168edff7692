"""What every text stage agrees on: the word segmentation of a transcript,
matching it to aligner word times, and the identity of model/vector files.

Word segmentation (the `words` stage's word sequence; `bert`, `phonemes` and
`glove` use the same boundaries):

1. Bracketed tokens (`[LAUGHTER]`, `[BREATHING]`) are not words; they
   separate words like a space.
2. Each character is folded to ASCII one for one: curly apostrophes and
   modifier-letter apostrophes become `'`, Unicode dashes become `-`, letters
   with accents lose them (`café` -> `cafe`). A character that has no
   one-letter ASCII form (`你`, `ß`, emoji) becomes a separator and is
   counted as dropped. Folding keeps the string's length, so a word's
   character span in the folded text is its span in the original text.
3. A word is a run of ASCII letters and digits, with single inner
   apostrophes or hyphens joining runs (`don't`, `co-operate`,
   `rock'n'roll`) and decimal points between digits (`3.5`). Other
   punctuation separates words and is dropped. Leading/trailing
   apostrophes and hyphens are not part of the word.
4. Words are lower-cased.

The surface text a word came from is kept as its (start, end) character span
so token-level models (BERT) can map their sub-word tokens to words.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

_BRACKETED = re.compile(r"\[[^\]]*\]")
_WORD = re.compile(r"[A-Za-z0-9]+(?:(?:['\-]|(?<=[0-9])\.(?=[0-9]))[A-Za-z0-9]+)*")
_APOSTROPHES = "\u2018\u2019\u201b\u02bc\u02b9\u2032\u00b4\u0060"
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212"
_SEPARATOR = " "


@dataclass(frozen=True)
class Segmented:
    """The words of one text: normalised forms and their character spans."""
    words: tuple          # lower-case normalised words
    spans: tuple          # (start, end) character offsets into the original text
    dropped: int          # letters/digits dropped because they have no ASCII form
    bracketed: int        # bracketed tokens skipped


@lru_cache(maxsize=4096)
def _fold_char(c: str) -> str:
    """One ASCII character for `c` (or the separator)."""
    if c.isascii():
        return c
    if c in _APOSTROPHES:
        return "'"
    if c in _DASHES:
        return "-"
    base = "".join(ch for ch in unicodedata.normalize("NFKD", c) if not unicodedata.combining(ch))
    if len(base) == 1 and base.isascii():
        return base
    return _SEPARATOR


def fold(text: str) -> tuple[str, int]:
    """`text` folded to ASCII character for character, and how many letters or
    digits had to be dropped (became separators)."""
    out, dropped = [], 0
    for c in text:
        f = _fold_char(c)
        if f == _SEPARATOR and not c.isascii() and c.isalnum():
            dropped += 1
        out.append(f)
    return "".join(out), dropped


def segment(text: str | None) -> Segmented:
    """The words of `text` by the rules in this module's docstring."""
    if not text:
        return Segmented((), (), 0, 0)
    bracketed = 0

    def blank(m):
        nonlocal bracketed
        bracketed += 1
        return _SEPARATOR * len(m.group())
    folded, dropped = fold(_BRACKETED.sub(blank, text))
    matches = list(_WORD.finditer(folded))
    return Segmented(tuple(m.group().lower() for m in matches),
                     tuple(m.span() for m in matches), dropped, bracketed)


def empty_reason(text: str | None, seg: Segmented) -> str | None:
    """Why an item has no words (None when it has some): the per-item flag
    every text stage records in its meta as `empty`."""
    if seg.words:
        return None
    if text is None:
        return "no transcript"
    if not text.strip():
        return "empty transcript"
    if seg.dropped:
        return "no ASCII-foldable words (non-ASCII text)"
    if seg.bracketed and not _BRACKETED.sub(" ", text).strip(" \t.,;:!?-'\""):
        return "only bracketed tokens"
    return "no words (punctuation only)"


def item_text(item, source: str = "raw") -> str | None:
    """The transcript a stage works on: `raw` (as the corpus has it) or
    `clean` (bracketed tokens removed; made from the raw text when the
    corpus reader gives no cleaned text). Both give the same words."""
    if source == "raw" or item.text_clean is not None:
        return item.text if source == "raw" else item.text_clean
    return None if item.text is None else " ".join(_BRACKETED.sub(" ", item.text).split())


# --- matching transcript words to aligner words ------------------------------

_VARIANT = re.compile(r"\(\d+\)$")            # WHAT(2): the aligner's pronunciation variant
_NOT_A_WORD = re.compile(r"^(<.*>|\+\+.*\+\+|\+.*\+|\[.*\])$")   # <sil>, ++BREATH++, [NOISE]


def aligner_key(word: str) -> str:
    """An aligner word reduced to the form transcript words are compared in
    ('' for markers such as <sil>)."""
    w = _VARIANT.sub("", word.strip())
    if not w or _NOT_A_WORD.match(w):
        return ""
    return match_key(w)


def match_key(word: str) -> str:
    """Compare words on folded letters and digits only: `don't` == `DONT`."""
    return re.sub(r"[^a-z0-9]", "", fold(word)[0].lower())


@dataclass
class Matched:
    start: list           # seconds per transcript word (nan: no time)
    end: list
    extra: int            # aligner words no transcript word took


def match_times(words, aligned) -> Matched:
    """Give each transcript word the time of the aligner word(s) it matches.

    `aligned` are (word, start, end) in time order. Equal words are paired by
    a longest-common-subsequence diff; inside a differing stretch, a
    transcript word may equal several consecutive aligner words joined
    (`co-operate` = CO + OPERATE) or several transcript words one aligner word
    (`all right` = ALRIGHT, they share its time). Words the aligner dropped
    get no time (nan).
    """
    from difflib import SequenceMatcher
    nan = float("nan")
    aligned = [a for a in aligned if aligner_key(a[0])]
    akeys = [aligner_key(a[0]) for a in aligned]
    tkeys = [match_key(w) for w in words]
    start, end = [nan] * len(words), [nan] * len(words)
    used = [False] * len(aligned)

    def take(ti_range, a0, a1):
        for ti in ti_range:
            start[ti], end[ti] = aligned[a0][1], aligned[a1 - 1][2]
        for a in range(a0, a1):
            used[a] = True

    ops = SequenceMatcher(None, tkeys, akeys, autojunk=False).get_opcodes()
    for tag, t0, t1, a0, a1 in ops:
        if tag == "equal":
            for k in range(t1 - t0):
                take([t0 + k], a0 + k, a0 + k + 1)
        elif tag == "replace":
            _match_stretch(tkeys, akeys, t0, t1, a0, a1, take)
    return Matched(start, end, used.count(False))


def _match_stretch(tkeys, akeys, t0, t1, a0, a1, take):
    """Pair words inside one differing stretch by joined spellings, in order."""
    ti, ai = t0, a0
    while ti < t1 and ai < a1:
        n = _joined_run(akeys, ai, a1, tkeys[ti])
        if n:
            take([ti], ai, ai + n)
            ti, ai = ti + 1, ai + n
            continue
        n = _joined_run(tkeys, ti, t1, akeys[ai])
        if n:
            take(range(ti, ti + n), ai, ai + 1)
            ti, ai = ti + n, ai + 1
            continue
        # No spelling relation: skip whichever side cannot be matched later.
        if tkeys[ti] in akeys[ai + 1:a1]:
            ai += 1
        else:
            ti += 1


def _joined_run(keys, i, stop, target):
    """n >= 1 when keys[i:i+n] joined spell `target`, else 0."""
    joined = ""
    for n in range(1, stop - i + 1):
        joined += keys[i + n - 1]
        if joined == target:
            return n
        if not target.startswith(joined):
            return 0
    return 0


