"""What started this process, as a run's summary.json records it: the command line, the
package's version, and the git commit of a checkout it runs from."""
from __future__ import annotations

import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Optional

PACKAGE = "hybrid-quantum-orchestrator"

_command: Optional[list[str]] = None


def record(argv: list[str]) -> None:
    """The CLI records the command it was given (tests call it in-process, with their own argv)."""
    global _command
    _command = list(argv)


def command_line() -> str:
    return shlex.join(_command if _command is not None else sys.argv)


def package_version() -> Optional[str]:
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return None


def git_commit() -> Optional[str]:
    """The commit of the checkout this code runs from (a dirty tree gets '+dirty'); None outside one."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")
