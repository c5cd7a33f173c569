"""The SMS Spam Collection the embedding benchmarks read: the file the user names, else the
project's named dataset `sms_spam` (orchestrator/data/datasets.py: the UCI zip, downloaded once, checked
against its sha256 and cached, as `orchestrate embed --set data.name=sms_spam` does).

Offline, name a local copy: `--data /path/to/SMSSpamCollection` (bench/scale.py) or
`B_DATA=/path/to/SMSSpamCollection` (bench/embed.py)."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

NAME = "sms_spam"


def sms_spam_file(path: Optional[str], how_to_name_a_file: str) -> Path:
    """The file to read; any problem is one line on stderr and exit status 2."""
    if path:
        file = Path(path).expanduser()
        if not file.is_file():
            fail(f"data file not found: {path}")
        return file.resolve()
    from orchestrator.config import default_cache_dir
    from orchestrator.core.errors import UserError
    from orchestrator.data.datasets import fetch_named_dataset

    try:
        return fetch_named_dataset(NAME, os.path.join(default_cache_dir(), "datasets"))
    except UserError as e:
        message = str(e).replace("pass --data with a local copy instead", how_to_name_a_file)
        if how_to_name_a_file not in message:
            message += f" ({how_to_name_a_file})"
        fail(message)


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)
