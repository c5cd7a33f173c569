"""What the tests of the IBM backends share: a token that must never be written anywhere, and the one
error line of a refusal among qiskit's warnings."""

TOKEN = "tok-SECRET-5f1e9a-do-not-write"


def one_error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "Warning" not in line
             and not line.startswith(" ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]
