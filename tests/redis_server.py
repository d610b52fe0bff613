"""A real Redis for tests: redis-server, run as our own process on a loopback port.

The server runs in the foreground with its own pid file, data directory and
port, and is stopped by PID. With ``tls`` it serves TLS only, on that port,
with certificates from a test CA (trustme). Readiness is read from its log ("Ready to accept
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
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme

_READY = "Ready to accept connections"
_CLUSTER_OK = "Cluster state changed: ok"
_START_LINES = 400  # a starting server logs a few dozen lines before it is ready


@dataclass
class TlsFiles:
    """A test CA and the server certificate it issued (for 127.0.0.1 and localhost)."""

    ca: Path
    cert: Path
    key: Path
    ca_obj: trustme.CA

    @classmethod
    def make(cls, where: Path, *names: str) -> TlsFiles:
        where.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        issued = ca.issue_cert(*(names or ("127.0.0.1", "localhost")))
        files = cls(where / "ca.pem", where / "server.pem", where / "server.key", ca)
        ca.cert_pem.write_to_path(str(files.ca))
        issued.cert_chain_pems[0].write_to_path(str(files.cert))
        issued.private_key_pem.write_to_path(str(files.key))
        return files

    def client_cert(self, where: Path) -> tuple[Path, Path]:
        """A client certificate this CA signed: (certificate, key) files."""
        issued = self.ca_obj.issue_cert("test-client@example.org")
        cert, key = where / "client.pem", where / "client.key"
        issued.cert_chain_pems[0].write_to_path(str(cert))
        issued.private_key_pem.write_to_path(str(key))
        return cert, key


@dataclass
class RedisServer:
    port: int
    pid: int
    data_dir: Path
    password: str | None = None
    tls: TlsFiles | None = None
    #: Set when the server logs that its cluster is up (``--cluster-enabled yes``).
    cluster_ok: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls is not None:
            return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls.ca}"
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
    where: Path,
    *,
    port: int | None = None,
    appendonly: bool = False,
    password: str | None = None,
    tls: TlsFiles | None = None,
    client_certs: bool = False,
    extra: tuple[str, ...] = (),
) -> Iterator[RedisServer]:
    """Start redis-server on a loopback port (free, or ``port`` for a restart); stop it by PID.

    ``appendonly`` turns on AOF with fsync on every write, so a restarted
    server comes back with everything it had acknowledged. With ``tls`` the
    port serves TLS only (no plain port); ``client_certs`` makes it ask clients
    for a certificate signed by the same CA. ``extra``: more server options.
    """
    binary = redis_binary()
    port = port or free_port()
    where.mkdir(parents=True, exist_ok=True)
    args = [
        binary,
        "--bind", "127.0.0.1",
        *(("--port", "0", "--tls-port", str(port)) if tls else ("--port", str(port))),
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
    if tls is not None:
        args += [
            "--tls-cert-file", str(tls.cert),
            "--tls-key-file", str(tls.key),
            "--tls-ca-cert-file", str(tls.ca),
            "--tls-auth-clients", "yes" if client_certs else "no",
        ]  # fmt: skip
    args += extra
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=where
    )
    try:
        server = RedisServer(port, process.pid, where, password, tls)
        drain = _wait_ready(process, port, server.cluster_ok)
        try:
            yield server
        finally:
            stop(process)
            drain.join(timeout=10)
    finally:
        stop(process)
        assert process.stdout is not None
        process.stdout.close()


def _wait_ready(
    process: subprocess.Popen[str], port: int, cluster_ok: threading.Event
) -> threading.Thread:
    """Read the server's log (bounded) until it says it is ready, or fail with the log."""
    assert process.stdout is not None
    seen: list[str] = []
    for _ in range(_START_LINES):
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        if _READY in line:
            return _drain(process, cluster_ok)
    process.kill()
    process.wait(timeout=10)
    log = "".join(seen[-20:])
    pytest.fail(f"redis-server on port {port} did not become ready:\n{log}")


def _drain(process: subprocess.Popen[str], cluster_ok: threading.Event) -> threading.Thread:
    """Keep reading the log in the background so a chatty server never blocks on a full pipe,
    watching for the line that says its cluster is up.

    The thread ends at end of file, when the server has exited.
    """
    assert process.stdout is not None
    stream = process.stdout

    def read_to_end() -> None:
        for line in stream:
            if _CLUSTER_OK in line:
                cluster_ok.set()

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


@dataclass
class RedisCluster:
    """A Redis Cluster of primaries on loopback ports (no replicas)."""

    nodes: list[RedisServer]
    #: port -> the slot ranges (first, last) that node serves
    slots: dict[int, list[tuple[int, int]]]

    def url(self, port: int) -> str:
        return f"redis://127.0.0.1:{port}/0"

    def owner(self, slot: int) -> int:
        """The port of the node serving ``slot``."""
        for port, ranges in self.slots.items():
            if any(first <= slot <= last for first, last in ranges):
                return port
        raise AssertionError(f"no node serves slot {slot}")

    def not_owner(self, slot: int) -> int:
        """The port of a node that does not serve ``slot`` (it answers MOVED)."""
        return next(node.port for node in self.nodes if node.port != self.owner(slot))


def cli(port: int, *args: str) -> str:
    """redis-cli's answer (raw) from the server on ``port``; a failure fails the test."""
    binary = shutil.which("redis-cli")
    if binary is None:
        pytest.fail("the Redis Cluster tests need redis-cli: apt-get install -y redis-tools")
    done = subprocess.run(
        [binary, "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"redis-cli {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


@contextmanager
def run_redis_cluster(where: Path, count: int = 3) -> Iterator[RedisCluster]:
    """Start ``count`` redis-servers with cluster mode on, make them one cluster with
    ``redis-cli --cluster create``, and wait (bounded) until every node logs that the
    cluster is ok. Each node has its own directory, pid file and nodes.conf; all are
    stopped by PID."""
    with ExitStack() as stack:
        nodes = []
        for i in range(count):
            home = where / f"node{i}"
            options: tuple[str, ...] = (
                "--cluster-enabled",
                "yes",
                "--cluster-node-timeout",
                "5000",
            )
            options += ("--cluster-config-file", str(home / "nodes.conf"))
            # The bus port is the port + 10000 unless given: a free one of its own.
            options += ("--cluster-port", str(free_port()))
            nodes.append(stack.enter_context(run_redis(home, extra=options)))
        addresses = [f"127.0.0.1:{node.port}" for node in nodes]
        cli(nodes[0].port, "--cluster", "create", *addresses, "--cluster-yes")
        for node in nodes:
            if not node.cluster_ok.wait(timeout=60):
                pytest.fail(f"the cluster node on port {node.port} never logged its state ok")
        slots = {node.port: _own_slots(cli(node.port, "CLUSTER", "NODES")) for node in nodes}
        yield RedisCluster(nodes, slots)


def _own_slots(listing: str) -> list[tuple[int, int]]:
    """The slot ranges of the ``myself`` line of CLUSTER NODES."""
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) > 8 and "myself" in fields[2]:
            ranges = []
            for part in fields[8:]:
                if part.startswith("["):
                    continue  # a slot being migrated
                first, _, last = part.partition("-")
                ranges.append((int(first), int(last or first)))
            return ranges
    raise AssertionError(f"no myself line in CLUSTER NODES:\n{listing}")
