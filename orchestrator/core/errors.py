"""The one exception type that reaches the user as a single line and exit code 2."""
from __future__ import annotations


def first_line(error: BaseException, limit: int | None = None) -> str:
    """The first line of an error's message (its type's name when it has none), for one-line reports."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__


class UserError(Exception):
    """Bad input from the user (file, config, label, model, backend).

    The CLI prints `error: <message>` on one line and exits with code 2. Raise it before
    anything is written, so a failed command leaves no half-written cache or run dir.
    """
