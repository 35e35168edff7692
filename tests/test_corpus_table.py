"""The `table` reader: a user's CSV, TSV or JSON Lines file."""
import json
from pathlib import Path

import pytest

from pipeline.corpora import read_corpus

ROWS = [
    {"id": "u1", "audio": "wav/u1.wav", "text": "hello there", "label": "hap", "speaker": "s1",
     "session": "A", "start": "0.5", "end": "2.25", "split": "train", "mood": "sunny"},
    {"id": "u2", "audio": "wav/u2.wav", "video": "clips/u2.mp4", "label": "sad", "speaker": "s2"},
    {"id": "u3", "video": "/data/elsewhere/u3.avi", "start": "1", "end": ""},
]
COLUMNS = ["id", "audio", "video", "text", "label", "speaker", "session", "start", "end", "split", "mood"]


def write_delimited(path, rows, delimiter, columns=COLUMNS):
    lines = [delimiter.join(columns)]
    lines += [delimiter.join(str(row.get(c, "")) for c in columns) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_jsonl(path, rows, columns=None):
    path.write_text("".join(json.dumps({k: v for k, v in r.items() if v != ""}) + "\n" for r in rows))
    return path


WRITERS = {
    "corpus.csv": lambda p, rows, **kw: write_delimited(p, rows, ",", **kw),
    "corpus.tsv": lambda p, rows, **kw: write_delimited(p, rows, "\t", **kw),
    "corpus.jsonl": write_jsonl,
}


@pytest.fixture(params=sorted(WRITERS))
def table(request, tmp_path):
    return WRITERS[request.param](tmp_path / request.param, ROWS)


def test_rows_become_items(table):
    items = read_corpus("table", table)
    assert [i.id for i in items] == ["u1", "u2", "u3"]
    first, second, third = items
    base = Path(table).parent
    assert first.corpus == "table"
    assert first.audio.path == str(base / "wav" / "u1.wav")
    assert (first.audio.start, first.audio.end) == (0.5, 2.25)
    assert first.video is None
    assert (first.text, first.speaker, first.session, first.split) == ("hello there", "s1", "A", "train")
    assert first.labels == {"label": "hap"}
    assert first.extra == {"mood": "sunny"}
    assert second.video.path == str(base / "clips" / "u2.mp4") and second.audio.start is None
    assert second.text is None and second.extra == {}
    assert third.audio is None and third.video.path == "/data/elsewhere/u3.avi"
    assert (third.video.start, third.video.end) == (1.0, None)


def test_folder_with_one_table(table):
    assert [i.id for i in read_corpus("table", Path(table).parent)] == ["u1", "u2", "u3"]


def test_folder_must_hold_exactly_one_table(tmp_path):
    write_delimited(tmp_path / "a.csv", ROWS, ",")
    write_jsonl(tmp_path / "b.jsonl", ROWS)
    with pytest.raises(ValueError, match="a.csv, b.jsonl"):
        read_corpus("table", tmp_path)


@pytest.mark.parametrize("name", sorted(WRITERS))
@pytest.mark.parametrize("change, message", [
    ({"id": ""}, ":{second}: column 'id': missing"),
    ({"id": "u1"}, ":{second}: column 'id': 'u1' already used on line {first}"),
    ({"start": "soon"}, ":{second}: column 'start': 'soon' is not a number"),
    ({"start": "3", "end": "2"}, ":{second}: column 'end': 2.0 is not after start 3.0"),
    ({"audio": "", "video": ""}, ":{second}: column 'audio': neither"),
])
def test_bad_rows_name_file_line_and_column(tmp_path, name, change, message):
    rows = [ROWS[0], {**ROWS[1], **change}]
    path = WRITERS[name](tmp_path / name, rows)
    header = 0 if name.endswith(".jsonl") else 1       # line numbers are the file's own
    expected = name + message.format(first=header + 1, second=header + 2)
    with pytest.raises(ValueError, match=expected):
        read_corpus("table", path)


def test_header_needs_id_and_a_media_column(tmp_path):
    path = write_delimited(tmp_path / "t.csv", [{"id": "u1", "text": "hi"}], ",", columns=["id", "text"])
    with pytest.raises(ValueError, match="needs `id` and `audio` or `video`"):
        read_corpus("table", path)


def test_format_and_options(tmp_path):
    path = write_delimited(tmp_path / "corpus.txt", ROWS, "\t")
    with pytest.raises(ValueError, match="cannot tell the table format"):
        read_corpus("table", path)
    assert len(read_corpus("table", path, format="tsv")) == 3
    with pytest.raises(ValueError, match="unknown table format 'xls'"):
        read_corpus("table", path, format="xls")


def test_windows_1252_bytes_are_decoded_and_reported(tmp_path):
    path = tmp_path / "corpus.csv"
    path.write_bytes(b"id,audio,text\nu1,a.wav,plain\nu2,b.wav,\x93quoted\x94\n")
    first, second = read_corpus("table", path)
    assert first.warnings == ()
    assert second.text == "\u201cquoted\u201d"
    (warning,) = second.warnings
    assert f"{path}:3:" in warning and "Windows-1252" in warning
