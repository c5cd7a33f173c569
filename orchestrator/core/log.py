"""Messages for the person at the terminal, through `logging`.

Modules log with `logging.getLogger(__name__)`: `log.info` for progress lines ("resuming at
epoch 3"), `log.warning` for what went differently than asked. The CLI calls
`show_messages_on_stderr()` once: info lines then appear on stderr as they are, warnings as
`warning: ...`. A program that imports the packages decides for itself where they go.
"""
from __future__ import annotations

import logging
import sys

PACKAGES = ("orchestrator", "embeddings", "workers")


class StderrHandler(logging.Handler):
    """Writes to whatever sys.stderr is at the time (tests and tools swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.levelno >= logging.WARNING:
                message = f"{record.levelname.lower()}: {message}"
            print(message, file=sys.stderr, flush=True)
        except Exception:
            self.handleError(record)


def show_messages_on_stderr(level: int = logging.INFO) -> None:
    """Send the project's info and warning lines to stderr (idempotent)."""
    for name in PACKAGES:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        if not any(isinstance(handler, StderrHandler) for handler in logger.handlers):
            logger.addHandler(StderrHandler())
        logger.propagate = True   # pytest's caplog and a host application still see the records
