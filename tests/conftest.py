"""Shared fixtures: one Ray session for the whole test run (ray.init costs ~4.5 s and ~0.9 GB)."""
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SMS_PATH = SHARED / "data" / "sms_spam" / "SMSSpamCollection"


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray runtime shared by every test that needs one; shut down at the end."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 configure_logging=False, namespace="orchestrator-tests")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def sms_path():
    if not SMS_PATH.is_file():
        pytest.skip(f"the SMS Spam Collection is not at {SMS_PATH}")
    return SMS_PATH
