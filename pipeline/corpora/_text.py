"""Reading corpus text files whose encoding is not quite what it claims.

Corpus releases are mostly UTF-8 with a few lines of Windows-1252 bytes (curly
quotes, dashes) pasted in. Decoding must never fail: the bytes of such a line
that are not UTF-8 are decoded as Windows-1252 (the rest of the line stays
UTF-8) and the line is reported, so the reader can attach the problem to the
item the line belongs to.
"""
from __future__ import annotations

import codecs


def read_text(path) -> tuple[str, dict]:
    """The file's text and {line number (1-based): problem} for lines not in UTF-8."""
    with open(path, "rb") as f:
        return decode_text(f.read())


def decode_text(data: bytes) -> tuple[str, dict]:
    try:
        return data.decode("utf-8-sig"), {}     # the fast path: one decode per file
    except UnicodeDecodeError:
        pass
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    parts, problems = [], {}
    for number, raw in enumerate(data.split(b"\n"), start=1):
        line, problem = _decode_line(raw)
        parts.append(line)
        if problem:
            problems[number] = problem
    return "\n".join(parts), problems


def _decode_line(raw: bytes):
    """The line as UTF-8 where it is valid UTF-8; only the byte runs that are
    not are decoded as Windows-1252, so a curly quote pasted into a line that
    also holds real UTF-8 (an accented name) leaves the rest intact."""
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as e:
        bad = raw[e.start:e.start + 1].hex()
        where = f"byte 0x{bad} at column {e.start + 1}"
    return raw.decode("utf-8", errors=_CP1252_RUNS), f"not valid UTF-8 ({where}); decoded as Windows-1252"


def _cp1252_runs(error: UnicodeDecodeError):
    """Codec error handler: the offending bytes as Windows-1252; the five byte
    values cp1252 leaves undefined as Latin-1, which decodes anything."""
    run = error.object[error.start:error.end]
    return "".join(_cp1252_byte(b) for b in run), error.end


def _cp1252_byte(b: int) -> str:
    try:
        return bytes([b]).decode("cp1252")
    except UnicodeDecodeError:
        return chr(b)


_CP1252_RUNS = "emocache-cp1252-runs"
codecs.register_error(_CP1252_RUNS, _cp1252_runs)
