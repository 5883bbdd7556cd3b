"""Strict CSV/TSV reading (sinkd.distill.tables, data.parse_table / load_table).

A broken table must fail with a ValueError naming the file and the line (or the column), never
be read into merged texts or shifted columns; a valid RFC 4180 table reads to exactly the texts
written by hand here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sinkd.distill.data import load_table, parse_table
from sinkd.distill.tables import label_codes, read_table

GOOD = [(f"a fine film number {i}", i % 2) for i in range(20)]


def _table(rows: list[tuple[str, int]], header: str = "text,label") -> str:
    return header + "\n" + "".join(f"{t},{y}\n" for t, y in rows)


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_unbalanced_quote_that_merges_rows_is_an_error_naming_the_line(tmp_path):
    """A quote opened on line 2 and closed on line 4 would merge three rows into one text: the
    error names the file and the lines instead."""
    text = ('text,label\n"a great film,1\na dull film,0\nanother film",1\n'
            + "".join(f"{t},{y}\n" for t, y in GOOD))
    path = _write(tmp_path / "broken.csv", text)
    with pytest.raises(ValueError, match=r"broken\.csv: line 2: a quoted field runs over "
                                         r"lines 2-4 \(an unbalanced quote\?\)"):
        load_table(path)


def test_quote_never_closed_is_an_error_naming_its_line(tmp_path):
    """A quote opened on line 4 and never closed: the error names line 4."""
    text = _table(GOOD[:2]) + '"a third film,1\n' + _table(GOOD[2:], header="")[1:]
    with pytest.raises(ValueError, match=r"open\.csv: line 4: a quote opened on this line is "
                                         r"never closed"):
        parse_table(text.encode(), "open.csv")


@pytest.mark.parametrize("bad_row, line, fields", [
    ("a good film,1,more", 5, 3),  # an extra field: it would shift the columns
    ("a good film", 5, 1),  # a missing field
])
def test_wrong_field_count_names_the_line(bad_row, line, fields):
    """Every row must have the header's number of fields; a blank line still counts as a line."""
    text = "text,label\nx,1\n\ny,0\n" + bad_row + "\n" + _table(GOOD, header="")[1:]
    with pytest.raises(ValueError, match=rf"t\.csv: line {line} has {fields} comma-separated "
                                         rf"fields, expected 2"):
        parse_table(text.encode(), "t.csv")


def test_text_after_a_closing_quote_is_an_error():
    """``"good" film`` is not RFC 4180 (an inner quote must be doubled): named with its line."""
    text = 'text,label\n"good" film,1\nbad,0\n'
    with pytest.raises(ValueError, match=r"q\.csv: line 2: .*must be doubled"):
        parse_table(text.encode(), "q.csv")


def test_rfc4180_quoting_reads_exactly():
    """Quoted commas, doubled quotes and tabs in a CSV read to the texts written by hand."""
    rows = ['"a ""quoted"" word, with a comma",1', 'plain\ttab text,0'] * 10
    splits = parse_table(("text,label\n" + "\n".join(rows) + "\n").encode(), "ok.csv")
    texts = {t: y for d in (splits.train, splits.dev, splits.test)
             for t, y in zip(d.texts, d.labels, strict=True)}
    assert texts == {'a "quoted" word, with a comma': 1, "plain\ttab text": 0}
    assert len(splits.train) + len(splits.dev) + len(splits.test) == 20


def test_labels_beyond_int64_name_the_column():
    """An integer label outside [-2**63, 2**63 - 1] is a ValueError naming the label column and
    the row; the two int64 extremes themselves are valid labels, in numeric order."""
    text = _table([("a", 0), ("b", 2**63), ("c", 1)] * 10)
    with pytest.raises(ValueError, match=r"label column 'label' has integer labels outside the "
                                         r"int64 range .* data rows \[2, 5, 8, 11, 14\] \(of 10\)"):
        parse_table(text.encode(), "big.csv")
    codes, names = label_codes([str(2**63 - 1), str(-(2**63)), "7"], "y")
    assert names == (str(-(2**63)), "7", str(2**63 - 1)) and codes == [2, 0, 1]


def test_not_utf8_names_the_line():
    """Latin-1 bytes on line 3 are named, with the byte offset."""
    data = b"text,label\ngood,1\n" + "caf\xe9,0\n".encode("latin-1")
    with pytest.raises(ValueError, match=r"l\.csv: line 3 is not UTF-8 text \(byte 21\)"):
        parse_table(data, "l.csv")


def test_repeated_header_names_are_an_error():
    """Two columns called 'text' would make the text column ambiguous."""
    with pytest.raises(ValueError, match=r"line 1: the header repeats the column names \['text'\]"):
        parse_table(b"text,text,label\na,b,1\n", "h.csv")


def test_parse_table_equals_load_table(tmp_path):
    """The bytes of a file parsed under its name give the same splits (and name) as the file."""
    text = _table(GOOD)
    path = _write(tmp_path / "same.csv", text)
    assert parse_table(text.encode(), str(path)) == load_table(path)
    tsv = parse_table(text.replace(",", "\t").encode(), "upload.txt")  # separator sniffed
    assert tsv.train.texts == load_table(path).train.texts
    with pytest.raises(ValueError, match="larger than max_bytes"):
        parse_table(text.encode(), "u.csv", max_bytes=10)
    with pytest.raises(TypeError, match="data must be bytes"):
        parse_table(text, "u.csv")  # type: ignore[arg-type]


def test_read_table_skips_blank_lines_and_keeps_line_numbers():
    """Blank lines are skipped; each row keeps the number of the line it is on."""
    header, rows, lines = read_table("a,b\n\n1,2\n\n\n3,4\n", "x.csv", ",")
    assert header == ["a", "b"] and rows == [["1", "2"], ["3", "4"]] and lines == [3, 6]
