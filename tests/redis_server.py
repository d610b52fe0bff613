"""A real Redis for tests: redis-server, run as our own process on a loopback port.

The server runs in the foreground with its own pid file, data directory and
port, and is stopped by PID. Readiness is read from its log ("Ready to accept
connections"), not guessed with sleeps. Without redis-server installed the
tests fail (they never skip): ``scripts/test`` installs it when run as root.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

_READY = "Ready to accept connections"
_START_LINES = 400  # a starting server logs a few dozen lines before it is ready


@dataclass
class RedisServer:
    port: int
    pid: int
    data_dir: Path
    password: str | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"


def redis_binary() -> str:
    """The redis-server executable; a missing one fails the test, saying how to install it."""
    found = shutil.which("redis-server")
    if found is not None:
        return found
    pytest.fail(
        "the shared-crawl tests need redis-server: apt-get install -y redis-server "
        "(scripts/test installs it when run as root)"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def run_redis(
    where: Path, *, port: int | None = None, appendonly: bool = False, password: str | None = None
) -> Iterator[RedisServer]:
    """Start redis-server on a loopback port (free, or ``port`` for a restart); stop it by PID.

    ``appendonly`` turns on AOF with fsync on every write, so a restarted
    server comes back with everything it had acknowledged.
    """
    binary = redis_binary()
    port = port or free_port()
    where.mkdir(parents=True, exist_ok=True)
    args = [
        binary,
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(where),
        "--pidfile", str(where / "redis.pid"),
        "--save", "",
        "--daemonize", "no",
        "--loglevel", "notice",
        "--appendonly", "yes" if appendonly else "no",
        "--appendfsync", "always",
    ]  # fmt: skip
    if password is not None:
        args += ["--requirepass", password]
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=where
    )
    try:
        drain = _wait_ready(process, port)
        try:
            yield RedisServer(port, process.pid, where, password)
        finally:
            stop(process)
            drain.join(timeout=10)
    finally:
        stop(process)
        assert process.stdout is not None
        process.stdout.close()


def _wait_ready(process: subprocess.Popen[str], port: int) -> threading.Thread:
    """Read the server's log (bounded) until it says it is ready, or fail with the log."""
    assert process.stdout is not None
    seen: list[str] = []
    for _ in range(_START_LINES):
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        if _READY in line:
            return _drain(process)
    process.kill()
    process.wait(timeout=10)
    log = "".join(seen[-20:])
    pytest.fail(f"redis-server on port {port} did not become ready:\n{log}")


def _drain(process: subprocess.Popen[str]) -> threading.Thread:
    """Keep reading the log in the background so a chatty server never blocks on a full pipe.

    The thread ends at end of file, when the server has exited.
    """
    assert process.stdout is not None
    stream = process.stdout

    def read_to_end() -> None:
        for _ in stream:
            pass

    thread = threading.Thread(target=read_to_end, daemon=True)
    thread.start()
    return thread


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def kill(server: RedisServer) -> None:
    """SIGKILL the server (a crash, no shutdown save)."""
    os.kill(server.pid, 9)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with run_redis(tmp_path / "redis") as server:
        yield server
