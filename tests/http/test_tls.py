"""TLS: certifi by default, our own CA, verify=False, and certificate failures."""

from __future__ import annotations

import ssl
from pathlib import Path

import certifi
import pytest
import trio
import trio.testing
import trustme

from crawler.http import ConnectError, ConnectTimeout, ReadTimeout, Request, Timeout
from crawler.http._pool import ConnectionPool
from crawler.http._tls import create_ssl_context
from tests.servers import Reply, Seen, serve_h11, serve_tcp

GUARD = 10


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def fetch(pool: ConnectionPool, url: str) -> bytes:
    response = await pool.handle_request(Request("GET", url))
    return await response.aread()


def test_default_context_uses_certifi_and_is_cached() -> None:
    context = create_ssl_context()
    assert context is create_ssl_context(True)
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 50  # certifi's bundle, loaded once
    assert create_ssl_context(alpn=["h2", "http/1.1"]) is not context
    assert create_ssl_context(alpn=("h2", "http/1.1")) is create_ssl_context(
        alpn=["h2", "http/1.1"]
    )
    assert Path(certifi.where()).is_file()


def test_verify_false_and_given_context() -> None:
    off = create_ssl_context(False)
    assert off.verify_mode is ssl.CERT_NONE and not off.check_hostname
    mine = ssl.create_default_context()
    assert create_ssl_context(mine) is mine
    with pytest.raises(ValueError, match=r"no-such-bundle\.pem"):
        create_ssl_context("/no-such-bundle.pem")
    with pytest.raises(TypeError):
        create_ssl_context(3)  # type: ignore[arg-type]


def test_ca_bundle_path(ca: trustme.CA, tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    context = create_ssl_context(str(bundle))
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.cert_store_stats()["x509_ca"] == 1


async def test_https_with_trusted_ca_reuses_the_connection(
    ca: trustme.CA, server_context: ssl.SSLContext
) -> None:
    with trio.fail_after(GUARD):
        async with serve_h11(ssl_context=server_context) as server:
            pool = ConnectionPool(verify=client_context(ca))
            try:
                assert server.url.startswith("https://")
                assert await fetch(pool, server.url + "/a") == b"ok /a"
                assert await fetch(pool, server.url + "/b") == b"ok /b"
                assert server.connections_total == 1
                assert pool.connection_counts() == {server.url: (0, 1)}
            finally:
                await pool.aclose()


async def test_unknown_ca_is_a_connect_error_about_the_certificate(
    server_context: ssl.SSLContext,
) -> None:
    with trio.fail_after(GUARD):
        async with serve_h11(ssl_context=server_context) as server:
            pool = ConnectionPool()  # certifi does not know our test CA
            try:
                with pytest.raises(ConnectError, match="certificate") as info:
                    await fetch(pool, server.url + "/x")
                assert server.url in str(info.value)
                assert pool.num_active == 0
            finally:
                await pool.aclose()


async def test_verify_false_accepts_any_certificate(server_context: ssl.SSLContext) -> None:
    with trio.fail_after(GUARD):
        async with serve_h11(ssl_context=server_context) as server:
            pool = ConnectionPool(verify=False)
            try:
                assert await fetch(pool, server.url + "/insecure") == b"ok /insecure"
            finally:
                await pool.aclose()


async def test_hostname_mismatch_is_refused(ca: trustme.CA) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("other.test").configure_cert(context)
    with trio.fail_after(GUARD):
        async with serve_h11(ssl_context=context) as server:
            pool = ConnectionPool(verify=client_context(ca))
            try:
                with pytest.raises(ConnectError, match="certificate"):
                    await fetch(pool, server.url + "/")
            finally:
                await pool.aclose()


async def test_read_timeout_over_tls(
    ca: trustme.CA, server_context: ssl.SSLContext, autojump_clock: trio.testing.MockClock
) -> None:
    async def silent(seen: Seen) -> Reply:
        await trio.sleep_forever()
        raise AssertionError

    with trio.fail_after(GUARD * 100):  # virtual time: the clock jumps
        async with serve_h11(silent, ssl_context=server_context) as server:
            pool = ConnectionPool(verify=client_context(ca), timeout=Timeout(3.0))
            try:
                with pytest.raises(ReadTimeout, match="/never"):
                    await fetch(pool, server.url + "/never")
                assert pool.num_active == 0
            finally:
                await pool.aclose()


async def test_stalled_tls_handshake_is_a_connect_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def mute(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    with trio.fail_after(GUARD * 100):  # virtual time: the clock jumps
        async with serve_tcp(mute) as port:
            pool = ConnectionPool(timeout=Timeout(30.0, connect=2.0))
            try:
                with pytest.raises(ConnectTimeout, match=f"https://127.0.0.1:{port}/hs"):
                    await fetch(pool, f"https://127.0.0.1:{port}/hs")
                assert pool.num_active == 0
            finally:
                await pool.aclose()
