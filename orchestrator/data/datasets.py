"""Datasets: a labelled file (or a named dataset) read, checked and hashed into a Dataset.

Loading turns a UCI SMS file (`label<TAB>text`), a CSV/TSV with a header, JSON lines, a
Parquet file or a Hugging Face dataset (a save_to_disk folder, hf:<name>[:<split>]; readers.py)
into a `Dataset`: texts in file order, integer class labels, and the line each row
came from, so every complaint about the file can point at it. Anything wrong with the file is a
`UserError` that names the problem and the file, raised before anything else happens.
"""
from __future__ import annotations

import hashlib
import io
import os
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from orchestrator.config import DataConfig, default_cache_dir
from orchestrator.core.errors import UserError
from orchestrator.core.files import write_bytes_atomically
from orchestrator.data.readers import (HF_PREFIX, TABLE_FORMATS, Columns, Record, detect_format,
                                       detect_table_format, read_records, split_hf_path)

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
    source: str                 # absolute path of the file it came from (hf:<name>[:<split>] as given)
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


# ----------------------------------------------------------------------------------- loading

def load_dataset(cfg: DataConfig, min_classes: int = 2) -> Dataset:
    """Read and check the dataset `cfg` describes (its file, format, columns, labels, limit).

    Training needs `min_classes=2`; scoring a trained model may take a file of one class."""
    file, fmt = resolve_source(cfg)
    limit, drop_empty = cfg.limit, cfg.drop_empty
    columns = Columns(cfg.text_column, cfg.label_column)

    fmt = table_format(file, fmt)
    text = None
    if fmt not in TABLE_FORMATS:   # a text format: the file's text, decoded here
        text = read_utf8(file)
        if not text.strip():
            raise UserError(f"data file is empty: {file}")
        if fmt == "auto":
            fmt = detect_format(file, text, columns)
    records = list(islice(read_records(text, fmt, file, columns), limit))
    if not records:
        raise UserError(f"data file {file} holds no rows")

    unit = "row" if fmt in TABLE_FORMATS else "line"
    records, dropped = handle_empty_texts(records, drop_empty, file, unit)
    if not records:
        raise UserError(f"data file {file} has no rows left after dropping {dropped} empty texts")
    check_label_cells(records, file, unit)
    label_names = class_names(records, cfg.labels, file, unit)
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
        source=absolute_source(file, fmt),
        row_numbers=[r.line for r in records],
        dropped_empty=dropped,
        format=fmt,
    )


def table_format(path: str, fmt: str) -> str:
    """`fmt`, with `auto` made parquet or hf where the path alone tells (detect_table_format); an
    hf: id is read as hf whatever else was asked."""
    told = detect_table_format(path)
    if path.startswith(HF_PREFIX) and fmt not in ("auto", "hf"):
        raise UserError(f"data path {path} is a Hugging Face dataset id; data.format must be auto or hf, not {fmt}")
    return told if fmt == "auto" and told else fmt


def absolute_source(path: str, fmt: str) -> str:
    """Where the rows came from, so that it reads the same from any folder: an absolute path, or
    for hf:<folder>[:<split>] the folder made absolute (a hub id is kept as it is)."""
    if not path.startswith(HF_PREFIX):
        return os.path.abspath(path)
    target, split = split_hf_path(path)
    if Path(target).expanduser().is_dir():
        target = os.path.abspath(Path(target).expanduser())
    return HF_PREFIX + target + (f":{split}" if split else "")


def format_for_other_file(run_format: str, path: str) -> str:
    """The format to read `path` in when a run trained on `run_format` data scores it (eval
    --data): the run's, unless either is a table format (parquet, hf): then what `path` is."""
    if run_format in TABLE_FORMATS or detect_table_format(path) is not None:
        return "auto"
    return run_format


def resolve_source(cfg: DataConfig) -> tuple[str, str]:
    """The file to read and its format: cfg.path wins over cfg.name."""
    if cfg.path:
        path = cfg.path if cfg.path.startswith(HF_PREFIX) else os.path.expanduser(cfg.path)
        return path, cfg.format
    if cfg.name in PACKAGED_DATASETS:
        file_name, fmt = PACKAGED_DATASETS[cfg.name]
        return str(Path(__file__).resolve().parents[1] / "datasets" / file_name), fmt
    if cfg.name:
        cache_dir = os.path.join(default_cache_dir(), "datasets")
        file = fetch_named_dataset(cfg.name, cache_dir)
        return str(file), NAMED_DATASETS[cfg.name].format
    raise UserError("no dataset given: pass --data PATH or set data.path or data.name in the config")


def read_utf8(path: str) -> str:
    """The file's text, decoded as UTF-8 (a leading BOM is dropped)."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"data path is a directory, not a file: {path} (a Hugging Face datasets folder "
                        f"holds state.json or dataset_dict.json, written by save_to_disk)")
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


def handle_empty_texts(records: list[Record], drop_empty: bool, path: str,
                       unit: str = "line") -> tuple[list[Record], int]:
    """Refuse empty texts, or drop them when asked; returns the kept records and the count dropped."""
    empty = [r.line for r in records if not r.text.strip()]
    if not empty:
        return records, 0
    if not drop_empty:
        raise UserError(f"data file {path} has {len(empty)} empty text(s) on {line_list(empty, unit)}; "
                        f"pass --drop-empty to drop them")
    return [r for r in records if r.text.strip()], len(empty)


def check_label_cells(records: list[Record], path: str, unit: str = "line") -> None:
    empty = [r.line for r in records if not r.label]
    if empty:
        raise UserError(f"data file {path} has {len(empty)} empty label(s) on {line_list(empty, unit)}")


def class_names(records: list[Record], allowed: list | None, path: str, unit: str = "line") -> list[str]:
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
                        f"({', '.join(map(repr, names))}), on {line_list(lines, unit)}")
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


def line_list(lines: list[int], unit: str = "line") -> str:
    """'line 4' / 'lines 4, 9, 12' / 'lines 1, ..., 10 and 7 more' (unit 'row': 'row 4', ...)."""
    shown = ", ".join(str(n) for n in lines[:MAX_LISTED_ROWS])
    more = len(lines) - MAX_LISTED_ROWS
    word = unit if len(lines) == 1 else unit + "s"
    return f"{word} {shown}" + (f" and {more} more" if more > 0 else "")


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
