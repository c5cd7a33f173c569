"""orchestrator.data: file formats, checks and their messages, content hash, splits, named datasets."""
from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from orchestrator.config import DataConfig, SplitConfig, load_config
from orchestrator.data.datasets import Dataset, fetch_named_dataset, load_dataset
from orchestrator.data.splits import Split, split_dataset
from orchestrator.core.errors import UserError

SMS_SHA256 = "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d"


def write(tmp_path: Path, name: str, content: str | bytes) -> str:
    path = tmp_path / name
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return str(path)


def load(path: str, **config) -> Dataset:
    return load_dataset(DataConfig(path=path, **config))


def load_error(path: str, **config) -> str:
    with pytest.raises(UserError) as info:
        load(path, **config)
    message = str(info.value)
    assert "\n" not in message
    return message


def make_dataset(texts: list[str], labels: list[str]) -> Dataset:
    names = sorted(set(labels))
    return Dataset(texts=texts, labels=np.array([names.index(x) for x in labels], dtype=np.int64),
                   label_names=names, positive_label=names[-1], source="/x",
                   row_numbers=list(range(1, len(texts) + 1)), dropped_empty=0)


@pytest.fixture(scope="module")
def sms(sms_path) -> Dataset:
    return load(str(sms_path))


@pytest.fixture(scope="module")
def sms_sample(sms_sample_path) -> Dataset:
    return load(str(sms_sample_path))


# ------------------------------------------------------------------------------------ formats

def test_uci_format_keeps_texts_as_written(tmp_path):
    path = write(tmp_path, "sms", "ham\tHello  there \r\n spam \tWIN\tnow!\nham\tok\n\n  \n")
    ds = load(path)
    assert ds.texts == ["Hello  there ", "WIN\tnow!", "ok"]
    assert ds.labels.tolist() == [0, 1, 0] and ds.labels.dtype == np.int64
    assert ds.label_names == ["ham", "spam"]
    assert ds.row_numbers == [1, 2, 3]
    assert ds.source == str(Path(path).resolve()) and len(ds) == 3


def test_uci_line_without_tab_names_the_line(tmp_path):
    path = write(tmp_path, "sms.txt", "ham\tok\nspam\tgo\nthis line has no tab\nham\tfine\n")
    message = load_error(path)
    assert "line 3" in message and "TAB" in message and path in message


def test_csv_with_quoted_newlines_and_commas(tmp_path):
    content = ('id,keyword,location,text,target\n'
               '1,,,"Fire, fire!\nEvacuate now",1\n'
               '2,,"Paris, FR",just a sunny day,0\n'
               '\n'
               '3,flood,,"He said ""hi""",1\n')
    ds = load(write(tmp_path, "train.csv", content), label_column="target")
    assert ds.texts == ["Fire, fire!\nEvacuate now", "just a sunny day", 'He said "hi"']
    assert ds.label_names == ["0", "1"] and ds.labels.tolist() == [1, 0, 1]
    assert ds.row_numbers == [2, 4, 6]   # the line each record starts on


def test_csv_with_bom_and_other_columns(tmp_path):
    content = "\ufeffreview,sentiment\r\nGreat film,positive\r\nDull,negative\r\n"
    ds = load(write(tmp_path, "imdb.csv", content), text_column="review", label_column="sentiment")
    assert ds.texts == ["Great film", "Dull"]
    assert ds.label_names == ["negative", "positive"]


def test_tsv_with_header(tmp_path):
    ds = load(write(tmp_path, "d.tsv", "label\ttext\nham\ta, b\nspam\tc\n"))
    assert ds.texts == ["a, b", "c"] and ds.label_names == ["ham", "spam"]


def test_jsonl_values_become_strings(tmp_path):
    lines = [json.dumps({"text": "one", "label": 1}), "",
             json.dumps({"text": "two", "label": 0, "extra": [1]}),
             json.dumps({"text": "three", "label": 10})]
    ds = load(write(tmp_path, "d.jsonl", "\n".join(lines) + "\n"))
    assert ds.texts == ["one", "two", "three"]
    assert ds.label_names == ["0", "1", "10"]   # integer labels sort numerically
    assert ds.labels.tolist() == [1, 0, 2] and ds.row_numbers == [1, 3, 4]


@pytest.mark.parametrize("name, content, expected", [
    ("a.csv", "text,label\nx,a\ny,b\n", ["x", "y"]),
    ("a.tsv", "text\tlabel\nx\ta\ny\tb\n", ["x", "y"]),
    ("a.ndjson", '{"text": "x", "label": "a"}\n{"text": "y", "label": "b"}\n', ["x", "y"]),
    ("SMSSpamCollection", "a\tx\nb\ty\n", ["x", "y"]),
    ("a.txt", "label\ttext\na\tx\nb\ty\n", ["x", "y"]),    # tab-separated with a header: tsv
    ("b.txt", "a\tx\nb\ty\n", ["x", "y"]),                 # tab-separated without one: uci
])
def test_auto_format(tmp_path, name, content, expected):
    assert load(write(tmp_path, name, content)).texts == expected


def test_auto_format_refuses_unknown_extension(tmp_path):
    message = load_error(write(tmp_path, "data.xlsx", "x"))
    assert "data.format" in message and "data.xlsx" in message


def test_explicit_format_beats_extension(tmp_path):
    ds = load(write(tmp_path, "odd.csv", "a\tx\nb\ty\n"), format="uci")
    assert ds.texts == ["x", "y"]


# ------------------------------------------------------------------------------------- errors

def test_missing_file(tmp_path):
    path = str(tmp_path / "nope.csv")
    assert load_error(path) == f"data file not found: {path}"


def test_directory(tmp_path):
    assert "is a directory" in load_error(str(tmp_path))


def test_invalid_utf8_names_byte_offset(tmp_path):
    path = write(tmp_path, "bad.csv", b"text,label\ncaf\xe9,a\n")
    message = load_error(path)
    assert "not valid UTF-8" in message and "byte offset 14" in message and "line 2" in message


def test_missing_column_lists_columns(tmp_path):
    path = write(tmp_path, "d.csv", "id,body,target\n1,x,0\n")
    message = load_error(path)
    assert "no column 'text'" in message and "'id', 'body', 'target'" in message and path in message


def test_tsv_without_header_hints_at_uci(tmp_path):
    assert "format uci" in load_error(write(tmp_path, "d.tsv", "ham\tx\nspam\ty\n"))


def test_malformed_json_names_line(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"text": "x", "label": "a"}\n{"text": "y", "label": \n')
    message = load_error(path)
    assert "line 2" in message and "not valid JSON" in message


def test_jsonl_missing_key(tmp_path):
    message = load_error(write(tmp_path, "d.jsonl", '{"body": "x", "label": "a"}\n'))
    assert "line 1" in message and "no key 'text'" in message and "'body'" in message


@pytest.mark.parametrize("content, expected", [
    ("", "data file is empty"),
    ("\n\n", "data file is empty"),
    (",\n", "no header row"),
    ("text,label\n", "no data rows"),
])
def test_csv_without_header_or_rows(tmp_path, content, expected):
    assert expected in load_error(write(tmp_path, "d.csv", content))


def test_single_class(tmp_path):
    message = load_error(write(tmp_path, "d.csv", "text,label\nx,a\ny,a\n"))
    assert "only one class" in message and "'a'" in message


def test_empty_label_cell(tmp_path):
    message = load_error(write(tmp_path, "d.csv", "text,label\nx,a\ny, \nz,b\n"))
    assert "empty label" in message and "line 3" in message


def test_label_outside_configured_labels(tmp_path):
    rows = "".join(f"t{i},{'maybe' if i % 2 else 'yes'}\n" for i in range(30))
    path = write(tmp_path, "d.csv", "text,label\nfirst,no\n" + rows)
    message = load_error(path, labels=["no", "yes"])
    assert "'maybe'" in message
    assert "lines 4, 6, 8, 10, 12, 14, 16, 18, 20, 22 and 5 more" in message


def test_configured_labels_set_class_order(tmp_path):
    path = write(tmp_path, "d.csv", "text,label\nx,spam\ny,ham\nz,ham\n")
    ds = load(path, labels=["spam", "ham"])
    assert ds.label_names == ["spam", "ham"] and ds.labels.tolist() == [0, 1, 1]
    assert ds.positive_label == "spam"


def test_positive_label(tmp_path):
    path = write(tmp_path, "d.csv", "text,label\nx,a\ny,b\nz,b\nw,c\n")
    assert load(path).positive_label == "c"   # rarest; a tie with 'a' goes to the last class
    assert load(path, positive_label="b").positive_label == "b"
    message = load_error(path, positive_label="spam")
    assert "'spam'" in message and "'a', 'b', 'c'" in message


def test_empty_texts_refused_then_dropped(tmp_path):
    rows = "".join(f"{'  ' if i % 2 else 'text' + str(i)},{'ab'[i % 2]}\n" for i in range(30))
    path = write(tmp_path, "d.csv", "text,label\nkeep,b\n" + rows)
    message = load_error(path)
    assert "15 empty text" in message and "--drop-empty" in message
    assert "lines 4, 6, 8, 10, 12, 14, 16, 18, 20, 22 and 5 more" in message

    ds = load_dataset(DataConfig(path=path, drop_empty=True))
    assert ds.dropped_empty == 15 and len(ds) == 16
    assert all(t.strip() for t in ds.texts) and ds.row_numbers[:3] == [2, 3, 5]
    assert load(path, drop_empty=True).dropped_empty == 15


def test_limit_takes_first_rows_before_empty_check(tmp_path):
    path = write(tmp_path, "d.csv", "text,label\nx,a\ny,b\nz,a\n,b\n")
    ds = load_dataset(DataConfig(path=path, limit=3))
    assert ds.texts == ["x", "y", "z"] and ds.dropped_empty == 0
    with pytest.raises(UserError, match="data.limit must be at least 1"):
        load_config(overrides=[f"data.path={path}", "data.limit=0"])


def test_neither_path_nor_name():
    with pytest.raises(UserError, match="--data") as info:
        load_dataset(DataConfig(name=None))
    assert "data.name" in str(info.value)


def test_the_default_is_the_packaged_sample_that_needs_no_network():
    ds = load_dataset(DataConfig())
    assert len(ds) == 1000 and ds.label_names == ["ham", "spam"] and int(ds.labels.sum()) == 152
    assert ds.source.endswith("sms_spam_sample.tsv")


def test_path_wins_over_name(tmp_path):
    good = write(tmp_path, "good.csv", "text,label\nx,a\ny,b\n")
    ds = load_dataset(DataConfig(name="sms_spam", path=good))
    assert ds.texts == ["x", "y"]


# ------------------------------------------------------------------------------- content hash

def test_content_hash_tracks_texts_labels_and_order():
    base = make_dataset(["a", "b", "c"], ["x", "y", "x"])
    assert base.content_hash() == make_dataset(["a", "b", "c"], ["x", "y", "x"]).content_hash()
    changed = [make_dataset(["a", "b", "C"], ["x", "y", "x"]),
               make_dataset(["a", "b", "c"], ["x", "y", "y"]),
               make_dataset(["b", "a", "c"], ["y", "x", "x"]),
               make_dataset(["a", "b"], ["x", "y"])]
    hashes = {base.content_hash()} | {d.content_hash() for d in changed}
    assert len(hashes) == 5


def test_content_hash_is_unambiguous():
    assert (make_dataset(["ab", "c"], ["x", "x"]).content_hash()
            != make_dataset(["a", "bc"], ["x", "x"]).content_hash())
    assert (make_dataset(["a", "b"], ["x", "xy"]).content_hash()
            != make_dataset(["ax", "b"], ["", "xy"]).content_hash())


# ------------------------------------------------------------------------------------- SMS file

def test_sms_collection(sms):
    assert len(sms) == 5574
    assert sms.label_names == ["ham", "spam"] and sms.positive_label == "spam"
    assert int((sms.labels == 1).sum()) == 747
    assert sms.dropped_empty == 0 and sms.row_numbers[-1] == 5574
    assert sms.texts[0].startswith("Go until jurong point")


def test_sms_hash_stable_and_label_sensitive(sms_sample, sms_sample_path, tmp_path):
    assert load(str(sms_sample_path)).content_hash() == sms_sample.content_hash()
    lines = Path(sms_sample_path).read_text(encoding="utf-8").split("\n")
    lines[10] = ("spam" if lines[10].startswith("ham") else "ham") + "\t" + lines[10].split("\t", 1)[1]
    altered = load(write(tmp_path, "SMSSpamCollection", "\n".join(lines)))
    assert altered.texts == sms_sample.texts
    assert altered.content_hash() != sms_sample.content_hash()


def test_sms_sample_is_the_collection_s_first_1000_messages(sms_sample):
    assert len(sms_sample) == 1000 and sms_sample.texts[0].startswith("Go until jurong point")
    assert sms_sample.label_names == ["ham", "spam"] and int((sms_sample.labels == 1).sum()) > 100


def test_sms_limit(sms_sample_path):
    ds = load_dataset(DataConfig(path=str(sms_sample_path), limit=100))
    assert len(ds) == 100 and ds.row_numbers == list(range(1, 101))


# --------------------------------------------------------------------------------------- splits

def split_texts(ds: Dataset, split: Split) -> list[set[str]]:
    return [{ds.texts[i] for i in part} for part in (split.train, split.val, split.test)]


@pytest.mark.parametrize("policy", ["merge", "group", "keep"])
def test_split_is_stratified_and_sorted(sms_sample, policy):
    sms = sms_sample
    split = split_dataset(sms, SplitConfig(), policy)
    parts = (split.train, split.val, split.test)
    rows = np.concatenate(parts)
    assert len(np.unique(rows)) == len(rows)   # disjoint
    for part in parts:
        assert part.dtype == np.int64 and np.all(np.diff(part) > 0)
    overall = (sms.labels[rows] == 1).mean()
    for part, fraction in zip(parts, (0.70, 0.15, 0.15)):
        assert abs(len(part) / len(rows) - fraction) < 0.01
        assert abs((sms.labels[part] == 1).mean() - overall) < 0.01


def test_merge_drops_later_copies(sms):
    split = split_dataset(sms, SplitConfig(), "merge")
    assert split.duplicates_merged == 403 and split.label_conflicts == 0
    assert (len(split.train), len(split.val), len(split.test)) == (3619, 776, 776)
    assert split.describe() == "split 3619/776/776 (train/val/test), 403 duplicate rows merged (policy merge)"
    train, val, test = split_texts(sms, split)
    assert not (train & val or train & test or val & test)
    assert len(train) + len(val) + len(test) == 5171


def test_group_keeps_copies_in_one_split(sms):
    split = split_dataset(sms, SplitConfig(), "group")
    assert split.duplicates_merged == 403
    assert len(split.train) + len(split.val) + len(split.test) == 5574
    train, val, test = split_texts(sms, split)
    assert not (train & val or train & test or val & test)
    assert "403 duplicate rows kept with their first copy (policy group)" in split.describe()


def test_keep_leaks_copies_across_splits(sms):
    split = split_dataset(sms, SplitConfig(), "keep")
    assert split.duplicates_merged == 0 and len(split.test) == 836
    train, _, test = split_texts(sms, split)
    assert len(train & test) > 10
    assert "policy keep" in split.describe()


def test_split_is_deterministic(sms_sample):
    a = split_dataset(sms_sample, SplitConfig(seed=7), "merge")
    b = split_dataset(sms_sample, SplitConfig(seed=7), "merge")
    c = split_dataset(sms_sample, SplitConfig(seed=8), "merge")
    assert all(np.array_equal(x, y) for x, y in zip((a.train, a.val, a.test), (b.train, b.val, b.test)))
    assert not np.array_equal(a.test, c.test)


def test_merge_counts_conflicting_labels():
    ds = make_dataset(["a", "b", "a", "c", "a", "d"] * 2, ["x", "y", "y", "x", "x", "y"] * 2)
    split = split_dataset(ds, SplitConfig(train=0.5, val=0.25, test=0.25, seed=1), "merge")
    # 'a' first appears as x; later copies labelled y (rows 2 and 8) are the conflicts
    assert split.duplicates_merged == 8 and split.label_conflicts == 2
    assert "2 of them had a different label" in split.describe()
    kept = np.concatenate((split.train, split.val, split.test))
    assert sorted(kept.tolist()) == [0, 1, 3, 5]   # first copies only


def test_every_class_in_every_split():
    ds = make_dataset([f"t{i}" for i in range(40)], ["a"] * 30 + ["b"] * 10)
    split = split_dataset(ds, SplitConfig(), "merge")
    for part in (split.train, split.val, split.test):
        assert set(ds.labels[part].tolist()) == {0, 1}


def test_unknown_policy():
    with pytest.raises(UserError, match="merge, group, keep"):
        load_config(overrides=["data.duplicates=dedupe"])


# ------------------------------------------------------------------------------ named datasets

def make_zip(path: Path, content: bytes) -> str:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme", "SMS Spam Collection v.1")
        zf.writestr("SMSSpamCollection", content)
    return path.as_uri()


def test_fetch_downloads_checks_and_caches(sms_path, tmp_path):
    url = make_zip(tmp_path / "sms.zip", Path(sms_path).read_bytes())
    cache = tmp_path / "cache"
    target = fetch_named_dataset("sms_spam", str(cache), url=url)
    assert target == cache / "sms_spam" / "SMSSpamCollection"
    assert hashlib.sha256(target.read_bytes()).hexdigest() == SMS_SHA256
    assert [p.name for p in target.parent.iterdir()] == ["SMSSpamCollection"]   # no temp files left
    # cached: a second call does not download (this URL would fail)
    assert fetch_named_dataset("sms_spam", str(cache), url=(tmp_path / "gone.zip").as_uri()) == target


def test_fetch_refuses_altered_file(sms_path, tmp_path):
    url = make_zip(tmp_path / "sms.zip", Path(sms_path).read_bytes().replace(b"ham\t", b"spam\t", 1))
    cache = tmp_path / "cache"
    with pytest.raises(UserError, match="checksum"):
        fetch_named_dataset("sms_spam", str(cache), url=url)
    assert not cache.exists() or not any(cache.rglob("*"))


def test_fetch_failed_download_and_unknown_name(tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(UserError, match="could not download"):
        fetch_named_dataset("sms_spam", str(cache), url=(tmp_path / "missing.zip").as_uri())
    assert not cache.exists()
    with pytest.raises(UserError, match="known: sms_spam"):
        fetch_named_dataset("imdb", str(cache))


def test_load_named_dataset_from_cache(sms_path, tmp_path, monkeypatch):
    monkeypatch.setenv("ORCHESTRATOR_CACHE_DIR", str(tmp_path))
    fetch_named_dataset("sms_spam", str(tmp_path / "datasets"),
                        url=make_zip(tmp_path / "sms.zip", Path(sms_path).read_bytes()))
    ds = load_dataset(DataConfig(name="sms_spam", format="csv"))   # a named dataset knows its format
    assert len(ds) == 5574 and ds.source == str(tmp_path / "datasets" / "sms_spam" / "SMSSpamCollection")
