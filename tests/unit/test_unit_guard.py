"""The guard of tests/unit/conftest.py refuses what a unit test may not do, and lets git through."""
import os
import socket
import subprocess
import sys

import pytest

from tests.unit.conftest import NotAUnitTest, program_of, refuse_the_ray_session


def test_ray_init_is_refused():
    import ray

    with pytest.raises(NotAUnitTest, match=r"may not start or join Ray \(ray.init\)"):
        ray.init(num_cpus=1, include_dashboard=False)


def test_joining_a_ray_that_is_up_is_refused_too():
    """workers.cluster.connect() joins a running Ray without ray.init; the guard hides it."""
    from workers.cluster import connect

    with pytest.raises(NotAUnitTest, match="ray.init"):
        connect()


def test_the_ray_session_fixture_is_refused():
    with pytest.raises(NotAUnitTest, match="ray_session"):
        refuse_the_ray_session(["tmp_path", "ray_session"])
    refuse_the_ray_session(["tmp_path", "tiny_bert"])


@pytest.mark.parametrize("start", [
    lambda: subprocess.run([sys.executable, "-c", "pass"], check=True),
    lambda: subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "--help"]),
    lambda: subprocess.check_output("echo hello", shell=True),
], ids=["run", "Popen", "shell"])
def test_a_subprocess_is_refused(start):
    with pytest.raises(NotAUnitTest, match="may not start a subprocess"):
        start()


def test_git_is_allowed_as_the_summaries_need_it():
    done = subprocess.run(["git", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("git version")
    assert program_of("/usr/bin/git status", shell=True) == "git" and program_of(["uname", "-p"], False) == "uname"


def test_a_fork_is_refused():
    def fork_and_leave():
        pid = os.fork()
        if pid == 0:             # only reached if the guard let it through
            os._exit(0)
        os.waitpid(pid, 0)

    with pytest.raises(NotAUnitTest, match="fork"):
        fork_and_leave()


def test_a_server_is_refused():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        with pytest.raises(NotAUnitTest, match="open a server"):
            server.listen()
