"""`orchestrate` on bad input: one clear line, exit code 2, and nothing written to the cache."""
from pathlib import Path

from orchestrator.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_refused(capsys, cache_dir: Path, *argv, match: str):
    code, out, err = run_cli(capsys, "embed", "--cache-dir", str(cache_dir), "-q", *argv)
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], err
    assert not cache_dir.exists() or not any(cache_dir.rglob("*")), "nothing may be written to the cache"


def write(path: Path, content, mode="w"):
    if mode == "wb":
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return str(path)


def test_missing_file(capsys, tmp_path):
    assert_refused(capsys, tmp_path / "cache", "--data", str(tmp_path / "nope.csv"), match="data file not found")


def test_file_that_is_not_utf8(capsys, tmp_path):
    data = write(tmp_path / "latin1.csv", "text,label\ncaf\xe9 au lait,ham\n".encode("latin-1"), "wb")
    assert_refused(capsys, tmp_path / "cache", "--data", data, match="UTF-8")


def test_missing_column(capsys, tmp_path):
    data = write(tmp_path / "d.csv", "message,label\nhello,ham\nwin,spam\n")
    assert_refused(capsys, tmp_path / "cache", "--data", data, match="'text'")


def test_empty_texts_name_their_rows(capsys, tmp_path):
    data = write(tmp_path / "d.csv", "text,label\nhello,ham\n  ,spam\nwin,spam\n,ham\n")
    assert_refused(capsys, tmp_path / "cache", "--data", data, match="--drop-empty")
    code, _, err = run_cli(capsys, "embed", "--cache-dir", str(tmp_path / "cache"), "--data", data)
    assert "3" in err and "5" in err


def test_unknown_label(capsys, tmp_path):
    data = write(tmp_path / "d.tsv", "ham\thello\nspam\twin now\neggs\tbreakfast\n")
    config = write(tmp_path / "c.yaml", "data:\n  format: uci\n  labels: [ham, spam]\n")
    assert_refused(capsys, tmp_path / "cache", "--config", config, "--data", data, match="eggs")


def test_unknown_model(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = write(tmp_path / "d.csv", "text,label\nhello,ham\nwin,spam\n")
    assert_refused(capsys, tmp_path / "cache", "--data", data, "--set", "embedding.model=no-such-org/no-such-model",
                   match="no-such-org/no-such-model")
    assert_refused(capsys, tmp_path / "cache", "--data", data, "--set", f"embedding.model={tmp_path}/missing-model",
                   match="model folder not found")


def test_config_typo_is_named_with_a_suggestion(capsys, tmp_path):
    config = write(tmp_path / "c.yaml", "embedding:\n  max_lenght: 64\n")
    assert_refused(capsys, tmp_path / "cache", "--config", config, "--data", "x.csv", match="did you mean 'embedding.max_length'")


def test_bad_config_values(capsys, tmp_path):
    assert_refused(capsys, tmp_path / "cache", "--set", "embedding.pooling=max", "--data", "x", match="pooling")
    assert_refused(capsys, tmp_path / "cache", "--set", "embedding.max_length=many", "--data", "x", match="integer")
    assert_refused(capsys, tmp_path / "cache", "--limit", "0", "--data", "x", match="data.limit must be at least 1")
