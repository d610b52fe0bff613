"""HTTP/1.1 message handling and error translation, against real loopback servers.

Well-behaved servers run on ``serve_h11`` (which counts connections server-side);
servers that misbehave on purpose are raw trio socket handlers on ``serve_tcp``.
Every test runs under a hang guard, and after every failure the pool must still
serve a normal request with no connection left checked out.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from typing import cast

import pytest
import trio
import trio.testing

from crawler.http import (
    ConnectError,
    ConnectTimeout,
    Limits,
    LocalProtocolError,
    ReadError,
    ReadTimeout,
    RemoteProtocolError,
    Request,
    Timeout,
    UnsupportedProtocol,
    WriteTimeout,
)
from crawler.http._http11 import EAGER_BODY_MAX, HTTP11Connection
from crawler.http._pool import ConnectionPool
from tests.http.pools import GUARD, assert_healthy, get, pool_for
from tests.servers import Reply, Seen, serve_h11, serve_tcp

# Every test here runs with h11's internals and with its public API only.
pytestmark = pytest.mark.usefixtures("h11_api")


async def read_head(stream: trio.SocketStream) -> bytes:
    """Read one request head from a raw connection (enough for these servers)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return data
        data += chunk
    return data


def raw_server(
    reply: bytes, *, then_close: bool = True
) -> Callable[[trio.SocketStream], Awaitable[None]]:
    async def handler(stream: trio.SocketStream) -> None:
        async with stream:
            if await read_head(stream):
                try:
                    await stream.send_all(reply)
                except trio.BrokenResourceError:
                    return  # the client gave up on a reply it rejected: expected
                if not then_close:
                    await trio.sleep_forever()

    return handler


# -- message framing -------------------------------------------------------------------


async def test_content_length_and_chunked_bodies_reuse_one_connection() -> None:
    def responder(seen: Seen) -> Reply:
        if seen.target == "/chunked":
            return Reply(200, [("Transfer-Encoding", "chunked")], b"chunky " * 1000)
        return Reply(200, [], b"plain")

    with trio.fail_after(GUARD):
        async with serve_h11(responder) as server, pool_for() as pool:
            assert await get(pool, server.url + "/cl") == (200, b"plain", "HTTP/1.1")
            assert await get(pool, server.url + "/chunked") == (200, b"chunky " * 1000, "HTTP/1.1")
            assert await get(pool, server.url + "/cl") == (200, b"plain", "HTTP/1.1")
            assert server.connections_total == 1


async def test_large_body_streams_and_connection_is_reused_after_it() -> None:
    big = bytes(range(256)) * (EAGER_BODY_MAX // 256 * 3)

    with trio.fail_after(GUARD):
        async with serve_h11(lambda seen: Reply(200, [], big)) as server, pool_for() as pool:
            response = await pool.handle_request(Request("GET", server.url + "/big"))
            assert pool.num_active == 1  # still streaming: the connection is checked out
            chunks = [chunk async for chunk in response.aiter_bytes()]
            assert len(chunks) > 1
            assert b"".join(chunks) == big
            assert pool.num_active == 0 and pool.num_idle == 1
            assert (await get(pool, server.url + "/small"))[0] == 200
            assert server.connections_total == 1


async def test_chunked_body_streams_without_waiting_for_its_end() -> None:
    more = trio.Event()

    async def slow_chunks(stream: trio.SocketStream) -> None:
        async with stream:
            await read_head(stream)
            await stream.send_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n"
            )
            await more.wait()
            await stream.send_all(b"6\r\nsecond\r\n0\r\n\r\n")
            await trio.sleep_forever()

    with trio.fail_after(GUARD):
        async with serve_tcp(slow_chunks) as port, pool_for() as pool:
            response = await pool.handle_request(Request("GET", f"http://127.0.0.1:{port}/"))
            assert pool.num_active == 1  # returned before the body ended
            chunks = response.aiter_bytes()
            assert await chunks.__anext__() == b"first"
            more.set()
            assert [chunk async for chunk in chunks] == [b"second"]
            assert pool.num_active == 0 and pool.num_idle == 1


async def test_closing_a_half_read_response_closes_its_connection() -> None:
    big = b"x" * (EAGER_BODY_MAX * 4)
    with trio.fail_after(GUARD):
        async with serve_h11(lambda seen: Reply(200, [], big)) as server, pool_for() as pool:
            response = await pool.handle_request(Request("GET", server.url + "/big"))
            await response.aclose()
            assert pool.num_active == 0 and pool.num_idle == 0
            assert (await get(pool, server.url + "/again"))[0] == 200
            assert server.connections_total == 2


async def test_body_delimited_by_close() -> None:
    reply = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"
    with trio.fail_after(GUARD):
        async with serve_tcp(raw_server(reply)) as port, pool_for() as pool:
            assert await get(pool, f"http://127.0.0.1:{port}/") == (
                200,
                b"until the end",
                "HTTP/1.1",
            )
            assert pool.num_idle == 0
            await assert_healthy(pool)


async def test_http10_server_is_not_kept_alive() -> None:
    reply = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi"
    with trio.fail_after(GUARD):
        async with serve_tcp(raw_server(reply, then_close=False)) as port, pool_for() as pool:
            assert await get(pool, f"http://127.0.0.1:{port}/") == (200, b"hi", "HTTP/1.0")
            assert pool.num_idle == 0 and pool.num_active == 0


async def test_connection_close_response_is_not_reused() -> None:
    reply = Reply(200, [("Connection", "close")], b"bye")
    with trio.fail_after(GUARD):
        async with serve_h11(lambda seen: reply) as server, pool_for() as pool:
            assert (await get(pool, server.url + "/1"))[1] == b"bye"
            assert (await get(pool, server.url + "/2"))[1] == b"bye"
            assert server.connections_total == 2
            assert pool.num_idle == 0


async def test_informational_responses_are_skipped() -> None:
    reply = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone"
    )
    with trio.fail_after(GUARD):
        async with serve_tcp(raw_server(reply, then_close=False)) as port, pool_for() as pool:
            status, body, _ = await get(pool, f"http://127.0.0.1:{port}/", "POST", content=b"x")
            assert (status, body) == (201, b"done")


@pytest.mark.parametrize("status", [204, 304])
async def test_responses_without_body(status: int) -> None:
    with trio.fail_after(GUARD):
        async with serve_h11(lambda seen: Reply(status, [])) as server, pool_for() as pool:
            assert (await get(pool, server.url + "/a"))[:2] == (status, b"")
            assert (await get(pool, server.url + "/b"))[:2] == (status, b"")
            assert server.connections_total == 1


async def test_head_has_no_body_despite_content_length() -> None:
    reply = Reply(200, [("Content-Length", "1000")], b"")
    with trio.fail_after(GUARD):
        async with serve_h11(lambda seen: reply) as server, pool_for() as pool:
            response = await pool.handle_request(Request("HEAD", server.url + "/"))
            assert response.headers["content-length"] == "1000"
            assert await response.aread() == b""
            assert (await get(pool, server.url + "/", "HEAD"))[1] == b""
            assert server.connections_total == 1


async def test_host_header_from_url_unless_given() -> None:
    with trio.fail_after(GUARD):
        async with serve_h11() as server, pool_for() as pool:
            await get(pool, server.url + "/a?q=1")
            await get(pool, server.url + "/b", headers={"Host": "example.test"})
            await get(pool, server.url + "/c", "POST", content=b"payload")
    first, second, third = server.requests
    assert first.headers["host"] == f"127.0.0.1:{server.port}"
    assert first.target == "/a?q=1"
    assert second.headers["host"] == "example.test"
    assert (third.method, third.body) == ("POST", b"payload")


async def test_request_head_keeps_header_spelling_and_order() -> None:
    """The head is written byte for byte as given: Host first, then the headers in order,
    names in their own case, latin-1 values as latin-1 (twice, the second time from the
    encoded-header cache)."""
    heads: list[bytes] = []

    async def handler(stream: trio.SocketStream) -> None:
        async with stream:
            for _ in range(2):
                heads.append(await read_head(stream))
                await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    headers = [("X-One", "1"), ("x-TWO", "caf\u00e9"), ("X-One", "again")]
    with trio.fail_after(GUARD):
        async with serve_tcp(handler) as port, pool_for() as pool:
            for _ in range(2):
                assert await get(pool, f"http://127.0.0.1:{port}/p?q=1", headers=headers) == (
                    200,
                    b"ok",
                    "HTTP/1.1",
                )
    expected = (
        f"GET /p?q=1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-One: 1\r\n"
        "x-TWO: caf\u00e9\r\nX-One: again\r\n\r\n"
    ).encode("latin-1")
    assert heads == [expected, expected]


async def test_headers_h11_acts_on_still_take_effect() -> None:
    """Connection: close, a Content-Length and a given Host are all honoured."""
    with trio.fail_after(GUARD):
        async with serve_h11() as server, pool_for() as pool:
            for _ in range(2):
                await get(pool, server.url + "/c", headers={"Connection": "close"})
            await get(
                pool, server.url + "/l", "PUT", headers={"Content-Length": "3"}, content=b"abc"
            )
            await get(pool, server.url + "/h", headers={"host": "example.test"})
    first, second, put, host = server.requests
    assert first.connection_id != second.connection_id  # not reused after close
    assert (put.method, put.body, put.headers["content-length"]) == ("PUT", b"abc", "3")
    assert host.headers["host"] == "example.test"


# -- bad input: every failure is ours, names the URL, and leaves the pool healthy ------


async def test_connection_refused() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    url = f"http://127.0.0.1:{port}/nothing"
    with trio.fail_after(GUARD):
        async with pool_for() as pool:
            with pytest.raises(ConnectError, match=f"127.0.0.1:{port}/nothing") as info:
                await get(pool, url)
            assert info.value.request.url == url
            await assert_healthy(pool)


class _FailingResolver(trio.abc.HostnameResolver):
    def __init__(self, *, hang: bool = False) -> None:
        self.hang = hang

    async def getaddrinfo(self, host, port, family=0, type=0, proto=0, flags=0):  # type: ignore[no-untyped-def]
        if self.hang:
            await trio.sleep_forever()
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def getnameinfo(self, sockaddr, flags):  # type: ignore[no-untyped-def]
        raise NotImplementedError


async def test_dns_failure_is_a_connect_error() -> None:
    trio.socket.set_custom_hostname_resolver(_FailingResolver())
    try:
        with trio.fail_after(GUARD):
            async with pool_for() as pool:
                with pytest.raises(ConnectError, match=r"no-such-host\.test.*not known"):
                    await get(pool, "http://no-such-host.test/page")
                trio.socket.set_custom_hostname_resolver(None)
                await assert_healthy(pool)
    finally:
        trio.socket.set_custom_hostname_resolver(None)


async def test_connect_timeout(autojump_clock: trio.testing.MockClock) -> None:
    trio.socket.set_custom_hostname_resolver(_FailingResolver(hang=True))
    try:
        with trio.fail_after(GUARD):
            async with pool_for(timeout=Timeout(5.0, connect=1.0)) as pool:
                with pytest.raises(ConnectTimeout, match=r"1.0 s connecting to http://slow\.test/"):
                    await get(pool, "http://slow.test/")
                trio.socket.set_custom_hostname_resolver(None)
                await assert_healthy(pool)
    finally:
        trio.socket.set_custom_hostname_resolver(None)


async def test_server_that_never_answers_is_a_read_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def silent(seen: Seen) -> Reply:
        await trio.sleep_forever()
        raise AssertionError

    with trio.fail_after(GUARD):
        async with serve_h11(silent) as server, pool_for() as pool:
            with pytest.raises(ReadTimeout, match=f"{server.url}/wait"):
                await get(pool, server.url + "/wait")
            await assert_healthy(pool)


async def test_request_timeout_overrides_pool_default(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def slow(seen: Seen) -> Reply:
        await trio.sleep(3)
        return Reply(200, [], b"late")

    with trio.fail_after(GUARD):
        async with serve_h11(slow) as server, pool_for(timeout=Timeout(1.0)) as pool:
            with pytest.raises(ReadTimeout, match=r"1\.0 s"):
                await get(pool, server.url + "/")
            assert (await get(pool, server.url + "/", timeout=Timeout(10.0)))[1] == b"late"


async def test_write_timeout_when_server_never_reads(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def deaf(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    body = b"x" * (64 * 1024 * 1024)
    with trio.fail_after(GUARD):
        async with serve_tcp(deaf) as port, pool_for(timeout=Timeout(2.0)) as pool:
            with pytest.raises(WriteTimeout, match=f"127.0.0.1:{port}/upload"):
                await get(pool, f"http://127.0.0.1:{port}/upload", "POST", content=body)
            await assert_healthy(pool)


async def test_body_that_stalls_is_a_read_timeout(autojump_clock: trio.testing.MockClock) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n"
    with trio.fail_after(GUARD):
        async with (
            serve_tcp(raw_server(head + b"x" * 1000, then_close=False)) as port,
            pool_for(timeout=Timeout(2.0)) as pool,
        ):
            url = f"http://127.0.0.1:{port}/stall"
            response = await pool.handle_request(Request("GET", url))
            with pytest.raises(ReadTimeout, match=f"reading the body of {url}"):
                await response.aread()
            await assert_healthy(pool)


async def test_short_timeout_set_while_a_long_one_is_pending(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def silent(seen: Seen) -> Reply:
        await trio.sleep_forever()
        raise AssertionError

    long_outcome: list[BaseException] = []
    long_done = trio.Event()

    async def long_request(pool: ConnectionPool, url: str) -> None:
        try:
            await get(pool, url, timeout=Timeout(60.0))
        except ReadTimeout as exc:
            long_outcome.append(exc)
        long_done.set()

    with trio.fail_after(GUARD * 100):  # virtual time: the clock jumps
        async with serve_h11(silent) as server, pool_for() as pool:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(long_request, pool, server.url + "/long")
                await trio.testing.wait_all_tasks_blocked()
                with pytest.raises(ReadTimeout, match=r"1\.0 s"):
                    await get(pool, server.url + "/short", timeout=Timeout(1.0))
                # The short deadline fired on its own, not when the long one did.
                assert long_outcome == []
                await long_done.wait()
                assert "60.0 s" in str(long_outcome[0])
            assert pool.num_active == 0


@pytest.mark.parametrize(
    ("reply", "match"),
    [
        (b"HTTX/1.1 200 OK\r\n\r\n", "Invalid HTTP"),
        (b"HTTP/1.1 200 OK\r\nBad Header Line\r\n\r\n", "Invalid HTTP"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", "Invalid HTTP"),
        (b"", "disconnected without sending a response"),
        (b"HTTP/1.1 200 OK\r\n" + b"X-Big: " + b"a" * 200_000 + b"\r\n\r\n", "Invalid HTTP"),
    ],
    ids=["status-line", "header-line", "short-body", "empty", "huge-head"],
)
async def test_malformed_responses_are_remote_protocol_errors(reply: bytes, match: str) -> None:
    with trio.fail_after(GUARD):
        async with serve_tcp(raw_server(reply)) as port, pool_for() as pool:
            url = f"http://127.0.0.1:{port}/bad"
            with pytest.raises(RemoteProtocolError, match=match) as info:
                await get(pool, url)
            assert url in str(info.value)
            await assert_healthy(pool)


async def test_reset_mid_body() -> None:
    async def resetter(stream: trio.SocketStream) -> None:
        await read_head(stream)
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n" + b"x" * 1000)
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00" * 2)
        await stream.aclose()

    with trio.fail_after(GUARD):
        async with serve_tcp(resetter) as port, pool_for() as pool:
            url = f"http://127.0.0.1:{port}/reset"
            with pytest.raises((ReadError, RemoteProtocolError), match="/reset"):
                await get(pool, url)
            await assert_healthy(pool)


async def test_unsupported_scheme_and_missing_host() -> None:
    with trio.fail_after(GUARD):
        async with pool_for() as pool:
            with pytest.raises(UnsupportedProtocol, match=r"ftp://example\.test/f"):
                await get(pool, "ftp://example.test/f")
            with pytest.raises(UnsupportedProtocol, match="missing"):
                await get(pool, "/relative/only")
            await assert_healthy(pool)


async def test_non_ascii_target_is_refused_locally() -> None:
    with trio.fail_after(GUARD):
        async with serve_h11() as server, pool_for() as pool:
            request = Request("GET", server.url + "/")
            request.headers["X-Fine"] = "ok"
            response = await pool.handle_request(request)
            assert response.status_code == 200
            bad = Request("GET", server.url + "/", headers={"X-Bad": "caf\u00e9\u2603"})
            with pytest.raises(LocalProtocolError, match="Cannot send request"):
                await pool.handle_request(bad)
            assert pool.num_active == 0


# -- the connection object itself -----------------------------------------------------


async def test_idle_connection_becomes_readable_when_server_closes_it() -> None:
    closed = trio.Event()

    async def close_after_one(stream: trio.SocketStream) -> None:
        async with stream:
            await read_head(stream)
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        closed.set()

    with trio.fail_after(GUARD):
        async with serve_tcp(close_after_one) as port, pool_for() as pool:
            assert (await get(pool, f"http://127.0.0.1:{port}/"))[1] == b"ok"
            (conn,) = cast("dict[HTTP11Connection, None]", pool._idle_all)
            assert repr(conn).startswith(f"<HTTP11Connection [http://127.0.0.1:{port}, IDLE")
            assert conn.is_idle() and conn.is_available()
            await closed.wait()
            assert conn.is_readable()
            conn.close()
            assert "CLOSED" in repr(conn)
            assert not conn.is_idle()


async def test_pool_limits_are_validated() -> None:
    with pytest.raises(ValueError, match=r"example\.test"):
        ConnectionPool(host_limits={"example.test": 0})
    assert "HTTP/2: 0 connections" in repr(ConnectionPool(http2=True))
    assert isinstance(ConnectionPool(limits=Limits(max_connections=None)), ConnectionPool)
