"""The Redis the engine talks to: ``REDIS_URL`` if set, else a private redis-server.

The private server runs in the run's working directory with AOF on (so a
killed and restarted server keeps every acknowledged message), on a free
loopback port, and is stopped when the run ends.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

import redis

INSTALL_HINT = (
    "no redis-server binary found. Install one (Debian/Ubuntu: 'sudo apt-get install redis-server'; "
    "macOS: 'brew install redis') or point REDIS_URL at a running Redis, e.g. REDIS_URL=redis://127.0.0.1:6379/0"
)


class RedisUnavailable(RuntimeError):
    """No Redis could be reached or started."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    """A private redis-server process (AOF on) for one run."""

    def __init__(self, workdir: str | Path, port: int | None = None, appendfsync: str = "everysec",
                 password: str | None = None) -> None:
        self.workdir = Path(workdir).resolve()
        self.port = port or free_port()
        self.appendfsync = appendfsync  # "always": an acknowledged write survives a crash of the server
        self.proc: subprocess.Popen[bytes] | None = None
        self.password = password  # for the default user: needed where other users share the server (sessions)

    @property
    def url(self) -> str:
        auth = f"default:{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RedisUnavailable(INSTALL_HINT)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
             "--appendonly", "yes", "--appendfsync", self.appendfsync, "--save", "", "--protected-mode", "yes",
             "--logfile", str(self.workdir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # a terminal's Ctrl-C reaches the run, which then stops this server itself
        )
        deadline = time.monotonic() + timeout
        client = redis.Redis(host="127.0.0.1", port=self.port)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RedisUnavailable(f"redis-server exited with code {self.proc.returncode}; see "
                                       f"{self.workdir / 'redis.log'}")
            try:
                client.ping()
                if self.password:  # set after start, so that it never shows in the process list
                    client.config_set("requirepass", self.password)
                return self
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RedisUnavailable(f"redis-server did not answer on port {self.port} within {timeout:g} s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            redis.Redis.from_url(self.url).shutdown(nosave=True)
        except redis.ConnectionError:
            pass  # shutdown closes the connection; that is the success path
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def restart(self, timeout: float = 30.0) -> float:
        """Start the server again on the same port and directory (it reloads its AOF); returns the seconds taken."""
        t0 = time.monotonic()
        self.start(timeout)
        return time.monotonic() - t0

    def kill(self) -> None:
        """Hard kill (tests of durability)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def masked(url: str) -> str:
    """``url`` with its password (and a user's) replaced by ``***``: for every line a run prints or logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:" if parts.username else ":"
    host = parts.hostname or ""
    netloc = f"{user}***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def resolve_redis(workdir: str | Path, appendfsync: str = "everysec",
                  password: str | None = None) -> tuple[str, EmbeddedRedis | None]:
    """(url, server-we-started-or-None): ``REDIS_URL`` wins, else start a private server."""
    url = os.environ.get("REDIS_URL")
    if url:
        try:
            redis.Redis.from_url(url, socket_connect_timeout=3).ping()
        except redis.AuthenticationError as e:
            raise RedisUnavailable(f"REDIS_URL={masked(url)}: the server needs a password or refused this one "
                                   f"({e}); give it in the URL: redis://:PASSWORD@host:port/0") from None
        except redis.ResponseError as e:
            if "NOAUTH" not in str(e) and "WRONGPASS" not in str(e):
                raise RedisUnavailable(f"REDIS_URL={masked(url)}: {e}") from None
            raise RedisUnavailable(f"REDIS_URL={masked(url)}: the server needs a password or refused this one "
                                   f"({e}); give it in the URL: redis://:PASSWORD@host:port/0") from None
        except redis.RedisError as e:
            raise RedisUnavailable(f"REDIS_URL={masked(url)} is not reachable: {e}") from None
        return url, None
    server = EmbeddedRedis(Path(workdir) / "redis", appendfsync=appendfsync, password=password).start()
    return server.url, server
