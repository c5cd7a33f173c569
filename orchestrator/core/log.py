"""Messages for the person at the terminal, through `logging`.

Modules log with `logging.getLogger(__name__)`: `log.info` for progress lines ("resuming at
epoch 3"), `log.warning` for what went differently than asked. The CLI calls
`show_messages_on_stderr()` once: info lines then appear on stderr as they are, warnings as
`warning: ...`. A program that imports the packages decides for itself where they go.

`progress(...)` is the progress display: a tqdm bar on a terminal; in a Jupyter notebook (an
IPython kernel) tqdm.auto's widget bar; anywhere else (`ray job logs`, CI, a file) one plain line
every ORCHESTRATOR_PROGRESS_S seconds (30) and one at the end, never the dozens of
carriage-return redraws a bar leaves in a log.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import Iterable, Optional

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


def progress(iterable: Optional[Iterable] = None, *, total: int, initial: int = 0, desc: str, unit: str,
             enabled: bool = True):
    """A tqdm bar when stderr is a terminal, tqdm.auto's notebook bar under an IPython kernel
    (when ipywidgets can draw it), else PlainProgress (same calls: iterate, update, set_postfix,
    close); nothing at all when not `enabled`."""
    if enabled and in_notebook():
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, initial=initial, desc=desc, unit=unit, smoothing=0.1)
    if enabled and sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(iterable, total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr,
                    dynamic_ncols=True, smoothing=0.1)
    return PlainProgress(iterable, total=total, initial=initial, desc=desc, unit=unit, enabled=enabled)


def in_notebook() -> bool:
    """Whether this process is an IPython kernel (Jupyter) whose frontend can draw tqdm.auto's
    widget bar: IPython already imported with a kernel, and ipywidgets installed (without it,
    tqdm.auto's bar fails; plain lines then)."""
    ipython = sys.modules.get("IPython")
    if ipython is None or not hasattr(ipython, "get_ipython"):
        return False
    shell = ipython.get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return False
    import importlib.util

    return importlib.util.find_spec("ipywidgets") is not None


class PlainProgress:
    """Progress as plain lines: `desc: n/total units (p %), rate, elapsed  key=value ...`."""

    def __init__(self, iterable: Optional[Iterable], *, total: int, initial: int, desc: str, unit: str,
                 enabled: bool) -> None:
        self.iterable, self.total, self.n, self.start_n = iterable, total, initial, initial
        self.desc, self.unit, self.enabled = desc, unit, enabled
        self.every_s = float(os.environ.get("ORCHESTRATOR_PROGRESS_S", "30"))
        self.started = self.last_shown = time.monotonic()
        self.shown_n = initial
        self.postfix = ""

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.enabled and time.monotonic() - self.last_shown >= self.every_s:
            self.show()

    def set_postfix(self, **values) -> None:
        self.postfix = "  " + " ".join(f"{key}={value}" for key, value in values.items())

    def show(self) -> None:
        elapsed = time.monotonic() - self.started
        rate = (self.n - self.start_n) / elapsed if elapsed > 0 else 0.0
        percent = 100 * self.n / self.total if self.total else 100.0
        print(f"{self.desc}: {self.n}/{self.total} {self.unit}s ({percent:.0f} %), {rate:.1f} {self.unit}s/s, "
              f"{elapsed:.0f} s{self.postfix}", file=sys.stderr, flush=True)
        self.last_shown, self.shown_n = time.monotonic(), self.n

    def close(self) -> None:
        if self.enabled and self.n != self.shown_n:
            self.show()
