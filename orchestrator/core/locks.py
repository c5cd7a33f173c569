"""OS locks on run dirs and cache keys: one process at a time, and never a lock that outlives its
process (the kernel releases an flock when the process dies, kill -9 included).

A lock is an flock on a small file that also says who holds it (pid, host, command), so the
process that finds it taken can name the holder. The file stays after release: deleting it would
let a third process lock a new file while a second still waits on the old one.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

from orchestrator.core.errors import UserError

POLL_S = 0.5


def try_lock(path: Path) -> Optional[int]:
    """The descriptor of `path`, locked by this process; None when another process holds it."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as problem:
        os.close(descriptor)
        if problem.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return None
        raise
    os.ftruncate(descriptor, 0)
    os.write(descriptor, (json.dumps(holder_of_this_process()) + "\n").encode())
    return descriptor


def holder_of_this_process() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv)[:300],
            "since": time.strftime("%Y-%m-%d %H:%M:%S")}


def describe_holder(path: Path) -> str:
    """'pid 123 on host, since ..., `command`' as the lock file says (what can be read of it)."""
    try:
        holder = json.loads(path.read_text())
        program, _, arguments = holder["command"].partition(" ")
        return f"pid {holder['pid']} on {holder['host']} since {holder['since']}: {Path(program).name} {arguments}".strip()
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "another process"


def release(descriptor: int) -> None:
    fcntl.flock(descriptor, fcntl.LOCK_UN)
    os.close(descriptor)


@contextlib.contextmanager
def held(path: Path, refusal: str) -> Iterator[None]:
    """Hold the lock at `path` for the block, or refuse at once: UserError('<refusal> (in use by ...)')."""
    descriptor = try_lock(path)
    if descriptor is None:
        raise UserError(f"{refusal} (in use by {describe_holder(path)})")
    try:
        yield
    finally:
        release(descriptor)


@contextlib.contextmanager
def waited_for(path: Path, on_wait: Callable[[str], None], poll_s: float = POLL_S) -> Iterator[None]:
    """Hold the lock at `path` for the block, waiting while another process holds it;
    `on_wait(holder)` is told once, when waiting starts. Ctrl-C and SIGTERM end the wait."""
    descriptor = try_lock(path)
    if descriptor is None:
        on_wait(describe_holder(path))
        while descriptor is None:
            time.sleep(poll_s)
            descriptor = try_lock(path)
    try:
        yield
    finally:
        release(descriptor)
