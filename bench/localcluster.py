"""A real two-node Ray cluster on one machine: a head and a second raylet started with ``ray start``.

For the fault tests and ``bench.chaos`` (a Ray node killed or hung). Token authentication is on, as
Ray 2.60 sets it up for ``ray start --head``; the joining node needs ``RAY_AUTH_MODE=token``
(docs/CLUSTER.md). Only this cluster's own processes (found by its temp directory) are ever signalled.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from paichan.bus.server import free_port

RAY = str(Path(sys.executable).parent / "ray")


class LocalCluster:
    """Head + one worker node; ``env`` is what a driver or a ``paichan run`` needs to join it."""

    def __init__(self, fast_health_checks: bool = False) -> None:
        """``fast_health_checks``: the head declares a silent node dead after ~4 s instead of Ray's ~30 s
        or more (a hung node's actors are then restarted while the old copies still run)."""
        self.tmp = tempfile.mkdtemp(prefix="p2n", dir="/tmp")  # short: Ray's socket paths must stay < 107 bytes
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        root = str(Path(__file__).resolve().parent.parent)
        self.env = {**{k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "REDIS_URL")},
                    "RAY_AUTH_MODE": "token", "RAY_TMPDIR": self.tmp, "PYTHONPATH": root,
                    # the cluster's own token: nothing depends on (or writes) the user's ~/.ray/auth_token
                    "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        self.env.pop("RAY_AUTH_TOKEN_PATH", None)
        if fast_health_checks:
            self.env |= {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
                         "RAY_health_check_failure_threshold": "3", "RAY_health_check_initial_delay_ms": "1000"}
        self.workers = 0
        try:
            self._ray("start", "--head", f"--port={self.port}", "--include-dashboard=false", f"--temp-dir={self.tmp}")
            self.add_worker()
        except BaseException:
            self.stop()
            raise

    def _ray(self, *args: str) -> None:
        done = subprocess.run([RAY, *args, "--num-cpus=1", "--disable-usage-stats"], env=self.env,
                              capture_output=True, text=True, timeout=180)
        if done.returncode != 0:
            raise RuntimeError(f"ray {' '.join(args)} failed: {done.stderr[-2000:]}")

    def add_worker(self) -> None:
        """Start a (new) worker node; its raylet's sockets carry the suffix ``.<n>``."""
        self._ray("start", f"--address={self.address}", '--resources={"worker_node": 1}')
        self.workers += 1
        self._wait_schedulable()

    def _wait_schedulable(self) -> None:
        """Block until Ray's actor scheduler can place an actor on a worker node.

        `ray start` returns once the raylet registered, but the GCS may not yet know its resources: an
        actor soft-pinned to it meanwhile lands on the head instead (CI once saw a two-node run start on
        one node). An actor that needs the worker node's own resource waits for exactly that knowledge."""
        probe = ("import ray, sys\n"
                 "ray.init(address=sys.argv[1], log_to_driver=False, configure_logging=False)\n"
                 "@ray.remote(num_cpus=0, resources={'worker_node': 0.001})\n"
                 "class Probe:\n"
                 "    def node(self) -> str:\n"
                 "        return ray.get_runtime_context().get_node_id()\n"
                 "print(ray.get(Probe.remote().node.remote(), timeout=120))\n")
        done = subprocess.run([sys.executable, "-c", probe, self.address], env=self.env, capture_output=True,
                              text=True, timeout=180)
        if done.returncode != 0:
            raise RuntimeError(f"the worker node never became schedulable: {done.stderr[-2000:]}")

    def processes(self) -> list[tuple[int, str]]:
        out = subprocess.run(["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
        return [(int(ln.split()[0]), ln) for ln in (x.strip() for x in out.splitlines()) if self.tmp in ln]

    def worker_raylet(self) -> int:
        """The pid of the newest worker node's raylet."""
        mark = f"sockets/raylet.{self.workers} "
        found = [pid for pid, line in self.processes() if "/raylet " in line and mark in line]
        if len(found) != 1:
            raise RuntimeError(f"no single worker raylet ({mark.strip()}) among {self.processes()}")
        return found[0]

    def descendants(self, pid: int) -> list[int]:
        """Every process under ``pid`` (a raylet's workers: the node's Ray actors)."""
        out = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True, check=True).stdout
        children: dict[int, list[int]] = {}
        for line in out.splitlines():
            child, parent = map(int, line.split())
            children.setdefault(parent, []).append(child)
        found, todo = [], [pid]
        while todo:
            for c in children.get(todo.pop(), []):
                found.append(c)
                todo.append(c)
        return found

    def kill_worker_node(self) -> int:
        """The worker node dies as a machine does: its raylet and every process under it at once (SIGKILL).

        Killing the raylet alone leaves its actors' processes running for a while (they reach Redis
        directly), which is a different fault (see node-hang). Returns how many processes were killed."""
        raylet = self.worker_raylet()
        victims = [raylet, *self.descendants(raylet)]
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(victims)

    def stop(self) -> None:
        for pid, _ in self.processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)
