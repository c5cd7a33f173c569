"""Datasets in the formats people have: Parquet (pyarrow), a Hugging Face `datasets` folder
(save_to_disk: a Dataset or a DatasetDict) and hf:NAME[:SPLIT] ids (load_dataset), every one
read into the same Dataset as the packaged TSV, and every bad input refused in one line."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
hf = pytest.importorskip("datasets")

from orchestrator.cli import main  # noqa: E402
from orchestrator.config import DataConfig  # noqa: E402
from orchestrator.core.errors import UserError  # noqa: E402
from orchestrator.data.datasets import format_for_other_file, load_dataset  # noqa: E402
from orchestrator.data.readers import detect_table_format  # noqa: E402
from tests.support.cli import one_error_line  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[2] / "orchestrator" / "datasets" / "sms_spam_sample.tsv"
INSTALL = "pip install 'hybrid-quantum-orchestrator[datasets]'"


def sample_rows(n: int = 200) -> tuple[list[str], list[str]]:
    """The packaged sample's first `n` (label, text) rows, as two lists."""
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()[:n]
    labels, texts = zip(*(line.split("\t", 1) for line in lines))
    return list(texts), list(labels)


@pytest.fixture(scope="module")
def tsv() -> Path:
    return SAMPLE


@pytest.fixture(scope="module")
def rows():
    return sample_rows()


@pytest.fixture(scope="module")
def reference(rows, tmp_path_factory):
    """The same 200 rows read from a UCI file: what every other format must give."""
    path = tmp_path_factory.mktemp("uci") / "sample.tsv"
    path.write_text("".join(f"{label}\t{text}\n" for text, label in zip(*rows)), encoding="utf-8")
    return load_dataset(DataConfig(path=str(path), format="uci"))


def write_parquet(path: Path, columns: dict) -> str:
    pq.write_table(pa.table(columns), str(path))
    return str(path)


@pytest.fixture(scope="module")
def parquet_file(rows, tmp_path_factory) -> str:
    texts, labels = rows
    return write_parquet(tmp_path_factory.mktemp("pq") / "sample.parquet",
                         {"id": list(range(len(texts))), "text": texts, "label": labels})


@pytest.fixture(scope="module")
def saved_folders(rows, tmp_path_factory):
    """A saved Dataset, and a saved DatasetDict whose label column is a ClassLabel."""
    texts, labels = rows
    root = tmp_path_factory.mktemp("hf")
    hf.disable_progress_bars()
    plain = hf.Dataset.from_dict({"text": texts, "label": labels})
    plain.save_to_disk(str(root / "plain"))
    features = hf.Features({"sms": hf.Value("string"), "kind": hf.ClassLabel(names=["ham", "spam"])})
    coded = hf.Dataset.from_dict({"sms": texts, "kind": [["ham", "spam"].index(x) for x in labels]},
                                 features=features)
    hf.DatasetDict({"train": coded.select(range(150)), "test": coded.select(range(150, 200))}).save_to_disk(
        str(root / "dict"))
    return root / "plain", root / "dict"


def error_of(**config) -> str:
    with pytest.raises(UserError) as info:
        load_dataset(DataConfig(**config))
    message = str(info.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------------------------- parquet

def test_parquet_reads_the_rows_the_tsv_holds(parquet_file, reference):
    ds = load_dataset(DataConfig(path=parquet_file))           # auto: by the extension
    assert ds.format == "parquet" and ds.source == parquet_file
    assert ds.texts == reference.texts and ds.label_names == reference.label_names == ["ham", "spam"]
    assert ds.labels.tolist() == reference.labels.tolist() and ds.row_numbers == list(range(1, 201))
    assert ds.content_hash() == reference.content_hash()       # the cache key sees rows, not formats


def test_parquet_columns_limit_and_numbers(tmp_path):
    path = write_parquet(tmp_path / "t.parquet", {"review": ["good", "bad", "fine", "meh"], "y": [1, 0, 1, 0]})
    ds = load_dataset(DataConfig(path=path, text_column="review", label_column="y", limit=3))
    assert ds.texts == ["good", "bad", "fine"] and ds.label_names == ["0", "1"] and ds.labels.tolist() == [1, 0, 1]


# ------------------------------------------------------------------------------- hf folders

def test_a_saved_dataset_folder_is_detected_and_read(saved_folders, reference):
    plain, _ = saved_folders
    ds = load_dataset(DataConfig(path=str(plain)))
    assert ds.format == "hf" and ds.source == str(plain)
    assert ds.content_hash() == reference.content_hash()


def test_a_saved_dataset_dict_gives_train_or_the_split_named(saved_folders, reference):
    _, folder = saved_folders
    train = load_dataset(DataConfig(path=str(folder), text_column="sms", label_column="kind"))
    assert train.texts == reference.texts[:150] and train.label_names == ["ham", "spam"]   # ClassLabel names
    test = load_dataset(DataConfig(path=f"hf:{folder}:test", text_column="sms", label_column="kind"))
    assert test.texts == reference.texts[150:] and test.source == f"hf:{folder}:test"
    assert [test.label_names[i] for i in test.labels] == [reference.label_names[i] for i in reference.labels[150:]]


def test_hf_id_of_a_local_folder_of_data_files_loads_offline(rows, tmp_path, monkeypatch, reference):
    """hf:<folder> of plain data files goes through datasets.load_dataset, with no network."""
    monkeypatch.setattr(hf.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    folder = tmp_path / "files"
    folder.mkdir()
    texts, labels = rows
    write_parquet(folder / "train.parquet", {"text": texts[:120], "label": labels[:120]})
    write_parquet(folder / "test.parquet", {"text": texts[120:], "label": labels[120:]})
    train = load_dataset(DataConfig(path=f"hf:{folder}"))
    assert train.format == "hf" and train.texts == reference.texts[:120]
    test = load_dataset(DataConfig(path=f"hf:{folder}:test"))
    assert test.texts == reference.texts[120:] and test.source == f"hf:{folder}:test"


def test_an_unreachable_hub_id_is_one_line_naming_it():
    message = error_of(path="hf:no-such-org/no-such-dataset:validation")
    assert message.startswith("cannot load dataset hf:no-such-org/no-such-dataset:validation")
    assert "hub cannot be reached or has no such dataset" in message


# ------------------------------------------------------------------------------- detection

def test_auto_detection_by_the_path(tmp_path, parquet_file, saved_folders):
    plain, folder = saved_folders
    assert detect_table_format(parquet_file) == "parquet"
    assert detect_table_format(str(plain)) == detect_table_format(str(folder)) == "hf"
    assert detect_table_format("hf:imdb") == detect_table_format("hf:stanfordnlp/imdb:test") == "hf"
    assert detect_table_format(str(tmp_path)) is None and detect_table_format(str(SAMPLE)) is None


def test_eval_reads_another_file_as_what_it_is():
    assert format_for_other_file("uci", "more.tsv") == "uci"          # the run's text format, as before
    assert format_for_other_file("uci", "more.parquet") == "auto"
    assert format_for_other_file("hf", "more.csv") == "auto"
    assert format_for_other_file("csv", "hf:imdb:test") == "auto"


# ------------------------------------------------------------------------------- bad input

def test_parquet_without_the_named_column(parquet_file):
    message = error_of(path=parquet_file, text_column="body")
    assert message == (f"data file {parquet_file} has no column 'body' (columns: 'id', 'text', 'label'); "
                       f"set data.text_column / data.label_column")


def test_parquet_empty_text_and_unknown_label_name_their_rows(tmp_path):
    path = write_parquet(tmp_path / "e.parquet", {"text": ["a", None, "c", " ", "e"], "label": ["x", "y", "x", "y", "y"]})
    assert error_of(path=path) == (f"data file {path} has 2 empty text(s) on rows 2, 4; "
                                   f"pass --drop-empty to drop them")
    assert load_dataset(DataConfig(path=path, drop_empty=True)).row_numbers == [1, 3, 5]
    path = write_parquet(tmp_path / "u.parquet", {"text": ["a", "b", "c"], "label": ["x", "y", "z"]})
    assert "has label 'z', which is not in data.labels ('x', 'y'), on row 3" in error_of(path=path, labels=["x", "y"])


def test_corrupt_and_missing_parquet_files(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"PAR1 this is not parquet at all")
    assert error_of(path=str(path)).startswith(f"data file {path} is not a readable Parquet file: ")
    missing = str(tmp_path / "missing.parquet")
    assert error_of(path=missing) == f"data file not found: {missing}"


def test_folders_that_are_not_datasets(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "is a directory" in error_of(path=str(empty))
    assert error_of(path=str(empty), format="hf").startswith(f"{empty} is not a Hugging Face datasets folder")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "state.json").write_text("{not json")
    (broken / "dataset_info.json").write_text("{}")
    assert error_of(path=str(broken)).startswith(f"{broken} is not a readable Hugging Face datasets folder: ")


def test_a_dataset_dict_without_the_split_lists_its_splits(saved_folders):
    _, folder = saved_folders
    message = error_of(path=f"hf:{folder}:validation", text_column="sms", label_column="kind")
    assert message == (f"hf:{folder}:validation has no split 'validation' (splits: 'train', 'test'); "
                       f"choose one with hf:<folder>:<split>")
    assert "data.format must be auto or hf, not csv" in error_of(path="hf:imdb", format="csv")


@pytest.mark.parametrize("module, package", [("pyarrow.parquet", "pyarrow"), ("datasets", "datasets")])
def test_a_missing_optional_package_says_what_to_install(monkeypatch, parquet_file, saved_folders, module, package):
    monkeypatch.setitem(sys.modules, module, None)      # `import` of it raises ImportError
    path = parquet_file if package == "pyarrow" else str(saved_folders[0])
    message = error_of(path=path)
    assert f"needs the {package} package, which is not installed: {INSTALL}" in message


# ----------------------------------------------------------------------- the --data flag

def test_the_data_flag_takes_every_format(parquet_file, saved_folders, capsys):
    """`estimate` reads and splits the dataset (no Ray, no encoder): the one --data code path."""
    for data in (parquet_file, str(saved_folders[0])):
        assert main(["estimate", "--json", "--data", data, "--set", "quantum.n_qubits=2",
                     "--set", "quantum.depth=1"]) == 0
        split = json.loads(capsys.readouterr().out)["split"]
        assert sum(split.values()) <= 200 and min(split.values()) > 0
    assert main(["estimate", "--data", "hf:no-such-dataset"]) == 2
    assert "cannot load dataset hf:no-such-dataset" in one_error_line(capsys)
