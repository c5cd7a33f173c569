"""Datasets and splits: read labelled texts from a file, check them, split them without leaks.

Loading turns a UCI SMS file (`label<TAB>text`), a CSV/TSV with a header, or JSON lines into a
`Dataset`: texts in file order, integer class labels, and the line each row came from, so every
complaint about the file can point at it. Anything wrong with the file is a `UserError` that
names the problem and the file, raised before anything else happens.

Splitting is stratified by class and seeded. Identical texts are the trap: the SMS collection
repeats 403 of its 5,574 messages, and a plain random split (policy `keep`, what the reference
notebook did) scores the model on messages it was trained on. `merge` (default) keeps only the
first copy of each text; `group` keeps every copy but sends each group of copies to one split.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple

import numpy as np

from orchestrator.core.files import write_bytes_atomically
from orchestrator.config import DataConfig, SplitConfig, default_cache_dir
from orchestrator.core.errors import UserError

FORMATS = ("uci", "csv", "tsv", "jsonl")
TRAIN, VAL, TEST = 0, 1, 2
MAX_LISTED_ROWS = 10


@dataclass(frozen=True)
class NamedDataset:
    url: str
    member: str          # the file inside the downloaded zip
    sha256: str
    format: str


NAMED_DATASETS = {
    "sms_spam": NamedDataset(
        url="https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip",
        member="SMSSpamCollection",
        sha256="7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d",
        format="uci",
    ),
}

# Shipped inside the package (orchestrator/datasets/, see its README): usable with no network.
PACKAGED_DATASETS = {"sms_spam_sample": ("sms_spam_sample.tsv", "uci")}


# eq=False: the generated __eq__ would compare numpy arrays and raise; compare content_hash() instead.
@dataclass(frozen=True, eq=False)
class Dataset:
    texts: list[str]            # in file order (after limit / drop_empty)
    labels: np.ndarray          # int64 class indices, shape (n,)
    label_names: list[str]      # class index -> raw label value as a string
    positive_label: str         # the class F1 is reported for
    source: str                 # absolute path of the file it came from
    row_numbers: list[int]      # 1-based line in the source file where each kept row starts
    dropped_empty: int = 0      # empty texts dropped (drop_empty=True)
    format: str = "uci"         # the format the file was read as (never 'auto')

    def content_hash(self) -> str:
        """sha256 over (text, label name) pairs in order; every string is length-prefixed UTF-8."""
        digest = hashlib.sha256(b"dataset-v1\0")
        for text, label in zip(self.texts, self.labels.tolist()):
            for value in (text, self.label_names[label]):
                encoded = value.encode("utf-8")
                digest.update(len(encoded).to_bytes(8, "big"))
                digest.update(encoded)
        return digest.hexdigest()

    def __len__(self) -> int:
        return len(self.texts)


class Record(NamedTuple):
    line: int     # 1-based line where the record starts
    text: str
    label: str    # stripped


# ----------------------------------------------------------------------------------- loading

def load_dataset(cfg: DataConfig, min_classes: int = 2) -> Dataset:
    """Read and check the dataset `cfg` describes (its file, format, columns, labels, limit).

    Training needs `min_classes=2`; scoring a trained model may take a file of one class."""
    file, fmt = resolve_source(cfg)
    limit, drop_empty = cfg.limit, cfg.drop_empty

    text = read_utf8(file)
    if not text.strip():
        raise UserError(f"data file is empty: {file}")
    if fmt == "auto":
        fmt = detect_format(file, text, cfg)
    records = list(islice(parse_records(text, fmt, cfg, file), limit))
    if not records:
        raise UserError(f"data file {file} holds no rows")

    records, dropped = handle_empty_texts(records, drop_empty, file)
    if not records:
        raise UserError(f"data file {file} has no rows left after dropping {dropped} empty texts")
    check_label_cells(records, file)
    label_names = class_names(records, cfg.labels, file)
    index = {name: i for i, name in enumerate(label_names)}
    labels = np.array([index[r.label] for r in records], dtype=np.int64)
    counts = np.bincount(labels, minlength=len(label_names))
    present = [label_names[i] for i in np.flatnonzero(counts)]
    if len(present) < min_classes:
        raise UserError(f"data file {file} has only one class ({present[0]!r}); "
                        f"a classifier needs at least 2")
    return Dataset(
        texts=[r.text for r in records],
        labels=labels,
        label_names=label_names,
        positive_label=choose_positive_label(label_names, counts, cfg.positive_label, file),
        source=os.path.abspath(file),
        row_numbers=[r.line for r in records],
        dropped_empty=dropped,
        format=fmt,
    )


def resolve_source(cfg: DataConfig) -> tuple[str, str]:
    """The file to read and its format: cfg.path wins over cfg.name."""
    if cfg.path:
        return os.path.expanduser(cfg.path), cfg.format
    if cfg.name in PACKAGED_DATASETS:
        file_name, fmt = PACKAGED_DATASETS[cfg.name]
        return str(Path(__file__).resolve().parent / "datasets" / file_name), fmt
    if cfg.name:
        cache_dir = os.path.join(default_cache_dir(), "datasets")
        file = fetch_named_dataset(cfg.name, cache_dir)
        return str(file), NAMED_DATASETS[cfg.name].format
    raise UserError("no dataset given: pass --data PATH or set data.path or data.name in the config")


def read_utf8(path: str) -> str:
    """The file's text, decoded as UTF-8 (a leading BOM is dropped)."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"data path is a directory, not a file: {path}")
    if not p.is_file():
        raise UserError(f"data file not found: {path}")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read data file {path}: {e.strerror or e}")
    bom = len(raw) - len(raw.removeprefix(b"\xef\xbb\xbf"))
    try:
        return raw[bom:].decode("utf-8")
    except UnicodeDecodeError as e:
        offset = bom + e.start
        line = raw.count(b"\n", 0, offset) + 1
        raise UserError(f"data file {path} is not valid UTF-8: byte 0x{raw[offset]:02x} at byte offset "
                        f"{offset} (line {line}); re-save it as UTF-8")


def detect_format(path: str, text: str, cfg: DataConfig) -> str:
    """The format implied by the extension; a tab-separated file without a header is UCI."""
    suffix = Path(path).suffix.lower()
    by_suffix = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
    if suffix in by_suffix:
        return by_suffix[suffix]
    if suffix in ("", ".txt"):
        first_line = text.split("\n", 1)[0].rstrip("\r")
        if "\t" in first_line:
            header = [cell.strip() for cell in first_line.split("\t")]
            has_header = cfg.text_column in header and cfg.label_column in header
            return "tsv" if has_header else "uci"
    raise UserError(f"cannot tell the format of {path} from its name; set data.format to one of "
                    f"{', '.join(FORMATS)}")


def parse_records(text: str, fmt: str, cfg: DataConfig, path: str) -> Iterator[Record]:
    if fmt == "uci":
        return uci_records(text, path)
    if fmt in ("csv", "tsv"):
        return delimited_records(text, "," if fmt == "csv" else "\t", cfg, path)
    if fmt == "jsonl":
        return jsonl_records(text, cfg, path)
    raise UserError(f"unknown data format {fmt!r} for {path} (use one of auto, {', '.join(FORMATS)})")


def uci_records(text: str, path: str) -> Iterator[Record]:
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


def delimited_records(text: str, delimiter: str, cfg: DataConfig, path: str) -> Iterator[Record]:
    """CSV/TSV with a header row; quoted fields may hold delimiters and newlines."""
    kind = "CSV" if delimiter == "," else "TSV"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
        if not header or not any(cell.strip() for cell in header):
            raise UserError(f"{kind} file {path} has no header row (expected columns "
                            f"{cfg.text_column!r} and {cfg.label_column!r})")
        columns = [cell.strip() for cell in header]
        hint = "; if the file has no header row, use data.format uci" if kind == "TSV" else ""
        text_at = column_position(columns, cfg.text_column, path, hint)
        label_at = column_position(columns, cfg.label_column, path, hint)
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
                                f"header has {len(columns)}: {excerpt(delimiter.join(row))}")
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


def jsonl_records(text: str, cfg: DataConfig, path: str) -> Iterator[Record]:
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
        for key in (cfg.text_column, cfg.label_column):
            if key not in obj:
                raise UserError(f"data file {path} line {number} has no key {key!r} (keys: "
                                f"{', '.join(repr(k) for k in obj)}); set data.text_column / "
                                f"data.label_column")
        yield Record(number, json_cell(obj[cfg.text_column], number, path),
                     json_cell(obj[cfg.label_column], number, path).strip())


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


def handle_empty_texts(records: list[Record], drop_empty: bool, path: str) -> tuple[list[Record], int]:
    """Refuse empty texts, or drop them when asked; returns the kept records and the count dropped."""
    empty = [r.line for r in records if not r.text.strip()]
    if not empty:
        return records, 0
    if not drop_empty:
        raise UserError(f"data file {path} has {len(empty)} empty text(s) on {line_list(empty)}; "
                        f"pass --drop-empty to drop them")
    return [r for r in records if r.text.strip()], len(empty)


def check_label_cells(records: list[Record], path: str) -> None:
    empty = [r.line for r in records if not r.label]
    if empty:
        raise UserError(f"data file {path} has {len(empty)} empty label(s) on {line_list(empty)}")


def class_names(records: list[Record], allowed: list | None, path: str) -> list[str]:
    """Class index -> label: the configured list, or the sorted distinct labels in the file."""
    if allowed is None:
        return sorted({r.label for r in records}, key=label_sort_key)
    names = [str(v).strip() for v in allowed]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UserError(f"data.labels lists {', '.join(map(repr, repeated))} more than once")
    known = set(names)
    for value in sorted({r.label for r in records} - known, key=label_sort_key):
        lines = [r.line for r in records if r.label == value]
        raise UserError(f"data file {path} has label {value!r}, which is not in data.labels "
                        f"({', '.join(map(repr, names))}), on {line_list(lines)}")
    return names


def label_sort_key(label: str) -> tuple:
    """Integer labels sort numerically ('2' before '10'); everything else as text, after them."""
    try:
        return (0, int(label), label)
    except ValueError:
        return (1, 0, label)


def choose_positive_label(names: list[str], counts: np.ndarray, wanted: str | None, path: str) -> str:
    """The configured positive class, else the rarest class present (ties: the last in class order)."""
    if wanted is not None:
        wanted = str(wanted).strip()
        if wanted not in names:
            raise UserError(f"data.positive_label {wanted!r} is not a label of {path} "
                            f"(labels: {', '.join(map(repr, names))})")
        return wanted
    present = np.flatnonzero(counts)
    fewest = counts[present].min()
    return names[int(present[counts[present] == fewest][-1])]


def line_list(lines: list[int]) -> str:
    """'line 4' / 'lines 4, 9, 12' / 'lines 1, ..., 10 and 7 more'."""
    shown = ", ".join(str(n) for n in lines[:MAX_LISTED_ROWS])
    more = len(lines) - MAX_LISTED_ROWS
    word = "line" if len(lines) == 1 else "lines"
    return f"{word} {shown}" + (f" and {more} more" if more > 0 else "")


def excerpt(value: str, width: int = 60) -> str:
    return repr(value if len(value) <= width else value[:width] + "...")


# ---------------------------------------------------------------------------------- splitting

@dataclass(frozen=True, eq=False)
class Split:
    train: np.ndarray           # int64 row indices into the Dataset, sorted ascending
    val: np.ndarray
    test: np.ndarray
    duplicates_merged: int      # rows repeating an earlier text: dropped (merge) or kept with it (group)
    policy: str
    label_conflicts: int = 0    # of those, rows whose label differs from the first copy's

    def describe(self) -> str:
        sizes = f"split {len(self.train)}/{len(self.val)}/{len(self.test)} (train/val/test)"
        if self.policy == "keep":
            return f"{sizes}, duplicate texts treated as independent rows (policy keep)"
        action = "merged" if self.policy == "merge" else "kept with their first copy"
        line = f"{sizes}, {self.duplicates_merged} duplicate rows {action} (policy {self.policy})"
        if self.label_conflicts:
            line += f"; {self.label_conflicts} of them had a different label than their first copy"
        return line


def split_dataset(ds: Dataset, split: SplitConfig, duplicates: str) -> Split:
    """Stratified, seeded train/val/test split of `ds` under a duplicate-text policy (merge, group,
    keep). The fractions and the policy were checked with the config (orchestrator/config.py)."""

    groups = duplicate_groups(ds.texts) if duplicates != "keep" else [[i] for i in range(len(ds))]
    repeats = [row for group in groups for row in group[1:]]
    conflicts = sum(int(ds.labels[row] != ds.labels[group[0]]) for group in groups for row in group[1:])
    if duplicates == "merge":
        groups = [group[:1] for group in groups]

    group_labels = np.array([ds.labels[group[0]] for group in groups], dtype=np.int64)
    group_sizes = np.array([len(group) for group in groups], dtype=np.int64)
    assignment = stratified_assignment(group_labels, group_sizes, split.val, split.test,
                                       np.random.default_rng(split.seed))
    parts = [rows_of(groups, np.flatnonzero(assignment == part)) for part in (TRAIN, VAL, TEST)]
    check_every_class_in_every_split(ds, parts, split)
    return Split(*parts, duplicates_merged=len(repeats), policy=duplicates,
                 label_conflicts=conflicts)


def check_every_class_in_every_split(ds: Dataset, parts: list[np.ndarray], split: SplitConfig) -> None:
    """Refuse a class too rare to be trained, validated and tested: a label on one row (a typo in
    the file, most often) would otherwise become a class of its own, and the positive one."""
    missing = [name for label, name in enumerate(ds.label_names)
               if any(not np.any(ds.labels[rows] == label) for rows in parts if len(rows))]
    if missing:
        counts = ", ".join(f"{name} {int((ds.labels == label).sum())}" for label, name in enumerate(ds.label_names))
        raise UserError(f"label {', '.join(map(repr, missing))} has too few rows to stratify into "
                        f"train/val/test at {1 - split.val - split.test:g}/{split.val:g}/{split.test:g} "
                        f"(rows per label: {counts}); fix those rows, or give the labels to expect with data.labels")



def duplicate_groups(texts: list[str]) -> list[list[int]]:
    """Row indices grouped by identical text, groups ordered by their first row."""
    groups: dict[str, list[int]] = {}
    for row, text in enumerate(texts):
        groups.setdefault(text, []).append(row)
    return list(groups.values())


def stratified_assignment(labels: np.ndarray, sizes: np.ndarray, val: float, test: float,
                          rng: np.random.Generator) -> np.ndarray:
    """TRAIN/VAL/TEST for each unit (a row or a group of rows), stratified by the unit's label.

    Per class the units are shuffled and laid end to end; the first round(rows * test) rows go to
    test, the next round(rows * val) to val, the rest to train. A group goes where its first row
    falls, so with single-row units this is an exact cut, and groups move the cut by at most one
    group.
    """
    assignment = np.full(len(labels), TRAIN, dtype=np.int64)
    for label in np.unique(labels):
        units = rng.permutation(np.flatnonzero(labels == label))
        starts = np.cumsum(sizes[units]) - sizes[units]
        n_rows = int(sizes[units].sum())
        n_test = round(n_rows * test)
        n_val = min(round(n_rows * val), n_rows - n_test)
        assignment[units[starts < n_test + n_val]] = VAL
        assignment[units[starts < n_test]] = TEST
    return assignment


def rows_of(groups: list[list[int]], chosen: Iterable[int]) -> np.ndarray:
    return np.sort(np.array([row for g in chosen for row in groups[g]], dtype=np.int64))


# ----------------------------------------------------------------------------- named datasets

def fetch_named_dataset(name: str, cache_dir: str, url: str | None = None) -> Path:
    """The checked local copy of a named dataset, downloaded into `cache_dir` on first use."""
    spec = NAMED_DATASETS.get(name)
    if spec is None:
        known = sorted([*NAMED_DATASETS, *PACKAGED_DATASETS])
        raise UserError(f"unknown dataset name {name!r} (known: {', '.join(known)})")
    target = Path(cache_dir) / name / spec.member
    if target.is_file() and sha256_of(target.read_bytes()) == spec.sha256:
        return target

    url = url or spec.url
    content = extract_member(download(url, name), spec.member, url)
    actual = sha256_of(content)
    if actual != spec.sha256:
        raise UserError(f"dataset {name} from {url} failed its checksum: sha256 {actual}, "
                        f"expected {spec.sha256}; nothing was saved")
    write_bytes_atomically(target, content)
    return target


def download(url: str, name: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.read()
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise UserError(f"could not download dataset {name} from {url}: {reason}; "
                        f"pass --data with a local copy instead")


def extract_member(archive: bytes, member: str, url: str) -> bytes:
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as zf:
            matches = [n for n in zf.namelist() if n.rsplit("/", 1)[-1] == member]
            if not matches:
                raise UserError(f"the archive from {url} has no file {member!r} "
                                f"(it holds: {', '.join(zf.namelist())})")
            return zf.read(matches[0])
    except zipfile.BadZipFile:
        raise UserError(f"the download from {url} is not a zip archive")


def sha256_of(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()
