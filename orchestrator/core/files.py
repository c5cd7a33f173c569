"""Writing a file so that readers see the old version or the new one, never half of one.

One writer for the whole project: `atomic_path` hands out a temporary path beside the target;
whatever the caller writes there (bytes, an HDF5 file, a torch checkpoint) is fsynced and renamed
over the target only when the block ends without an error, and removed otherwise. A kill at any
moment leaves the previous version of the file or the new one, plus at most a stray temp file.
Files get the mode the umask allows (0644 under the usual 022), as a plain `open` would give.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import yaml

from orchestrator.core.errors import UserError


@contextlib.contextmanager
def atomic_path(target: Path | str) -> Iterator[Path]:
    """A temporary path beside `target` to write to; fsynced and renamed onto `target` on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        # mkstemp makes the file 0600; the finished file gets what any new file would (0644 under
        # umask 022), so others on a shared folder can read run dirs and caches
        os.chmod(temporary, 0o666 & ~process_umask())
        os.replace(temporary, target)
    finally:
        if temporary.exists():
            temporary.unlink()


@functools.cache
def process_umask() -> int:
    """This process's umask, read without changing it where Linux tells (os.umask can only be read
    by setting it, which races with threads creating files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_bytes_atomically(target: Path | str, content: bytes) -> None:
    with atomic_path(target) as temporary:
        temporary.write_bytes(content)


def write_text_atomically(target: Path | str, text: str) -> None:
    write_bytes_atomically(target, text.encode("utf-8"))


def write_json_atomically(target: Path | str, value: Any) -> None:
    write_text_atomically(target, json.dumps(value, indent=2) + "\n")


def write_yaml_atomically(target: Path | str, value: Any) -> None:
    write_text_atomically(target, yaml.safe_dump(value, sort_keys=False))


def write_jsonl_atomically(target: Path | str, rows: list[dict]) -> None:
    write_text_atomically(target, "".join(json.dumps(row) + "\n" for row in rows))


def usable_folder(path: Path | str, what: str, create: bool = True) -> Path:
    """`path` created if missing (with `create`; else only proven creatable), and proven writable
    by writing in it: else UserError naming the path and what is wrong (`what` says which folder:
    "run dir", "cache dir"). Checking leaves nothing behind."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} is a file, not a folder")
    if not create and not path.exists():
        parent = next(p for p in path.parents if p.exists())
        if not parent.is_dir():
            raise UserError(f"{what} {path} cannot be created: {parent} is a file")
        return usable_folder(parent, what, create=False) and path
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as problem:
        raise UserError(f"{what} {path} cannot be created: {problem.strerror or problem}") from None
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as problem:
        raise UserError(f"{what} {path} is not writable: {problem.strerror or problem}") from None
    return path
