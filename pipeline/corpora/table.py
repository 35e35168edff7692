"""A user's own corpus as one table (CSV, TSV or JSON Lines).

Columns: `id` and at least one of `audio`/`video` (paths relative to the
table's folder, or absolute); optional `text`, `label`, `speaker`, `session`,
`start`, `end` (seconds, applied to both media), `split`. Any other column is
kept in Item.extra. The label lands in Item.labels["label"].

`root` is the table file, or a folder holding exactly one table. Errors name
the file, the line and the column so a user can fix the row. Lines that are
not UTF-8 are decoded as Windows-1252 and reported in the item's warnings.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os

from ..manifest import Item, Media
from ..registry import Registry
from . import CORPORA
from ._text import read_text

# Format name -> function(path, text) yielding (line number, {column: value}).
TABLE_FORMATS = Registry("table format")
_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}

_MEDIA = ("audio", "video")
_FIELDS = ("id", "text", "label", "speaker", "session", "start", "end", "split") + _MEDIA


class TableError(ValueError):
    """A bad table or row; the message names file, line and column."""


@CORPORA.register("table")
def read_table(root, format=None, **options) -> list:
    if options:
        raise ValueError(f"the table reader takes only `format` (got {', '.join(sorted(options))})")
    path = _table_path(os.path.abspath(root))
    rows = TABLE_FORMATS.get_or_fail(format or _format_of(path))
    text, problems = read_text(path)
    base = os.path.dirname(path)
    items, seen, previous = [], {}, 0
    for line, row in rows(path, text):
        # A quoted CSV field can span lines: the row owns every line since the last row.
        warnings = tuple(f"{path}:{n}: {p}" for n, p in problems.items() if previous < n <= line)
        previous = line
        item = _item(path, base, line, row, warnings)
        if item.id in seen:
            raise TableError(f"{path}:{line}: column 'id': {item.id!r} already used on line {seen[item.id]}")
        seen[item.id] = line
        items.append(item)
    if not items:
        raise TableError(f"{path}: the table has no rows")
    return items


def _table_path(root):
    if os.path.isfile(root):
        return root
    if not os.path.isdir(root):
        raise TableError(f"table {root} does not exist")
    tables = sorted(n for n in os.listdir(root) if os.path.splitext(n)[1].lower() in _SUFFIXES)
    if len(tables) != 1:
        found = ", ".join(tables) or "none"
        raise TableError(f"{root}: expected exactly one table ({'/'.join(_SUFFIXES)}), found {found}")
    return os.path.join(root, tables[0])


def _format_of(path):
    suffix = os.path.splitext(path)[1].lower()
    try:
        return _SUFFIXES[suffix]
    except KeyError:
        raise TableError(f"{path}: cannot tell the table format from {suffix!r}; "
                         f"use one of {', '.join(_SUFFIXES)} or pass format=") from None


def _delimited(delimiter):
    def rows(path, text):
        # strict: a stray quote is an error, not a field that swallows the lines after it
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
        _check_header(path, reader.fieldnames or [])
        start = reader.line_num + 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                raise TableError(f"{path}:{start}: malformed row ({e}; an unbalanced quote?)") from None
            if None in row:
                raise TableError(f"{path}:{reader.line_num}: more fields than the header has columns")
            _check_one_line_fields(path, start, reader.line_num, row)
            yield reader.line_num, row
            start = reader.line_num + 1
    return rows


def _check_one_line_fields(path, start, end, row):
    """Only free text may span lines: an id or a path that does was opened by
    a stray quote that swallowed the lines after it."""
    spanning = [c for c in _FIELDS if c != "text" and "\n" in (row.get(c) or "")]
    if spanning:
        raise TableError(f"{path}:{start}: column {spanning[0]!r}: a quoted field runs on to line {end} "
                         "(an unbalanced quote?)")


TABLE_FORMATS.register("csv")(_delimited(","))
TABLE_FORMATS.register("tsv")(_delimited("\t"))


@TABLE_FORMATS.register("jsonl")
def _json_lines(path, text):
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise TableError(f"{path}:{number}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise TableError(f"{path}:{number}: a line must be a JSON object")
        yield number, row


def _check_header(path, columns):
    if "id" not in columns or not any(m in columns for m in _MEDIA):
        raise TableError(f"{path}: the header needs `id` and `audio` or `video` (has {', '.join(columns) or 'nothing'})")


def _item(path, base, line, row, warnings):
    row = {k: v for k, v in row.items() if v is not None and v != ""}   # empty cell = absent

    def fail(column, problem):
        raise TableError(f"{path}:{line}: column {column!r}: {problem}")

    if "id" not in row:
        fail("id", "missing")
    if not any(m in row for m in _MEDIA):
        fail("audio", "neither `audio` nor `video` is given")
    start, end = (_seconds(row.get(c), c, fail) for c in ("start", "end"))
    if start is not None and end is not None and end <= start:
        fail("end", f"{end} is not after start {start}")
    media = {m: Media(_media_path(base, row[m], m, fail), start, end) for m in _MEDIA if m in row}
    return Item(
        id=str(row["id"]),
        corpus="table",
        text=_string(row.get("text")),
        speaker=_string(row.get("speaker")),
        session=_string(row.get("session")),
        split=_string(row.get("split")),
        labels={"label": row["label"]} if "label" in row else {},
        extra={k: v for k, v in row.items() if k not in _FIELDS},
        warnings=warnings,
        **media,
    )


def _seconds(value, column, fail):
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        fail(column, f"{value!r} is not a number of seconds")
    if not (math.isfinite(seconds) and seconds >= 0):
        fail(column, f"{value!r} is not a time >= 0")
    return seconds


def _media_path(base, value, column, fail):
    if not isinstance(value, str):
        fail(column, f"{value!r} is not a path")
    return os.path.normpath(os.path.join(base, value))


def _string(value):
    return None if value is None else str(value)
