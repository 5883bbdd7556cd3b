"""Strict reading of a user's CSV/TSV table: every problem is a ValueError naming file and line.

pandas' reader forgives too much for a training table: an unbalanced quote swallows the rows
after it into one multi-line text, and a row with an extra field shifts its columns, so the
error that finally comes names the wrong problem (or none comes). :func:`read_table` reads the
bytes with the standard ``csv`` module in strict mode and checks what pandas lets through:
UTF-8 text, a header with distinct names, the header's number of fields on every row, no field
spanning lines (the mark of an unbalanced quote: training texts are one line each).
:func:`label_codes` turns a label column into classes ``0 .. C-1``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import PurePath

SEPARATORS = {",": "comma", "\t": "tab", ";": "semicolon"}
MISSING = ("", "nan", "na", "n/a", "null")  # labels that mean "no label"
INT64 = (-(2**63), 2**63 - 1)


def separator(name: str, text: str) -> str:
    """Tab for .tsv, comma for .csv, else the one of tab/comma/semicolon the header uses most.

    >>> separator("a.txt", "text;label\\n")
    ';'
    """
    ext = PurePath(name).suffix.lower()
    if ext in (".csv", ".tsv"):
        return "," if ext == ".csv" else "\t"
    header = text.split("\n", 1)[0]
    return max("\t,;", key=header.count)


def decode(data: bytes, name: str) -> str:
    """``data`` as UTF-8 text (a byte-order mark dropped); ValueError names the file and line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise ValueError(f"{name}: line {line} is not UTF-8 text (byte {e.start}); save the "
                         f"table as UTF-8") from None


def read_table(text: str, name: str, sep: str) -> tuple[list[str], list[list[str]], list[int]]:
    """(header, rows, line of each row) of a delimited table, read strictly.

    Quoting follows RFC 4180 (a field may be quoted, a quote inside it doubled); blank lines
    are skipped. Raises ValueError naming ``name`` and the line for: a quote opened and never
    closed, text after a closing quote, a field spanning lines, a row with another number of
    fields than the header, an empty or repeated header name, a NUL byte.

    >>> read_table('text,label\\n"a, b",1\\n', "t.csv", ",")
    (['text', 'label'], [['a, b', '1']], [2])
    """
    kind = SEPARATORS.get(sep, repr(sep))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, strict=True)
    header: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    start = 1  # the line on which the next record begins
    try:
        for row in reader:
            first, start = start, reader.line_num + 1
            if not row:  # a blank line
                continue
            if reader.line_num > first:
                raise ValueError(f"{name}: line {first}: a quoted field runs over lines {first}-"
                                 f"{reader.line_num} (an unbalanced quote?); each text must be "
                                 f"on one line")
            if header is None:
                header = _check_header(row, name)
            elif len(row) != len(header):
                raise ValueError(f"{name}: line {first} has {len(row)} {kind}-separated fields, "
                                 f"expected {len(header)} as in the header {header}")
            else:
                rows.append(row)
                lines.append(first)
    except csv.Error as e:
        if "unexpected end of data" in str(e):
            raise ValueError(f"{name}: line {start}: a quote opened on this line is never "
                             f"closed (an unbalanced quote)") from None
        raise ValueError(f"{name}: line {reader.line_num}: {e} (a quote inside a quoted field "
                         f"must be doubled)") from None
    if header is None:
        raise ValueError(f"{name}: no header row (the file is blank)")
    return header, rows, lines


def _check_header(row: list[str], name: str) -> list[str]:
    repeated = sorted({c for c in row if row.count(c) > 1})
    if repeated:
        raise ValueError(f"{name}: line 1: the header repeats the column names {repeated}")
    return row


def label_codes(values: Sequence[str], column: str) -> tuple[list[int], tuple[str, ...]]:
    """Labels as 0..C-1 (sorted integers, else sorted strings) and their names.

    Raises ValueError naming ``column`` for empty or NaN labels, integer labels outside int64,
    or fewer than 2 distinct labels.

    >>> label_codes(["10", "-2", "10"], "y")
    ([1, 0, 1], ('-2', '10'))
    """
    raw = [str(v).strip() for v in values]
    missing = [i for i, v in enumerate(raw) if v.lower() in MISSING]
    if missing:
        raise ValueError(f"label column {column!r} has NaN or empty labels in data rows "
                         f"{[i + 1 for i in missing[:5]]} (of {len(missing)})")
    if all(_is_int(v) for v in raw):
        ints = [int(v) for v in raw]
        outside = [i for i, v in enumerate(ints) if not INT64[0] <= v <= INT64[1]]
        if outside:
            raise ValueError(f"label column {column!r} has integer labels outside the int64 "
                             f"range [-2**63, 2**63 - 1] in data rows "
                             f"{[i + 1 for i in outside[:5]]} (of {len(outside)})")
        keys: list = sorted(set(ints))
        names = tuple(str(k) for k in keys)
    else:
        ints, keys = raw, sorted(set(raw))  # type: ignore[assignment]
        names = tuple(keys)
    if len(names) < 2:
        raise ValueError(f"label column {column!r} needs at least 2 distinct labels, got "
                         f"{list(names)}")
    index = {k: i for i, k in enumerate(keys)}
    return [index[k] for k in ints], names


def _is_int(text: str) -> bool:
    body = text[1:] if text[:1] in "+-" else text
    return body.isascii() and body.isdigit()
