"""The one exception type that reaches the user as a single line and exit code 2."""


class UserError(Exception):
    """Bad input from the user (file, config, label, model, backend).

    The CLI prints `error: <message>` on one line and exits with code 2. Raise it before
    anything is written, so a failed command leaves no half-written cache or run dir.
    """
