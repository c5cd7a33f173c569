"""Every test under tests/integration/ carries the `integration` mark, put on at collection: the
whole suite is `python -m pytest -q`, the fast part `python -m pytest -q tests/unit` or
`-m "not integration"`."""
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)   # before -m selects by marks
def pytest_collection_modifyitems(items):
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)
