"""Request bodies and whole-request deadlines, against misbehaving loopback servers.

* A server may answer an upload before reading it (413) and hang up: its
  answer is what the caller gets, not the failed write.
* ``Expect: 100-continue`` keeps a large body unsent until the server agrees;
  the servers here count the body bytes they received to prove it.
* ``Timeout.total`` stops a server that trickles bytes just fast enough to
  keep every read timeout from firing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import cast

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest
import trio
import trio.testing
from h2.errors import ErrorCodes

from crawler.http import (
    Client,
    Request,
    Timeout,
    TimeoutException,
    TotalTimeout,
    WriteError,
    _http11,
)
from tests.http.pools import GUARD, assert_healthy, get, pool_for
from tests.servers import HUGE_HEAD, read_head, serve_tcp, trickling_server

Handler = Callable[[trio.SocketStream], Awaitable[None]]
BIG = 32 * 1024 * 1024
TOO_LARGE = (
    b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large"
)


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name == b"content-length":
            return int(value)
    raise AssertionError(f"no Content-Length in {head!r}")


async def read_to_eof(stream: trio.SocketStream) -> int:
    """Bytes received until the client closes; the read fails if it never does."""
    received = 0
    with trio.fail_after(GUARD):
        while chunk := await stream.receive_some(65536):
            received += len(chunk)
    return received


async def read_exactly(stream: trio.SocketStream, have: bytes, size: int) -> bytes:
    parts = [have]
    got = len(have)
    while got < size:
        chunk = await stream.receive_some(min(65536 * 4, size - got))
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


# -- an answer that comes before the upload is over ---------------------------


async def test_early_response_during_upload_is_returned() -> None:
    async def refuse(stream: trio.SocketStream) -> None:
        async with stream:
            await read_head(stream)
            await stream.send_all(TOO_LARGE)
        # Closing with the body unread resets the connection under the client.

    with trio.fail_after(GUARD):
        async with serve_tcp(refuse) as port, pool_for(expect_continue=None) as pool:
            url = f"http://127.0.0.1:{port}/upload"
            status, body, _ = await get(pool, url, "POST", content=b"x" * BIG)
            assert (status, body) == (413, b"too large")
            await assert_healthy(pool)


async def test_upload_cut_off_without_an_answer_is_still_a_write_error() -> None:
    async def hang_up(stream: trio.SocketStream) -> None:
        async with stream:
            await read_head(stream)

    with trio.fail_after(GUARD):
        async with serve_tcp(hang_up) as port, pool_for(expect_continue=None) as pool:
            url = f"http://127.0.0.1:{port}/upload"
            with pytest.raises(WriteError, match=f"{url} failed while sending"):
                await get(pool, url, "POST", content=b"x" * BIG)
            await assert_healthy(pool)


# -- Expect: 100-continue -------------------------------------------------------


def rejecting_server(received: list[int], heads: list[bytes]) -> Handler:
    """Answers 417 to the head and counts the body bytes that still arrive."""

    async def handler(stream: trio.SocketStream) -> None:
        async with stream:
            head, rest = await read_head(stream)
            heads.append(head)
            await stream.send_all(
                b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 4\r\n\r\nnope"
            )
            received.append(len(rest) + await read_to_eof(stream))

    return handler


@pytest.fixture
def patient(monkeypatch: pytest.MonkeyPatch) -> None:
    """Wait for the server's answer as long as the hang guard allows: a loaded
    machine must not turn a refusal into an upload."""
    monkeypatch.setattr(_http11, "EXPECT_CONTINUE_WAIT", GUARD)


@pytest.mark.usefixtures("patient")
async def test_server_that_refuses_upfront_receives_no_body() -> None:
    received: list[int] = []
    heads: list[bytes] = []
    with trio.fail_after(GUARD):
        async with serve_tcp(rejecting_server(received, heads)) as port, pool_for() as pool:
            url = f"http://127.0.0.1:{port}/upload"
            status, body, _ = await get(pool, url, "PUT", content=b"x" * (2 * 1024 * 1024))
            assert (status, body) == (417, b"nope")
            await assert_healthy(pool)
    # The server saw the client close the connection, without one body byte.
    assert received == [0]
    assert b"expect: 100-continue" in heads[0]


@pytest.mark.usefixtures("patient")
async def test_callers_own_expect_header_is_respected_for_a_small_body() -> None:
    received: list[int] = []
    heads: list[bytes] = []
    with trio.fail_after(GUARD):
        async with serve_tcp(rejecting_server(received, heads)) as port, pool_for() as pool:
            url = f"http://127.0.0.1:{port}/upload"
            headers = {"Expect": "100-continue"}
            status, _, _ = await get(pool, url, "POST", content=b"small", headers=headers)
            assert status == 417
    assert received == [0]
    assert heads[0].count(b"expect:") == 1


def accepting_server(digests: list[str], *, send_continue: bool) -> Handler:
    async def handler(stream: trio.SocketStream) -> None:
        async with stream:
            head, rest = await read_head(stream)
            assert b"expect: 100-continue" in head
            if send_continue:
                await stream.send_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            body = await read_exactly(stream, rest, content_length(head))
            digests.append(hashlib.sha256(body).hexdigest())
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await read_to_eof(stream)

    return handler


@pytest.mark.parametrize("send_continue", [True, False], ids=["continue", "ignores-expect"])
async def test_body_is_sent_whole_after_continue_or_without_an_answer(
    send_continue: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Waiting for 100 Continue must not be cut short by a slow server, and
    # a server that ignores Expect need not hold the test up for a second.
    monkeypatch.setattr(_http11, "EXPECT_CONTINUE_WAIT", GUARD if send_continue else 0.05)
    body = bytes(range(256)) * (8 * 1024 + 3)  # 2 MiB and a bit, not all one byte
    digests: list[str] = []
    handler = accepting_server(digests, send_continue=send_continue)
    with trio.fail_after(GUARD):
        async with serve_tcp(handler) as port, pool_for() as pool:
            status, answer, _ = await get(
                pool, f"http://127.0.0.1:{port}/upload", "POST", content=body
            )
            assert (status, answer) == (200, b"ok")
    assert digests == [hashlib.sha256(body).hexdigest()]


async def test_expect_continue_can_be_turned_off() -> None:
    received: list[int] = []
    heads: list[bytes] = []
    with trio.fail_after(GUARD):
        async with (
            serve_tcp(rejecting_server(received, heads)) as port,
            pool_for(expect_continue=None) as pool,
        ):
            await get(pool, f"http://127.0.0.1:{port}/", "POST", content=b"x" * 1024)
    assert b"expect:" not in heads[0]
    with pytest.raises(ValueError, match="expect_continue"):
        Client(expect_continue=-1)


# -- Timeout.total --------------------------------------------------------------


SMALL_HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"


@pytest.mark.parametrize(
    ("head", "drip_head"),
    [(SMALL_HEAD, True), (SMALL_HEAD, False), (HUGE_HEAD, False)],
    ids=["head", "eager-body", "streamed-body"],
)
async def test_trickling_server_is_stopped_by_the_total_timeout(
    head: bytes, drip_head: bool
) -> None:
    timeout = Timeout(1.0, total=0.5)
    with trio.fail_after(GUARD):
        async with (
            serve_tcp(trickling_server(head, drip_head=drip_head)) as port,
            pool_for(timeout=timeout) as pool,
        ):
            url = f"http://127.0.0.1:{port}/slow"
            with pytest.raises(TotalTimeout, match=rf"GET {url} .*total timeout of 0\.5 s"):
                await get(pool, url)
            await assert_healthy(pool)


async def test_streamed_body_read_after_the_total_timeout_raises(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def stall(stream: trio.SocketStream) -> None:
        async with stream:
            await read_head(stream)
            await stream.send_all(HUGE_HEAD + b"x" * 10)
            await trio.sleep_forever()

    with trio.fail_after(GUARD):
        async with serve_tcp(stall) as port, pool_for() as pool:
            url = f"http://127.0.0.1:{port}/later"
            request = Request("GET", url, timeout=Timeout(None, total=2.0))
            response = await pool.handle_request(request)
            await trio.sleep(3)  # the mock clock: time passes, nobody waits
            with pytest.raises(TotalTimeout, match=url):
                await response.aread()
            await assert_healthy(pool)


async def test_client_total_timeout_covers_the_body() -> None:
    with trio.fail_after(GUARD):
        async with (
            serve_tcp(trickling_server(HUGE_HEAD)) as port,
            Client(timeout=Timeout(1.0, total=0.5)) as client,
        ):
            url = f"http://127.0.0.1:{port}/"
            with pytest.raises(TotalTimeout) as caught:
                await client.get(url)
            assert isinstance(caught.value, TimeoutException)
            async with client.stream("GET", url) as response:
                with pytest.raises(TotalTimeout):
                    async for _ in response.aiter_bytes():
                        pass


def test_total_timeout_is_validated_and_kept_when_copied() -> None:
    timeout = Timeout(5.0, total=30.0)
    assert Timeout(timeout).total == 30.0
    assert Timeout(5.0).total is None
    assert timeout != Timeout(5.0)
    assert "total=30.0" in repr(timeout)
    with pytest.raises(ValueError, match="total"):
        Timeout(total=-1)


# -- HTTP/2 ---------------------------------------------------------------------


def h2_server(on_request: Callable[[h2.connection.H2Connection, int, str], str]) -> Handler:
    """A raw h2c server: ``on_request(conn, stream_id, path)`` acts on each request's
    headers and returns "trickle" to drip a body byte every 50 ms on that stream."""

    async def handler(sock: trio.SocketStream) -> None:
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        conn = h2.connection.H2Connection(config=config)
        conn.initiate_connection()
        trickling: list[int] = []
        try:
            await sock.send_all(conn.data_to_send())
            for _ in range(10_000):
                with trio.move_on_after(0.05):
                    data = await sock.receive_some(65536)
                    if not data:
                        return
                    for event in conn.receive_data(data):
                        if isinstance(event, h2.events.RequestReceived):
                            # Text, as header_encoding asks, though h2's types say bytes.
                            headers = cast("list[tuple[str, str]]", event.headers)
                            path = dict(headers)[":path"]
                            if on_request(conn, event.stream_id, path) == "trickle":
                                trickling.append(event.stream_id)
                for stream_id in trickling:
                    stream = conn.streams.get(stream_id)  # gone once reset
                    if stream is not None and stream.open:
                        conn.send_data(stream_id, b"x")
                await sock.send_all(conn.data_to_send())
        except (trio.BrokenResourceError, trio.ClosedResourceError, h2.exceptions.H2Error):
            pass
        finally:
            await trio.aclose_forcefully(sock)

    return handler


def answer(conn: h2.connection.H2Connection, stream_id: int, status: int, body: bytes) -> None:
    conn.send_headers(stream_id, [(":status", str(status)), ("content-length", str(len(body)))])
    conn.send_data(stream_id, body, end_stream=True)


async def test_http2_early_response_and_rst_stream_no_error_during_upload() -> None:
    def on_request(conn: h2.connection.H2Connection, stream_id: int, path: str) -> str:
        if path == "/upload":
            # Answer at once, then ask the client to stop sending (RFC 9113 8.1);
            # the body never gets more than the initial 64 KiB window.
            answer(conn, stream_id, 413, b"too large")
            conn.reset_stream(stream_id, ErrorCodes.NO_ERROR)
        else:
            answer(conn, stream_id, 200, b"ok")
        return ""

    with trio.fail_after(GUARD):
        async with (
            serve_tcp(h2_server(on_request)) as port,
            pool_for(http2_prior_knowledge=True) as pool,
        ):
            base = f"http://127.0.0.1:{port}"
            status, body, version = await get(pool, base + "/upload", "POST", content=b"x" * BIG)
            assert (status, body, version) == (413, b"too large", "HTTP/2")
            assert (await get(pool, base + "/next"))[:2] == (200, b"ok")


async def test_http2_trickling_stream_is_stopped_by_the_total_timeout() -> None:
    def on_request(conn: h2.connection.H2Connection, stream_id: int, path: str) -> str:
        if path == "/slow":
            conn.send_headers(stream_id, [(":status", "200")])
            return "trickle"
        answer(conn, stream_id, 200, b"ok")
        return ""

    timeout = Timeout(1.0, total=0.5)
    with trio.fail_after(GUARD):
        async with (
            serve_tcp(h2_server(on_request)) as port,
            pool_for(http2_prior_knowledge=True, timeout=timeout) as pool,
        ):
            base = f"http://127.0.0.1:{port}"
            with pytest.raises(TotalTimeout, match=f"{base}/slow"):
                await get(pool, base + "/slow")
            assert (await get(pool, base + "/next"))[:2] == (200, b"ok")
