"""What may come in, and what user-given cookies may put on the wire.

HTTP/2 response heads are checked as h11 checks HTTP/1.1 ones: a header whose
name is not a token or whose value holds CR, LF or NUL would be echoed on by
anything that repeats response headers (a redirect's Location, Set-Cookie
into a later Cookie header, a log line). Such a response fails with
``RemoteProtocolError`` and only its stream is reset; the servers here are raw
h2 servers with h2's own outbound checks off, so they can send what a hostile
server would.

Cookies given by the caller (per request, or to the client) are checked so
that none can add another cookie to the Cookie header, and each refusal is
proven on the server's side of a real loopback connection.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import pytest
import trio
from h2.errors import ErrorCodes

from crawler.http import Client, Cookie, CookieError, Cookies, RemoteProtocolError, Request
from tests.http.pools import GUARD, pool_for
from tests.servers import recorder, serve_tcp

OK_FIELDS = [(b":status", b"200"), (b"content-length", b"2")]


@dataclass
class HostileH2:
    """An h2c server that answers ``/bad`` with ``bad`` added to an otherwise good
    head, ``/bad-open`` the same but leaves the stream open (a body still to
    come: the client must reset it), and every other path normally. ``/held``
    is answered only once a stream reset has arrived from the client, so a test
    can prove a stream survived it."""

    bad: tuple[bytes, bytes] = (b"x-ok", b"1")
    connections: int = 0
    resets: list[tuple[int, int]] = field(default_factory=list)  # (stream id, error code)
    held: int = 0
    held_seen: trio.Event = field(default_factory=trio.Event)
    settings_acked: trio.Event = field(default_factory=trio.Event)

    async def handle(self, sock: trio.SocketStream) -> None:
        self.connections += 1
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            validate_inbound_headers=False,
        )
        conn = h2.connection.H2Connection(config=config)
        conn.initiate_connection()
        await sock.send_all(conn.data_to_send())
        paths: dict[int, bytes] = {}
        try:
            for _ in range(10_000):
                data = await sock.receive_some(65536)
                if not data:
                    return
                for event in conn.receive_data(data):
                    self._on(conn, event, paths)
                await sock.send_all(conn.data_to_send())
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(sock)

    def _on(self, conn: h2.connection.H2Connection, event: object, paths: dict[int, bytes]) -> None:
        if isinstance(event, h2.events.RequestReceived):
            paths[event.stream_id] = dict(event.headers)[b":path"]
        elif isinstance(event, h2.events.SettingsAcknowledged):
            self.settings_acked.set()
        elif isinstance(event, h2.events.StreamEnded):
            path = paths[event.stream_id]
            if path == b"/held":
                self.held = event.stream_id
                self.held_seen.set()
            elif path.startswith(b"/bad"):
                conn.send_headers(event.stream_id, [*OK_FIELDS, self.bad])
                conn.send_data(event.stream_id, b"ok", end_stream=path == b"/bad")
            else:
                conn.send_headers(event.stream_id, OK_FIELDS)
                conn.send_data(event.stream_id, b"ok", end_stream=True)
        elif isinstance(event, h2.events.StreamReset):
            self.resets.append((event.stream_id, event.error_code))
            if self.held:
                conn.send_headers(self.held, OK_FIELDS)
                conn.send_data(self.held, b"ok", end_stream=True)
                self.held = 0


@asynccontextmanager
async def hostile_h2(bad: tuple[bytes, bytes]) -> AsyncIterator[tuple[str, HostileH2]]:
    server = HostileH2(bad)
    async with serve_tcp(server.handle) as port:
        yield f"http://127.0.0.1:{port}", server


BAD_FIELDS = {
    "crlf-in-value": ((b"x-evil", b"a\r\nset-cookie: admin=1"), "'x-evil'"),
    "lf-in-value": ((b"location", b"/next\nx-injected: 1"), "'location'"),
    "cr-in-value": ((b"x-evil", b"a\rb"), "'x-evil'"),
    "nul-in-value": ((b"set-cookie", b"a=b\x00c"), "'set-cookie'"),
    "crlf-in-name": ((b"x-evil\r\nset-cookie", b"admin=1"), "x-evil"),
    "nul-in-name": ((b"x-evil\x00", b"1"), "x-evil"),
    "space-in-name": ((b"x evil", b"1"), "'x evil'"),
    "colon-in-name": ((b"x-evil:set-cookie", b"1"), "'x-evil:set-cookie'"),
    "empty-name": ((b"", b"1"), "''"),
    "not-ascii-name": ((b"x-\xe9vil", b"1"), "x-"),
}


@pytest.mark.parametrize("case", list(BAD_FIELDS))
async def test_http2_response_with_a_forbidden_header_is_refused(case: str) -> None:
    bad, named = BAD_FIELDS[case]
    with trio.fail_after(GUARD):
        async with hostile_h2(bad) as (url, server), pool_for(http2_prior_knowledge=True) as pool:
            with pytest.raises(RemoteProtocolError) as info:
                await pool.handle_request(Request("GET", url + "/bad-open"))
            # A complete response is refused just the same (nothing to reset).
            with pytest.raises(RemoteProtocolError) as complete:
                await pool.handle_request(Request("GET", url + "/bad"))
            # Only the streams went; the connection carries the next request.
            response = await pool.handle_request(Request("GET", url + "/after"))
            assert await response.aread() == b"ok"
    for error, path in ((info.value, "/bad-open"), (complete.value, "/bad")):
        message = str(error)
        assert named in message and f"{url}{path} " in message
        assert "admin" not in message  # the value itself is not repeated
    assert [code for _, code in server.resets] == [ErrorCodes.PROTOCOL_ERROR]
    assert server.connections == 1


async def test_http2_forbidden_header_resets_only_its_stream() -> None:
    got: list[bytes] = []
    with trio.fail_after(GUARD):
        async with (
            hostile_h2((b"x-evil", b"a\r\nx-injected: 1")) as (url, server),
            pool_for(http2_prior_knowledge=True) as pool,
        ):

            async def held() -> None:
                response = await pool.handle_request(Request("GET", url + "/held"))
                got.append(await response.aread())

            async with trio.open_nursery() as nursery:
                nursery.start_soon(held)
                # /held is open on the connection, which knows the server's
                # SETTINGS (so /bad goes out on it as a second stream).
                await server.held_seen.wait()
                await server.settings_acked.wait()
                with pytest.raises(RemoteProtocolError, match="'x-evil'"):
                    await pool.handle_request(Request("GET", url + "/bad-open"))
    # The server answers /held only after the reset of /bad arrived.
    assert got == [b"ok"]
    assert [code for _, code in server.resets] == [ErrorCodes.PROTOCOL_ERROR]
    assert server.connections == 1


LENIENT_FIELDS = {
    "uppercase-name": (b"X-Mixed-Case", b"1"),
    "tab-and-space-inside": (b"x-list", b"a,\tb c"),
    "obs-text": (b"x-latin", b"caf\xe9"),
    "empty-value": (b"x-empty", b""),
}


@pytest.mark.parametrize("case", list(LENIENT_FIELDS))
async def test_http2_unusual_but_harmless_headers_are_kept(case: str) -> None:
    name, value = LENIENT_FIELDS[case]
    with trio.fail_after(GUARD):
        async with (
            hostile_h2((name, value)) as (url, server),
            Client(http2_prior_knowledge=True) as client,
        ):
            response = await client.get(url + "/bad")
    assert response.headers[name.decode("latin-1")] == value.decode("latin-1")
    assert response.content == b"ok"
    assert server.resets == []


# -- cookies given by the caller -------------------------------------------------

# Each would put an "admin" cookie (or line) of its own into the Cookie header.
BAD_COOKIES: dict[str, tuple[dict[str, str], str]] = {
    "semicolon-in-value": ({"a": "b; admin=1"}, "'a'"),
    "quoted-value-with-semicolon": ({"a": '"b; admin=1"'}, "'a'"),
    "crlf-in-value": ({"a": "b\r\nX-Admin: 1"}, "'a'"),
    "nul-in-value": ({"a": "b\x00admin=1"}, "'a'"),
    "tab-in-value": ({"a": "b\tadmin=1"}, "'a'"),
    "semicolon-in-name": ({"x; admin": "1"}, "'x; admin'"),
    "equals-in-name": ({"admin=1; x": "1"}, "'admin=1; x'"),
    "space-in-name": ({"x admin": "1"}, "'x admin'"),
    "tab-in-name": ({"x\tadmin": "1"}, "'x\\tadmin'"),
    "newline-ending-name": ({"admin\n": "1"}, "'admin\\n'"),
    "empty-name": ({"": "admin=1"}, "''"),
}


def _jar_with(cookies: dict[str, str]) -> Cookies:
    """A jar holding ``cookies`` as Cookie objects set by hand; the jar refuses some of
    them itself, as they are set, and the client checks the rest when they are sent."""
    jar = Cookies()
    for name, value in cookies.items():
        jar.set_cookie(Cookie(name, value))
    return jar


@pytest.mark.parametrize("given", ["mapping", "jar"])
@pytest.mark.parametrize("case", list(BAD_COOKIES))
async def test_per_request_cookie_that_would_add_another_is_refused(case: str, given: str) -> None:
    cookies, named = BAD_COOKIES[case]
    with trio.fail_after(GUARD):
        async with recorder() as (url, server):
            async with Client() as client:
                with pytest.raises(CookieError) as info:
                    per_request = cookies if given == "mapping" else _jar_with(cookies)
                    await client.get(url + "/a", cookies=per_request)
                # A good cookie still goes, and the client is still usable.
                response = await client.get(url + "/after", cookies={"ok": "1"})
                assert response.content == b"ok"
            await server.quiet()
    message = str(info.value)
    assert named in message
    # A request's cookies are named with its URL; a jar may refuse one before any request.
    assert url + "/a" in message or given == "jar"
    if case.endswith("-in-value"):
        assert "admin" not in message.lower()  # a cookie's value is never repeated
    assert b"admin" not in bytes(server.received).lower()
    assert server.received.count(b" HTTP/1.1\r\n") == 1
    assert b"\r\nCookie: ok=1\r\n" in server.received


@pytest.mark.parametrize("given", ["mapping", "jar"])
@pytest.mark.parametrize("case", ["semicolon-in-value", "equals-in-name", "newline-ending-name"])
async def test_cookies_given_to_the_client_are_checked(case: str, given: str) -> None:
    cookies, named = BAD_COOKIES[case]
    with trio.fail_after(GUARD):
        async with recorder() as (url, server):
            with pytest.raises(CookieError, match=re.escape(named)):
                jar = cookies if given == "mapping" else _jar_with(cookies)
                async with Client(cookies=jar) as client:
                    await client.get(url + "/a")
            async with Client() as client:
                with pytest.raises(CookieError, match=re.escape(named)):
                    client.cookies = _jar_with(cookies)
                await client.get(url + "/after")
            await server.quiet()
    assert b"admin" not in bytes(server.received).lower()
    assert server.received.count(b" HTTP/1.1\r\n") == 1
    assert b"Cookie:" not in server.received  # nothing was half-set


async def test_harmless_cookies_go_as_given() -> None:
    # Quotes are part of a value (RFC 6265 allows them around it); '=' may be in one.
    cookies = {"a": '"quoted value"', "b": "x=y", "c": ""}
    with trio.fail_after(GUARD):
        async with recorder() as (url, server):
            async with Client(cookies={"jar": "1"}) as client:
                await client.get(url + "/a", cookies=cookies)
                await client.get(url + "/b", cookies=_jar_with(cookies))
            await server.quiet()
    line = b'\r\nCookie: jar=1; a="quoted value"; b=x=y; c=\r\n'
    assert server.received.count(line) == 2
