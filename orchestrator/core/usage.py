"""What a finished job cost, as the service reports it: the runner's backends (orchestrator/quantum)
and the Ray circuit workers (workers/) both answer it, so it lives below both."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class JobUsage:
    """What a finished job cost, as the service reports it (None: not reported, as on a simulator
    or in local testing mode)."""

    billed_seconds: Optional[float] = None   # the QPU time the service bills for this job (job.usage())
    queue_seconds: Optional[float] = None    # created -> started running on the device
    session_id: Optional[str] = None         # a dedicated session bills its elapsed time, not its jobs'
