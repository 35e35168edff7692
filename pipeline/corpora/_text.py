"""Reading corpus text files whose encoding is not quite what it claims.

Corpus releases are mostly UTF-8 with a few lines of Windows-1252 bytes (curly
quotes, dashes) pasted in. Decoding must never fail: such a line is decoded as
Windows-1252 and reported, so the reader can attach the problem to the item
the line belongs to.
"""
from __future__ import annotations


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
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as e:
        bad = raw[e.start:e.start + 1].hex()
        where = f"byte 0x{bad} at column {e.start + 1}"
    try:
        return raw.decode("cp1252"), f"not valid UTF-8 ({where}); decoded as Windows-1252"
    except UnicodeDecodeError:
        # cp1252 leaves five byte values undefined; latin-1 decodes anything.
        return raw.decode("latin-1"), f"not valid UTF-8 ({where}); decoded as Latin-1"
