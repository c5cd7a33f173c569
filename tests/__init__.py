"""The test suite: tests/unit/ (no Ray, no subprocess, no server), tests/integration/ (the rest) and
tests/support/ (the stand-ins and helpers both import). Shared fixtures are in tests/conftest.py."""
