"""Data file formats: one reader per format, by name. The config offers exactly these names
(data.format, plus `auto`: detect_format), so adding a format is one reader and its entry in
READERS.

A reader turns a file's text into Records (line, text, label) in file order, naming the file
and the line in one line (a UserError) when something is wrong; loading and checking the rows
is datasets.py's.
"""
from __future__ import annotations

import csv
import functools
import io
import json
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

from orchestrator.core.errors import UserError


class Record(NamedTuple):
    line: int     # 1-based line where the record starts
    text: str
    label: str    # stripped


class Columns(NamedTuple):
    """Which column (csv, tsv) or field (jsonl) holds the text, and which the label."""

    text: str = "text"
    label: str = "label"


def detect_format(path: str, text: str, columns: Columns) -> str:
    """The format implied by the extension; a tab-separated file without a header is UCI."""
    suffix = Path(path).suffix.lower()
    by_suffix = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
    if suffix in by_suffix:
        return by_suffix[suffix]
    if suffix in ("", ".txt"):
        first_line = text.split("\n", 1)[0].rstrip("\r")
        if "\t" in first_line:
            header = [cell.strip() for cell in first_line.split("\t")]
            has_header = columns.text in header and columns.label in header
            return "tsv" if has_header else "uci"
    raise UserError(f"cannot tell the format of {path} from its name; set data.format to one of "
                    f"{', '.join(READERS)}")


def uci_records(text: str, path: str, columns: Columns) -> Iterator[Record]:
    """`label<TAB>text` per line, no header; blank lines at the end of the file are ignored."""
    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    for number, line in enumerate(lines, start=1):
        line = line.rstrip("\r")
        label, tab, body = line.partition("\t")
        if not tab:
            raise UserError(f"data file {path} line {number} has no TAB between label and text "
                            f"(UCI format is label<TAB>text): {excerpt(line)}")
        yield Record(number, body, label.strip())


def delimited_records(text: str, path: str, columns: Columns, delimiter: str) -> Iterator[Record]:
    """CSV/TSV with a header row; quoted fields may hold delimiters and newlines."""
    kind = "CSV" if delimiter == "," else "TSV"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
        if not header or not any(cell.strip() for cell in header):
            raise UserError(f"{kind} file {path} has no header row (expected columns "
                            f"{columns.text!r} and {columns.label!r})")
        names = [cell.strip() for cell in header]
        hint = "; if the file has no header row, use data.format uci" if kind == "TSV" else ""
        text_at = column_position(names, columns.text, path, hint)
        label_at = column_position(names, columns.label, path, hint)
        needed = max(text_at, label_at) + 1
        last_line = reader.line_num
        found_rows = False
        for row in reader:
            start, last_line = last_line + 1, reader.line_num
            if not row:   # a blank line
                continue
            found_rows = True
            if len(row) < needed:
                raise UserError(f"{kind} file {path} line {start} has {len(row)} fields, but the "
                                f"header has {len(names)}: {excerpt(delimiter.join(row))}")
            yield Record(start, row[text_at], row[label_at].strip())
        if not found_rows:
            raise UserError(f"{kind} file {path} has a header but no data rows")
    except csv.Error as e:
        raise UserError(f"{kind} file {path} is malformed near line {reader.line_num}: {e}")


def column_position(columns: list[str], name: str, path: str, hint: str = "") -> int:
    if name not in columns:
        raise UserError(f"data file {path} has no column {name!r} (columns: "
                        f"{', '.join(repr(c) for c in columns)}); set data.text_column / "
                        f"data.label_column{hint}")
    return columns.index(name)


def jsonl_records(text: str, path: str, columns: Columns) -> Iterator[Record]:
    """One JSON object per line; blank lines are skipped."""
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"data file {path} line {number} is not valid JSON: {e.msg} "
                            f"(column {e.colno})")
        if not isinstance(obj, dict):
            raise UserError(f"data file {path} line {number} is not a JSON object: {excerpt(line)}")
        for key in (columns.text, columns.label):
            if key not in obj:
                raise UserError(f"data file {path} line {number} has no key {key!r} (keys: "
                                f"{', '.join(repr(k) for k in obj)}); set data.text_column / "
                                f"data.label_column")
        yield Record(number, json_cell(obj[columns.text], number, path),
                     json_cell(obj[columns.label], number, path).strip())


def json_cell(value: Any, line: int, path: str) -> str:
    """A JSON value as the string a CSV cell would hold: null -> '', 1 -> '1', true -> 'true'."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)
    raise UserError(f"data file {path} line {line}: expected a string or number, "
                    f"not {excerpt(json.dumps(value))}")


def excerpt(value: str, width: int = 60) -> str:
    return repr(value if len(value) <= width else value[:width] + "...")


Reader = Callable[[str, str, Columns], Iterator[Record]]   # (text, path, columns) -> records

READERS: dict[str, Reader] = {
    "uci": uci_records,                                                   # label<TAB>text, no header
    "csv": functools.partial(delimited_records, delimiter=","),           # a header row names the columns
    "tsv": functools.partial(delimited_records, delimiter="\t"),
    "jsonl": jsonl_records,                                               # one JSON object per line
}
FORMATS = tuple(READERS)


def read_records(text: str, fmt: str, path: str, columns: Columns) -> Iterator[Record]:
    if fmt not in READERS:
        raise UserError(f"unknown data format {fmt!r} for {path} (use one of auto, {', '.join(READERS)})")
    return READERS[fmt](text, path, columns)
