"""The guard that keeps tests/unit/ fast: a unit test (or a fixture it uses) that starts Ray, a
subprocess or a server fails with NotAUnitTest instead of quietly doing it. Such a test belongs in
tests/integration/.

The guard is on for each unit test module from its first fixture to its last teardown (module
scope, so the module's own fixtures are guarded too), whatever ran before it: in a whole run the
integration tests come first and leave the suite's shared Ray up, so "Ray is up" is hidden from
unit tests as well (ray.is_initialized() reads False), and joining it goes through ray.init, which
is refused. The session-wide ray_session fixture (tests/conftest.py) is set up before any module
fixture, so a unit test that asks for it is refused before its setup (pytest_runtest_setup).
"""
from __future__ import annotations

import os
import shlex
import socket
import subprocess

import pytest

# The only programs a unit test may start, and why. Everything else (python, orchestrate, ray, ...)
# is an integration test's business.
ALLOWED_PROGRAMS = {
    # orchestrator/core/invocation.py records the commit in every summary and run record
    # (git rev-parse HEAD, git status --porcelain): every in-process `orchestrate` command runs it
    "git",
    # platform.processor() runs `uname -p`; h5py's and mlflow's imports call it (cached after the
    # first call in a process, so this happens only when such an import comes first in a test)
    "uname",
    # matplotlib's font manager asks fontconfig for the system's fonts once per machine, when it
    # builds its font cache (~/.cache/matplotlib); the first plot of a fresh machine does it
    "fc-list",
}
# A recording of a whole run (every Popen, fork, posix_spawn and listen of the test process) found
# nothing else under the unit tests: torch and transformers (tiny BERT, MiniLM), qiskit, qiskit-aer
# and qiskit-ibm-runtime's local testing mode, Ray's autoscaler schema check, TensorBoard's reader
# and MLflow's file store start no process here.


class NotAUnitTest(AssertionError):
    """What a unit test gets for starting Ray, a subprocess or a server."""


def refuse(what: str):
    raise NotAUnitTest(f"a unit test may not {what}; it belongs in tests/integration/")


def program_of(args, shell: bool) -> str:
    """The name of the program a Popen(args, shell=shell) would start."""
    if isinstance(args, (str, bytes, os.PathLike)):
        command = os.fsdecode(args)
        first = shlex.split(command)[0] if shell and command.strip() else command
    else:
        first = os.fsdecode(list(args)[0])
    return os.path.basename(first)


def refuse_the_ray_session(fixturenames) -> None:
    if "ray_session" in fixturenames:
        refuse("use the ray_session fixture (it starts the suite's local Ray)")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    refuse_the_ray_session(item.fixturenames)


@pytest.fixture(scope="module", autouse=True)
def no_ray_no_subprocess_no_server():
    import ray

    real_popen_init = subprocess.Popen.__init__

    def guarded_popen_init(self, args, *more, **options):
        program = program_of(args, options.get("shell", False))
        if program not in ALLOWED_PROGRAMS:
            refuse(f"start a subprocess ({program}: {args!r:.120})")
        real_popen_init(self, args, *more, **options)

    def refused(what):
        def refusal(*args, **kwargs):
            refuse(what)
        return refusal

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ray, "init", refused("start or join Ray (ray.init)"))
        patch.setattr(ray, "is_initialized", lambda: False)     # so that joining a Ray that is up calls ray.init
        patch.setattr(subprocess.Popen, "__init__", guarded_popen_init)   # subprocess.run, check_output, ... too
        patch.setattr(os, "fork", refused("fork a process (os.fork, multiprocessing)"))
        for name in ("posix_spawn", "posix_spawnp"):
            if hasattr(os, name):
                patch.setattr(os, name, refused(f"start a process (os.{name})"))
        patch.setattr(socket.socket, "listen", refused("open a server (socket.listen)"))
        yield
