"""Data file formats: one reader per format, by name. The config offers exactly these names
(data.format, plus `auto`: detect_format), so adding a format is one reader and its entry in
READERS.

A reader turns a file's text into Records (line, text, label) in file order, naming the file
and the line in one line (a UserError) when something is wrong; loading and checking the rows
is datasets.py's. The table readers (TABLE_FORMATS: parquet, hf) open the path themselves and
are given no text; their Record.line is the 1-based row. Their packages (pyarrow, datasets: the
`datasets` extra) are optional and imported only when such a reader runs.
"""
from __future__ import annotations

import csv
import functools
import importlib
import io
import json
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

from orchestrator.core.errors import UserError

HF_PREFIX = "hf:"     # hf:<name>[:<split>], hf:<folder>[:<split>]: a Hugging Face dataset
DEFAULT_HF_SPLIT = "train"
INSTALL_EXTRA = "pip install 'hybrid-quantum-orchestrator[datasets]'"
# what `Dataset.save_to_disk` leaves in its folder (a Dataset; a DatasetDict)
SAVED_DATASET_FILES = (("state.json", "dataset_info.json"), ("dataset_dict.json",))


class Record(NamedTuple):
    line: int     # 1-based line where the record starts
    text: str
    label: str    # stripped


class Columns(NamedTuple):
    """Which column (csv, tsv) or field (jsonl) holds the text, and which the label."""

    text: str = "text"
    label: str = "label"


def detect_table_format(path: str) -> str | None:
    """parquet or hf when the path alone tells (an hf: id, a saved datasets folder, a .parquet
    file), else None: a text format, told by detect_format from the file's name and text."""
    if path.startswith(HF_PREFIX) or is_saved_dataset(Path(path)):
        return "hf"
    return "parquet" if Path(path).suffix.lower() in (".parquet", ".pq") else None


def is_saved_dataset(folder: Path) -> bool:
    return folder.is_dir() and any(all((folder / name).is_file() for name in names)
                                   for names in SAVED_DATASET_FILES)


def detect_format(path: str, text: str, columns: Columns) -> str:
    """The format implied by the extension; a tab-separated file without a header is UCI."""
    suffix = Path(path).suffix.lower()
    by_suffix = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
                 ".parquet": "parquet", ".pq": "parquet"}
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


def json_cell(value: Any, line: int, path: str, unit: str = "line") -> str:
    """A JSON value as the string a CSV cell would hold: null -> '', 1 -> '1', true -> 'true'."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)
    raise UserError(f"data file {path} {unit} {line}: expected a string or number, "
                    f"not {excerpt(json.dumps(value, default=repr))}")


# --------------------------------------------------------------------- tables: parquet, hf

def parquet_records(text: None, path: str, columns: Columns) -> Iterator[Record]:
    """A Parquet file's two columns, read in batches with pyarrow (the rest is never decoded)."""
    pq = optional_module("pyarrow.parquet", "pyarrow", f"reading the Parquet file {path}")
    if Path(path).is_dir():
        raise UserError(f"data path is a directory, not a Parquet file: {path}")
    if not Path(path).is_file():
        raise UserError(f"data file not found: {path}")
    try:
        table = pq.ParquetFile(path)
        names = list(table.schema_arrow.names)
        for name in (columns.text, columns.label):
            column_position(names, name, path)
        row = 0
        for batch in table.iter_batches(columns=[columns.text, columns.label], batch_size=4096):
            for text_value, label_value in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist()):
                row += 1
                yield Record(row, json_cell(text_value, row, path, "row"),
                             json_cell(label_value, row, path, "row").strip())
    except UserError:
        raise
    except (OSError, ValueError) as problem:   # pyarrow's ArrowInvalid is a ValueError, its IOError an OSError
        raise UserError(f"data file {path} is not a readable Parquet file: {first_line(problem)}") from None
    if row == 0:
        raise UserError(f"Parquet file {path} has no rows")


def split_hf_path(path: str) -> tuple[str, str | None]:
    """'hf:<name or folder>[:<split>]' (or a saved folder) -> (name or folder, split or None)."""
    if not path.startswith(HF_PREFIX):
        return path, None
    target, _, split = path[len(HF_PREFIX):].partition(":")
    if not target:
        raise UserError(f"data path {path!r} names no dataset: use hf:<name>, hf:<name>:<split> or hf:<folder>")
    return target, split or None


def hf_records(text: None, path: str, columns: Columns) -> Iterator[Record]:
    """A Hugging Face dataset: a folder saved with save_to_disk (load_from_disk), a folder of data
    files or a hub id (load_dataset). Class-label columns give their names ('pos'), not 0/1."""
    datasets = optional_module("datasets", "datasets", f"reading the Hugging Face dataset {path}")
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    target, split = split_hf_path(path)
    data = open_hf_dataset(datasets, target, split, path)
    column_position(list(data.column_names), columns.text, path)
    column_position(list(data.column_names), columns.label, path)
    names = class_label_names(data.features[columns.label], datasets)
    row = 0
    for batch in data.select_columns([columns.text, columns.label]).iter(batch_size=1024):
        for text_value, label_value in zip(batch[columns.text], batch[columns.label]):
            row += 1
            if names is not None and isinstance(label_value, int):
                label_value = names[label_value] if 0 <= label_value < len(names) else None
            yield Record(row, json_cell(text_value, row, path, "row"),
                         json_cell(label_value, row, path, "row").strip())
    if row == 0:
        raise UserError(f"Hugging Face dataset {path} has no rows")


def open_hf_dataset(datasets: Any, target: str, split: str | None, path: str) -> Any:
    """One split of the dataset `target` names (`path` as the user gave it, for messages)."""
    folder = Path(target).expanduser()
    if is_saved_dataset(folder):
        try:
            data = datasets.load_from_disk(str(folder))
        except Exception as problem:   # whatever a damaged folder raises
            raise UserError(f"{path} is not a readable Hugging Face datasets folder: {first_line(problem)}") from None
        return pick_split(data, split, path)
    if folder.is_dir() and not path.startswith(HF_PREFIX):
        raise UserError(f"{path} is not a Hugging Face datasets folder (save_to_disk writes state.json "
                        f"or dataset_dict.json there); give hf:{path} to load a folder of data files")
    try:
        return datasets.load_dataset(str(folder) if folder.is_dir() else target, split=split or DEFAULT_HF_SPLIT)
    except Exception as problem:   # offline, unknown, gated, no such split: the loader's own words
        where = "the folder" if folder.is_dir() else "the Hugging Face hub cannot be reached or has no such dataset"
        raise UserError(f"cannot load dataset {path}: {where} ({first_line(problem)})") from None


def pick_split(data: Any, split: str | None, path: str) -> Any:
    """A DatasetDict's split (the named one; else train, or its only split); a Dataset as it is."""
    if not hasattr(data, "keys"):   # a Dataset
        if split is not None:
            raise UserError(f"{path}: the saved dataset has no splits, so it cannot take :{split}")
        return data
    names = list(data.keys())
    wanted = split or (DEFAULT_HF_SPLIT if DEFAULT_HF_SPLIT in names or len(names) != 1 else names[0])
    if wanted not in names:
        raise UserError(f"{path} has no split {wanted!r} (splits: {', '.join(map(repr, names))}); "
                        f"choose one with hf:<folder>:<split>")
    return data[wanted]


def class_label_names(feature: Any, datasets: Any) -> list[str] | None:
    return list(feature.names) if isinstance(feature, datasets.ClassLabel) else None


def optional_module(module: str, package: str, purpose: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"{purpose} needs the {package} package, which is not installed: "
                        f"{INSTALL_EXTRA}") from None


def first_line(problem: BaseException) -> str:
    text = str(problem).strip() or type(problem).__name__
    return text.splitlines()[0]


def excerpt(value: str, width: int = 60) -> str:
    return repr(value if len(value) <= width else value[:width] + "...")


Reader = Callable[[Any, str, Columns], Iterator[Record]]   # (text or None, path, columns) -> records

READERS: dict[str, Reader] = {
    "uci": uci_records,                                                   # label<TAB>text, no header
    "csv": functools.partial(delimited_records, delimiter=","),           # a header row names the columns
    "tsv": functools.partial(delimited_records, delimiter="\t"),
    "jsonl": jsonl_records,                                               # one JSON object per line
    "parquet": parquet_records,                                           # columns named as in csv (pyarrow)
    "hf": hf_records,                     # a save_to_disk folder or hf:<name>[:<split>] (datasets)
}
FORMATS = tuple(READERS)
TABLE_FORMATS = ("parquet", "hf")   # they read the path themselves (text None); Record.line is the row


def read_records(text: str, fmt: str, path: str, columns: Columns) -> Iterator[Record]:
    if fmt not in READERS:
        raise UserError(f"unknown data format {fmt!r} for {path} (use one of auto, {', '.join(READERS)})")
    return READERS[fmt](text, path, columns)
