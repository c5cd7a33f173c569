"""What the command line's refusals are checked with."""


def one_error_line(capsys) -> str:
    """stderr's one non-blank line, which must be an `error: ` line."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]
