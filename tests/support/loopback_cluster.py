"""A real multi-node Ray cluster on this machine's loopback addresses, for tests.

Each node is started with `ray start` in its own temp dir, on its own loopback address (head
127.0.0.2, workers 127.0.0.3, ...: Ray rewrites 127.0.0.1 to the machine's network address, and
distinct addresses tell the nodes apart), with token auth and free ports everywhere, so it
collides neither with the test suite's own local Ray nor with anybody else's cluster. Nodes are
stopped by killing exactly their processes (found by their temp dir) and their descendants:
never `ray stop`, which stops every Ray on the machine.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

HEAD_IP = "127.0.0.2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RayNode:
    name: str
    ip: str
    temp_dir: Path
    other_marker: str | None = None   # an argument naming a process of this node outside its temp dir

    def processes(self) -> list[psutil.Process]:
        """This node's Ray processes (they name its temp dir) and everything they started (workers, job drivers)."""
        marker = re.compile(re.escape(str(self.temp_dir)) + r"(/|$)")
        roots = []
        for process in psutil.process_iter(["cmdline"]):
            arguments = process.info["cmdline"] or ()
            if process.pid != os.getpid() and any(marker.search(a) or a == self.other_marker for a in arguments):
                roots.append(process)
        found = {}
        for root in roots:
            try:
                for process in [root, *root.children(recursive=True)]:
                    found[process.pid] = process
            except psutil.NoSuchProcess:
                continue
        return list(found.values())

    def actor_processes(self, class_name: str, method: str | None = None) -> list[psutil.Process]:
        """Worker processes of this node running actor `class_name` (and, if given, busy in `method`)."""
        title = f"ray::{class_name}" + (f".{method}" if method else "")
        matches = []
        for process in self.processes():
            try:
                command = process.cmdline()
            except psutil.NoSuchProcess:
                continue
            if command and (command[0] == title or (method is None and command[0].startswith(title + "."))):
                matches.append(process)
        return matches

    def kill(self) -> None:
        """SIGKILL every process of the node: the machine it stands for is gone."""
        victims = self.processes()
        for process in victims:
            try:
                process.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(victims, timeout=15)


class LoopbackCluster:
    """A head node and worker nodes on loopback; `env` is what a client of the cluster needs."""

    def __init__(self, root: Path | None = None):
        # short paths: Ray's Unix sockets live under the temp dir and socket paths are limited to 107 bytes
        self.root = Path(root or tempfile.mkdtemp(prefix="rc-"))
        self.nodes: list[RayNode] = []
        self.gcs_port = free_port()
        self.dashboard_port = free_port()
        venv_bin = str(Path(sys.executable).parent)
        self.env = {
            **{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
            # job entrypoints run `python` / `orchestrate` from PATH: this venv's
            "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
            "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
            "RAY_USAGE_STATS_ENABLED": "0", "RAY_worker_niceness": "0",
            "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
        }

    @property
    def address(self) -> str:
        return f"{HEAD_IP}:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://{HEAD_IP}:{self.dashboard_port}"

    def client_env(self, **extra) -> dict:
        return {**self.env, "RAY_ADDRESS": self.address, **extra}

    def start_head(self, cpus: int = 2) -> RayNode:
        # the Ray Client server names the cluster, not the temp dir
        node = RayNode("head", HEAD_IP, self.root / "head", other_marker=f"--address={self.address}")
        self._ray_start(node, ["--head", f"--port={self.gcs_port}", f"--dashboard-port={self.dashboard_port}",
                               f"--dashboard-host={HEAD_IP}", f"--ray-client-server-port={free_port()}"], cpus)
        return node

    def add_worker(self, cpus: int = 2) -> RayNode:
        index = len(self.nodes)
        # a fresh name every time: a restarted node must not share a temp dir with a killed one
        node = RayNode(f"worker{index}", f"127.0.0.{2 + index}", self.root / f"worker{index}")
        self._ray_start(node, [f"--address={self.address}"], cpus)
        return node

    def _ray_start(self, node: RayNode, role: list[str], cpus: int) -> None:
        command = [str(Path(sys.executable).parent / "ray"), "start", *role, f"--num-cpus={cpus}", "--num-gpus=0",
                   f"--temp-dir={node.temp_dir}", f"--node-ip-address={node.ip}",
                   f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
                   f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}",
                   "--disable-usage-stats"]
        self.nodes.append(node)   # before starting: a half-started node is still torn down
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"ray start of {node.name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")

    def alive_nodes(self) -> list[RayNode]:
        return [node for node in self.nodes if any(p.is_running() and "raylet" in p.name()
                                                   for p in node.processes())]

    def wait_for_nodes(self, count: int, timeout_s: float = 60) -> None:
        """Until the cluster reports `count` live nodes (as a client sees it)."""
        deadline = time.monotonic() + timeout_s
        while True:
            out = self.ray_cli("status", "--address", self.address, timeout=60)
            if out.returncode == 0 and len(re.findall(r"^\s*1 node_[0-9a-f]+", out.stdout.split("Pending:")[0],
                                                      re.M)) == count:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not reach {count} live nodes:\n{out.stdout}\n{out.stderr}")
            time.sleep(1)

    def ray_cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([str(Path(sys.executable).parent / "ray"), *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def shutdown(self) -> None:
        for node in reversed(self.nodes):
            node.kill()
        shutil.rmtree(self.root, ignore_errors=True)
