"""What reaches the wire: nothing that could split a header or a request line.

Headers are checked when a ``Request`` is built, but auth, cookies and callers
change requests after that; so the connection checks again as it encodes the
head, for HTTP/1.1 and HTTP/2 alike. Each test here proves, on the server's
side of a real loopback connection, that an injected line never arrived, and
that the error names the offending header. Also here: the caps on what a
server may send before the final response, and request-smuggling hygiene.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import pytest
import trio

from crawler.http import (
    BearerAuth,
    Client,
    CookieError,
    HTTPError,
    LocalProtocolError,
    RemoteProtocolError,
    Request,
)
from crawler.http._http11 import MAX_INFORMATIONAL
from tests.http.pools import GUARD, pool_for
from tests.servers import TCPHandler, recorder, serve_tcp

# Every test here runs with h11's internals and with its public API only.
pytestmark = pytest.mark.usefixtures("h11_api")

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
MARK = b"x-injected"


async def _bearer(client: Client, url: str) -> object:
    return await client.get(url + "/a", auth=BearerAuth("tok\r\nX-Injected: 1"))


async def _auth_callable(client: Client, url: str) -> object:
    def sign(request: Request) -> Request:
        request.headers["X-Signature"] = "sig\r\nX-Injected: 1"
        return request

    return await client.get(url + "/a", auth=sign)


async def _cookies(client: Client, url: str) -> object:
    return await client.get(url + "/a", cookies={"a": "b\r\nX-Injected: 2"})


async def _late_header(client: Client, url: str) -> object:
    request = client.build_request("GET", url + "/a")
    request.headers["X-Late"] = "v\r\nX-Injected: 3"
    return await client.send(request)


async def _late_header_with_body(client: Client, url: str) -> object:
    # Content-Length takes h11's own path rather than the fast one.
    request = client.build_request("POST", url + "/a", content=b"x")
    request.headers["X-Late"] = "v\nX-Injected: 3"
    return await client.send(request)


async def _late_nul(client: Client, url: str) -> object:
    request = client.build_request("GET", url + "/a")
    request.headers["X-Late"] = "v\x00X-Injected: 3"
    return await client.send(request)


async def _name_with_colon(client: Client, url: str) -> object:
    request = client.build_request("GET", url + "/a")
    request.headers["X-Injected: 4\r\nX-Pad"] = "v"
    return await client.send(request)


async def _name_with_trailing_newline(client: Client, url: str) -> object:
    # A pattern anchored with "$" lets one trailing "\n" through.
    return await client.get(url + "/a", headers={"X-Injected\n": "5"})


async def _name_with_space(client: Client, url: str) -> object:
    request = client.build_request("GET", url + "/a")
    request.headers["X-Injected 6"] = "v"
    return await client.send(request)


async def _pseudo_header(client: Client, url: str) -> object:
    request = client.build_request("GET", url + "/a")
    request.headers[":path"] = "/x-injected"
    return await client.send(request)


async def _not_latin1(client: Client, url: str) -> object:
    # Not an injection, but a header that can never be sent: the error says which.
    request = client.build_request("GET", url + "/a")
    request.headers["X-Label"] = "\u2603 x-injected"
    return await client.send(request)


async def _not_latin1_with_body(client: Client, url: str) -> object:
    request = client.build_request("POST", url + "/a", content=b"x")
    request.headers["X-Label"] = "\u2603 x-injected"
    return await client.send(request)


ATTACKS: dict[str, tuple[Callable[[Client, str], object], str]] = {
    "bearer-auth": (_bearer, "'Authorization'"),
    "auth-callable": (_auth_callable, "'X-Signature'"),
    "per-request-cookies": (_cookies, "cookie 'a'"),
    "header-after-build": (_late_header, "'X-Late'"),
    "header-after-build-with-body": (_late_header_with_body, "'X-Late'"),
    "nul-after-build": (_late_nul, "'X-Late'"),
    "name-with-colon": (_name_with_colon, "X-Injected: 4"),
    "name-with-trailing-newline": (_name_with_trailing_newline, "X-Injected"),
    "name-with-space": (_name_with_space, "'X-Injected 6'"),
    "pseudo-header-name": (_pseudo_header, "':path'"),
    "not-latin-1": (_not_latin1, "'X-Label'"),
    "not-latin-1-with-body": (_not_latin1_with_body, "'X-Label'"),
}


# Refused before the wire, as the cookies given are checked: see test_wire_inbound.py.
REFUSED_EARLIER: dict[str, type[HTTPError]] = {"per-request-cookies": CookieError}


async def _refused(client: Client, url: str, name: str) -> HTTPError:
    attack, named = ATTACKS[name]
    with pytest.raises(REFUSED_EARLIER.get(name, LocalProtocolError)) as info:
        await attack(client, url)  # type: ignore[misc]
    message = str(info.value)
    assert named in message
    assert "tok" not in message  # a credential is never repeated in an error
    return info.value


@pytest.mark.parametrize("name", list(ATTACKS))
async def test_http11_injection_never_reaches_the_server(name: str) -> None:
    with trio.fail_after(GUARD):
        async with recorder() as (url, server):
            async with Client() as client:
                await _refused(client, url, name)
                # The client is still usable, and the server really records requests.
                response = await client.get(url + "/after")
                assert response.content == b"ok"
            await server.quiet()
    assert b"GET /after HTTP/1.1\r\n" in server.received
    assert server.received.count(b" HTTP/1.1\r\n") == 1  # nothing else was sent
    assert MARK not in bytes(server.received).lower()
    assert b":path" not in server.received


async def test_http11_method_changed_after_build_is_refused() -> None:
    with trio.fail_after(GUARD):
        async with recorder() as (url, server):
            async with Client() as client:
                request = client.build_request("GET", url + "/a")
                request.method = "GET /a HTTP/1.1\r\nX-Injected: 7\r\nX-Pad: "
                with pytest.raises(LocalProtocolError, match="method"):
                    await client.send(request)
                request = client.build_request("GET", url + "/a")
                request.method = "GET /a"
                with pytest.raises(LocalProtocolError, match="method"):
                    await client.send(request)
            await server.quiet()
    assert server.received == b""


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_http11_target_with_line_break_is_refused(method: str) -> None:
    with trio.fail_after(GUARD):
        async with recorder() as (url, server):
            async with Client() as client:
                request = client.build_request(method, url + "/a", content=b"x")
                # URL quotes what it parses; this is a path set behind its back.
                object.__setattr__(request.url, "path", "/a HTTP/1.1\r\nX-Injected: 8\r\nX: ")
                with pytest.raises(LocalProtocolError, match="target"):
                    await client.send(request)
            await server.quiet()
    assert server.received == b""


# -- HTTP/2 -----------------------------------------------------------------------


@dataclass
class H2Recorder:
    """An h2c server that keeps every header field it received, unchecked, and
    answers each request (after ``informational`` 103 responses)."""

    informational: int = 0
    fields: list[tuple[bytes, bytes]] = field(default_factory=list)
    requests: int = 0

    async def handle(self, sock: trio.SocketStream) -> None:
        config = h2.config.H2Configuration(
            client_side=False, header_encoding=None, validate_inbound_headers=False
        )
        conn = h2.connection.H2Connection(config=config)
        conn.initiate_connection()
        await sock.send_all(conn.data_to_send())
        try:
            for _ in range(10_000):
                data = await sock.receive_some(65536)
                if not data:
                    return
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        self.requests += 1
                        self.fields.extend(event.headers)
                    elif isinstance(event, h2.events.StreamEnded):
                        await self._answer(conn, sock, event.stream_id)
                await sock.send_all(conn.data_to_send())
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(sock)

    async def _answer(
        self, conn: h2.connection.H2Connection, sock: trio.SocketStream, stream_id: int
    ) -> None:
        for _ in range(self.informational):
            conn.send_headers(stream_id, [(b":status", b"103"), (b"link", b"</s.css>")])
            await sock.send_all(conn.data_to_send())
        conn.send_headers(stream_id, [(b":status", b"200"), (b"content-length", b"2")])
        conn.send_data(stream_id, b"ok", end_stream=True)


@asynccontextmanager
async def h2_recorder(informational: int = 0) -> AsyncIterator[tuple[str, H2Recorder]]:
    server = H2Recorder(informational)
    async with serve_tcp(server.handle) as port:
        yield f"http://127.0.0.1:{port}", server


def _clean(fields: list[tuple[bytes, bytes]]) -> bool:
    return not any(
        MARK in name.lower() or MARK in value.lower() or b"\r" in value or b"\n" in value
        for name, value in fields
    )


@pytest.mark.parametrize("name", list(ATTACKS))
async def test_http2_injection_never_reaches_the_server(name: str) -> None:
    with trio.fail_after(GUARD):
        async with (
            h2_recorder() as (url, server),
            Client(http2_prior_knowledge=True) as client,
        ):
            await _refused(client, url, name)
            response = await client.get(url + "/after")
            assert response.http_version == "HTTP/2"
            assert response.content == b"ok"
    assert server.requests == 1
    assert (b":path", b"/after") in server.fields
    assert _clean(server.fields)
    assert [n for n, _ in server.fields].count(b":path") == 1


@pytest.mark.parametrize(
    ("attribute", "value"),
    [("method", "GET /a"), ("method", "GET\r\nx-injected: 9"), ("path", "/a b\r\nx-injected")],
)
async def test_http2_pseudo_header_values_are_checked(attribute: str, value: str) -> None:
    with trio.fail_after(GUARD):
        async with (
            h2_recorder() as (url, server),
            Client(http2_prior_knowledge=True) as client,
        ):
            request = client.build_request("GET", url + "/a")
            if attribute == "method":
                request.method = value
            else:
                object.__setattr__(request.url, "path", value)
            with pytest.raises(LocalProtocolError, match=attribute.replace("path", "target")):
                await client.send(request)
            assert (await client.get(url + "/after")).content == b"ok"
    assert server.requests == 1
    assert _clean(server.fields)


# -- what a server may send before the final response ----------------------------


def _early_hints(count: int) -> TCPHandler:
    async def handler(stream: trio.SocketStream) -> None:
        async with stream:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                data += chunk
            hint = b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
            try:
                await stream.send_all(hint * count + OK)
                await stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    return handler


async def test_http11_informational_flood_is_refused() -> None:
    with trio.fail_after(GUARD):
        async with serve_tcp(_early_hints(30_000)) as port, pool_for() as pool:
            with pytest.raises(RemoteProtocolError, match=f"more than {MAX_INFORMATIONAL}"):
                await pool.handle_request(Request("GET", f"http://127.0.0.1:{port}/"))
            assert pool.num_active == 0 and pool.num_idle == 0  # closed, not kept


async def test_http11_informational_responses_up_to_the_cap_are_skipped() -> None:
    with trio.fail_after(GUARD):
        async with serve_tcp(_early_hints(MAX_INFORMATIONAL)) as port, pool_for() as pool:
            response = await pool.handle_request(Request("GET", f"http://127.0.0.1:{port}/"))
            assert response.status_code == 200
            assert await response.aread() == b"ok"


async def test_http2_informational_flood_is_refused() -> None:
    with trio.fail_after(GUARD):
        async with (
            h2_recorder(informational=1_000) as (url, _),
            Client(http2_prior_knowledge=True) as client,
        ):
            with pytest.raises(RemoteProtocolError, match=f"more than {MAX_INFORMATIONAL}"):
                await client.get(url + "/flood")


async def test_http2_informational_responses_up_to_the_cap_are_skipped() -> None:
    with trio.fail_after(GUARD):
        async with (
            h2_recorder(informational=MAX_INFORMATIONAL) as (url, _),
            Client(http2_prior_knowledge=True) as client,
        ):
            response = await client.get(url + "/hints")
            assert (response.status_code, response.content) == (200, b"ok")


# -- request-smuggling hygiene ----------------------------------------------------


@dataclass
class Framing:
    """Answers each request on a connection with ``reply``; counts connections."""

    reply: bytes
    connections: int = 0
    requests: list[int] = field(default_factory=list)

    async def handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        number = self.connections
        pending = b""
        try:
            async with stream:
                for _ in range(1_000):
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        return
                    pending += chunk
                    while b"\r\n\r\n" in pending:
                        _, pending = pending.split(b"\r\n\r\n", 1)
                        self.requests.append(number)
                        await stream.send_all(self.reply)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


BOTH = (
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n0\r\n\r\n"
)
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"


@pytest.mark.parametrize(("reply", "connections"), [(BOTH, [1, 2]), (CHUNKED, [1, 1])])
async def test_content_length_with_chunked_closes_the_connection(
    reply: bytes, connections: list[int]
) -> None:
    server = Framing(reply)
    with trio.fail_after(GUARD):
        async with serve_tcp(server.handle) as port, pool_for() as pool:
            for _ in range(2):
                response = await pool.handle_request(Request("GET", f"http://127.0.0.1:{port}/"))
                assert await response.aread() == b"hello"
    assert server.requests == connections
