"""Real proxies for tests, run as our own processes on loopback: tinyproxy (HTTP)
and pproxy (SOCKS5).

tinyproxy forwards plain HTTP in absolute form (adding a ``Via`` header),
opens ``CONNECT`` tunnels, checks Basic credentials and logs every request:
what the client did can be proven from the proxy's side and the origin's.
Without it installed the tests fail (they never skip): ``scripts/test``
installs it under CI.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

USER = "proxyuser"
PASSWORD = "s3cret-pw"
_START_ATTEMPTS = 500  # x 10 ms: tinyproxy listens within milliseconds


@dataclass
class TinyProxy:
    port: int
    log_path: Path
    pid: int

    @property
    def url(self) -> str:
        """With the right credentials."""
        return f"http://{USER}:{PASSWORD}@127.0.0.1:{self.port}"

    def url_with(self, user: str, password: str) -> str:
        return f"http://{user}:{password}@127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def tinyproxy_binary() -> str:
    """The tinyproxy executable; a missing one fails the test, saying how to install it."""
    found = shutil.which("tinyproxy")
    if found is not None:
        return found
    if os.environ.get("CI") == "true":
        where = "scripts/test installs it under CI when run as root: run it as root"
    else:
        where = "or run scripts/test as root with CI=true, which installs it"
    pytest.fail(f"the proxy tests need tinyproxy: apt-get install -y tinyproxy ({where})")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def run_tinyproxy(where: Path, connect_ports: list[int] | None = None) -> Iterator[TinyProxy]:
    """Start tinyproxy on a free loopback port, requiring Basic credentials; stop it by PID.

    ``connect_ports`` are the ports CONNECT may reach (none listed: CONNECT refused).
    """
    binary = tinyproxy_binary()
    port = _free_port()
    log_path = where / "tinyproxy.log"
    lines = [
        f"Port {port}",
        "Listen 127.0.0.1",
        "Timeout 30",
        f'LogFile "{log_path}"',
        "LogLevel Info",
        "MaxClients 50",
        "Allow 127.0.0.1",
        f"BasicAuth {USER} {PASSWORD}",
        *(f"ConnectPort {p}" for p in connect_ports or [1]),
    ]
    config = where / "tinyproxy.conf"
    config.write_text("\n".join(lines) + "\n")
    stderr_path = where / "tinyproxy.stderr"
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [binary, "-d", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=stderr
        )
    try:
        _wait_listening(port, process, stderr_path)
        yield TinyProxy(port, log_path, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_listening(
    port: int, process: subprocess.Popen[bytes], stderr_path: Path, name: str = "tinyproxy"
) -> None:
    """Poll (bounded) until the server accepts connections, or fail with its stderr."""
    for _ in range(_START_ATTEMPTS):
        if process.poll() is not None:
            err = stderr_path.read_text(errors="replace")
            pytest.fail(f"{name} exited with {process.returncode}: {err}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.01)
    pytest.fail(f"{name} did not listen on 127.0.0.1:{port}")


# -- SOCKS5: pproxy --------------------------------------------------------------------


@dataclass
class SocksProxy:
    port: int
    log_path: Path
    pid: int

    def url(self, scheme: str = "socks5h", user: str = USER, password: str = PASSWORD) -> str:
        return f"{scheme}://{user}:{password}@127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        """pproxy's verbose log: one ``socks5 CLIENT -> TARGET`` line per tunnel, TARGET as
        the client sent it (a name for socks5h, an address for socks5)."""
        return self.log_path.read_text(errors="replace")


@contextmanager
def run_pproxy(where: Path) -> Iterator[SocksProxy]:
    """Start pproxy (a test dependency) as a SOCKS5 server on a free loopback port,
    requiring ``USER``/``PASSWORD`` on every connection (``--auth 0``: pproxy otherwise
    remembers an address that once logged in); stop it by PID."""
    port = _free_port()
    log_path = where / "pproxy.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pproxy",
                "-l",
                f"socks5://127.0.0.1:{port}#{USER}:{PASSWORD}",
                "--auth",
                "0",
                "-v",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_listening(port, process, log_path, "pproxy")
        yield SocksProxy(port, log_path, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
