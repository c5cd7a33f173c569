"""What reaches the user as a single line, and the exit codes a script can tell apart:

    0    success
    2    bad input or usage (UserError): fix the command; nothing was written
    75   a resumable stop (ResumableStop: QPU budget spent, backend failing, terminated): the run
         dir keeps its work; `orchestrate resume RUN_DIR` continues it (75 is EX_TEMPFAIL)
    130  interrupted with Ctrl-C (Interrupted): resumable the same way
"""
from __future__ import annotations


def first_line(error: BaseException, limit: int | None = None) -> str:
    """The first line of an error's message (its type's name when it has none), for one-line reports."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__


class UserError(ValueError):
    """Bad input from the user (file, config, label, model, backend).

    The CLI prints `error: <message>` on one line and exits with code 2. Raise it before
    anything is written, so a failed command leaves no half-written cache or run dir. A
    ValueError, so that Python callers (orchestrator.HybridTextClassifier, scikit-learn's
    checks) can catch it as the bad argument it is.
    """


EXIT_BAD_INPUT = 2
EXIT_RESUMABLE = 75
EXIT_INTERRUPTED = 130


class ResumableStop(Exception):
    """A run that stopped with its work kept; the message says how to continue. Exit code 75."""

    exit_code = EXIT_RESUMABLE


class Interrupted(ResumableStop):
    """Ctrl-C during a run: stopped like any resumable stop, but exit code 130 as for SIGINT."""

    exit_code = EXIT_INTERRUPTED


class BackendFailure(RuntimeError):
    """A backend kept failing after every retry, or did not answer in time: the run stops,
    resumable from its last checkpoint (`orchestrate resume`, exit 75)."""


class Terminated(BaseException):
    """SIGTERM arrived (a scheduler or cluster ending the job): raised in the main thread. A
    BaseException, as KeyboardInterrupt is, so that no `except Exception` retry loop swallows it."""
