"""HTTP/2: multiplexing, stream caps, flow control, GOAWAY, RST_STREAM, PING, ALPN.

Well-behaved cases run against hypercorn over TLS (trustme certificates);
misbehaving servers are written here on raw trio sockets with h2 in server
mode, spoken to over cleartext HTTP/2 (prior knowledge). Every claim about
connections is checked on the server's side.
"""

from __future__ import annotations

import hashlib
import json
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
import trio
import trio.testing
from h2.errors import ErrorCodes

from crawler.engine._stats import progress_line
from crawler.http import (
    Client,
    Limits,
    PoolTimeout,
    ReadTimeout,
    RemoteProtocolError,
    Request,
    ResponseTooLarge,
    Timeout,
)
from crawler.http._http2 import HTTP2Connection
from crawler.http._interfaces import PooledConnection
from crawler.http._pool import ConnectionPool
from tests.http.pools import assert_consistent, pool_errors, pool_for
from tests.http.tls_sites import Certs, Observed, make_app, tls_site
from tests.servers import serve_asgi, serve_h11, serve_tcp

GUARD = 60  # a safety net for a loaded machine, never reached when things work
MB = 1024 * 1024


# -- certificates and a hypercorn app that reports what it saw -----------------------


def h2_pool(
    certs: Certs, per_host: int = 100, **kwargs: Any
) -> AbstractAsyncContextManager[ConnectionPool]:
    limits = Limits(max_connections_per_host=per_host)
    kwargs.setdefault("timeout", Timeout(GUARD))
    return pool_for(http2=True, verify=certs.ca, limits=limits, **kwargs)


async def get_json(pool: ConnectionPool, url: str, content: bytes | None = None) -> Any:
    method = "POST" if content is not None else "GET"
    response = await pool.handle_request(Request(method, url, content=content))
    assert response.http_version == "HTTP/2"
    return json.loads(await response.aread())


# -- against hypercorn over TLS ---------------------------------------------------------


async def test_hundred_concurrent_requests_share_one_connection(certs: Certs) -> None:
    results: list[Any] = []
    with trio.fail_after(GUARD):
        async with tls_site(certs) as (url, seen), h2_pool(certs) as pool:
            seen.hold_until = 100  # all 100 must be in flight at once to get answers

            async def one(i: int) -> None:
                results.append(await get_json(pool, f"{url}/r{i}"))

            async with trio.open_nursery() as nursery:
                for i in range(100):
                    nursery.start_soon(one, i)
            assert "HTTP/2: 1 connections" in repr(pool)
            [(label, counts)] = pool.connection_counts().items()
            assert label.endswith(" h2x1") and counts == (0, 1)
            assert progress_line([], pool.connection_counts()).endswith(" h2x1=0/1")
    assert sorted(r["path"] for r in results) == sorted(f"/r{i}" for i in range(100))
    assert seen.versions == {"2"}
    assert len(seen.client_ports) == 1  # one TCP connection, as the server saw it
    assert seen.peak == 100


async def test_per_host_cap_limits_concurrent_streams(certs: Certs) -> None:
    with trio.fail_after(GUARD):
        async with tls_site(certs) as (url, seen), h2_pool(certs, per_host=5) as pool:
            seen.hold_until = 5

            async def one(i: int) -> None:
                await get_json(pool, f"{url}/c{i}")

            async with trio.open_nursery() as nursery:
                for i in range(30):
                    nursery.start_soon(one, i)
    assert len(seen.paths) == 30
    assert seen.peak == 5  # reached, never exceeded
    assert len(seen.client_ports) == 1


async def test_ten_megabytes_each_way(certs: Certs) -> None:
    upload = bytes(range(256))[::-1] * (10 * MB // 256)
    with trio.fail_after(GUARD):
        async with (
            tls_site(certs) as (url, _),
            Client(http2=True, verify=certs.ca, timeout=GUARD) as client,
        ):
            response = await client.get(f"{url}/big")
            assert response.http_version == "HTTP/2"
            assert response.content == bytes(range(256)) * (10 * MB // 256)
            echoed = (await client.post(f"{url}/up", content=upload)).json()
    assert echoed["size"] == len(upload)
    assert echoed["sha256"] == hashlib.sha256(upload).hexdigest()


async def test_slow_reader_does_not_stall_other_streams(certs: Certs) -> None:
    with trio.fail_after(GUARD):
        async with tls_site(certs) as (url, seen), h2_pool(certs) as pool:
            big = await pool.handle_request(Request("GET", f"{url}/big"))
            first = await big.stream.__aiter__().__anext__()  # take one chunk, then stall
            assert first
            # 10 MB cannot fit in the stream's window: the server is blocked on
            # this stream, yet other streams of the same connection flow.
            for i in range(5):
                assert (await get_json(pool, f"{url}/s{i}"))["path"] == f"/s{i}"
            await big.aclose()
            assert (await get_json(pool, f"{url}/after"))["path"] == "/after"
    assert len(seen.client_ports) == 1


async def test_alpn_falls_back_to_http11(certs: Certs) -> None:
    with trio.fail_after(GUARD):
        async with (
            tls_site(certs, alpn=["http/1.1"]) as (url, seen),
            h2_pool(certs, per_host=4) as pool,
        ):

            async def one(i: int) -> None:
                response = await pool.handle_request(Request("GET", f"{url}/f{i}"))
                assert response.http_version == "HTTP/1.1"
                await response.aread()

            async with trio.open_nursery() as nursery:
                for i in range(12):
                    nursery.start_soon(one, i)
            assert "HTTP/2: 0 connections" in repr(pool)
    assert seen.versions == {"1.1"}
    assert len(seen.paths) == 12
    assert len(seen.client_ports) <= 4


async def test_a_given_ssl_context_gets_alpn_for_http2(certs: Certs) -> None:
    context = ssl.create_default_context(cafile=certs.ca)
    with trio.fail_after(GUARD):
        async with tls_site(certs) as (url, seen), Client(http2=True, verify=context) as client:
            responses = [await client.get(f"{url}/c{i}") for i in range(3)]
        # Without http2 the caller's context is left as it is: HTTP/1.1.
        plain_context = ssl.create_default_context(cafile=certs.ca)
        async with tls_site(certs) as (url2, seen2), Client(verify=plain_context) as plain:
            answer = await plain.get(f"{url2}/plain")
    assert {r.http_version for r in responses} == {"HTTP/2"}
    assert seen.versions == {"2"} and len(seen.client_ports) == 1
    assert answer.http_version == "HTTP/1.1" and seen2.versions == {"1.1"}


async def test_redirects_cookies_and_gzip_over_http2(certs: Certs) -> None:
    with trio.fail_after(GUARD):
        async with tls_site(certs) as (url, _), Client(http2=True, verify=certs.ca) as client:
            response = await client.get(f"{url}/redirect")
    assert response.http_version == "HTTP/2"
    assert [r.status_code for r in response.history] == [302]
    assert response.json()["path"] == "/gzip"  # decompressed
    assert response.json()["cookie"] == "sid=42"
    assert client.cookies["sid"] == "42"
    assert response.headers["content-encoding"] == "gzip"  # lower-case names


async def test_response_size_limit_resets_only_that_stream(certs: Certs) -> None:
    with trio.fail_after(GUARD):
        async with (
            tls_site(certs) as (url, seen),
            Client(http2=True, verify=certs.ca, max_response_size=MB) as client,
        ):
            with pytest.raises(ResponseTooLarge, match="/big"):
                await client.get(f"{url}/big")
            assert (await client.get(f"{url}/ok")).json()["path"] == "/ok"
    assert len(seen.client_ports) == 1


async def test_h2c_prior_knowledge_on_plain_http() -> None:
    seen = Observed()
    with trio.fail_after(GUARD):
        async with (
            serve_asgi(make_app(seen)) as url,
            Client(http2_prior_knowledge=True) as client,
        ):
            response = await client.get(f"{url}/plain")
    assert response.http_version == "HTTP/2"
    assert seen.versions == {"2"}


async def test_plain_http_stays_on_http11_without_prior_knowledge() -> None:
    seen = Observed()
    with trio.fail_after(GUARD):
        async with serve_asgi(make_app(seen)) as url, Client(http2=True) as client:
            response = await client.get(f"{url}/plain")
    assert response.http_version == "HTTP/1.1"
    assert seen.versions == {"1.1"}


# -- raw HTTP/2 servers that misbehave on purpose ----------------------------------------


@dataclass
class RawServer:
    """An h2 server on raw sockets; ``behaviour(server, conn_no, stream_id, path)``
    decides per request: "answer", "reset", "ignore", or "goaway" (answer streams up
    to this one, refuse the rest, close)."""

    behaviour: Callable[[RawServer, int, int, str], str]
    max_streams: int = 100
    connections: int = 0
    peak_open: int = 0
    held: list[tuple[int, str]] = field(default_factory=list)
    unprocessed: list[str] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)
    resets_received: list[int] = field(default_factory=list)
    requests_seen: int = 0
    reset_seen: trio.Event = field(default_factory=trio.Event)
    open_now: int = 0  # connections open as the server sees them
    closed: trio.Event = field(default_factory=trio.Event)  # set at each close, then renewed
    gate: trio.Event = field(default_factory=trio.Event)  # "gate": answer once this is set

    async def handle(self, sock: trio.SocketStream) -> None:
        self.connections += 1
        self.open_now += 1
        try:
            await self._serve(sock)
        finally:
            self.open_now -= 1
            self.closed.set()
            self.closed = trio.Event()

    async def all_closed(self) -> None:
        """Return once the server has seen every connection to it closed."""
        while self.open_now:
            await self.closed.wait()

    async def _serve(self, sock: trio.SocketStream) -> None:
        conn_no = self.connections
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        conn = h2.connection.H2Connection(config=config)
        conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.max_streams},
        )
        conn.initiate_connection()
        await sock.send_all(conn.data_to_send())
        pending: dict[int, str] = {}
        try:
            while True:
                data = await sock.receive_some(65536)
                if not data:
                    return
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        # Text, as header_encoding asks, though h2's types say bytes.
                        headers = cast("list[tuple[str, str]]", event.headers)
                        pending[event.stream_id] = dict(headers)[":path"]
                        self.peak_open = max(self.peak_open, conn.open_inbound_streams)
                    elif isinstance(event, h2.events.StreamEnded):
                        path = pending.pop(event.stream_id)
                        self.requests_seen += 1
                        action = self.behaviour(self, conn_no, event.stream_id, path)
                        if action == "answer":
                            self._answer(conn, event.stream_id, path)
                        elif action == "batch":  # hold requests, answer them in threes
                            self.held.append((event.stream_id, path))
                            if len(self.held) == 3:
                                for stream_id, held_path in self.held:
                                    self._answer(conn, stream_id, held_path)
                                self.held.clear()
                        elif action == "reset":
                            conn.reset_stream(event.stream_id, ErrorCodes.INTERNAL_ERROR)
                        elif action == "hold":
                            self.held.append((event.stream_id, path))
                        elif action == "goaway":
                            # GOAWAY naming the held streams as the last processed,
                            # then answer them: this stream (above) was not processed.
                            last = max(stream_id for stream_id, _ in self.held)
                            conn.close_connection(last_stream_id=last)
                            # h2 refuses to send after its own GOAWAY; the
                            # streams below it are still ours to answer.
                            conn.state_machine.state = h2.connection.ConnectionState.SERVER_OPEN
                            for stream_id, held_path in self.held:
                                self._answer(conn, stream_id, held_path)
                            self.unprocessed.append(path)
                            await sock.send_all(conn.data_to_send())
                            # Close gracefully: closing with requests of the client still
                            # unread makes the kernel send a reset, which can destroy the
                            # answers above before the client reads them (under load).
                            await sock.send_eof()
                            with trio.move_on_after(GUARD):
                                while await sock.receive_some(65536):
                                    pass
                            return
                        elif action == "gate":
                            await sock.send_all(conn.data_to_send())
                            await self.gate.wait()
                            self._answer(conn, event.stream_id, path)
                        elif action == "hang":
                            await sock.send_all(conn.data_to_send())
                            await trio.sleep_forever()
                    elif isinstance(event, h2.events.StreamReset):
                        self.resets_received.append(event.stream_id)
                        self.reset_seen.set()
                await sock.send_all(conn.data_to_send())
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(sock)

    def _answer(self, conn: h2.connection.H2Connection, stream_id: int, path: str) -> None:
        body = f"ok {path}".encode()
        conn.send_headers(
            stream_id,
            [(":status", "200"), ("content-length", str(len(body))), ("x-path", path)],
        )
        conn.send_data(stream_id, body, end_stream=True)
        self.answered.append(path)


@asynccontextmanager
async def raw_server(
    behaviour: Callable[[RawServer, int, int, str], str], host: str = "127.0.0.1"
) -> AsyncIterator[tuple[str, RawServer]]:
    server = RawServer(behaviour)
    async with serve_tcp(server.handle, host) as port:
        yield f"http://{host}:{port}", server


def h2c_pool(per_host: int = 100, **kwargs: Any) -> AbstractAsyncContextManager[ConnectionPool]:
    limits = Limits(max_connections_per_host=per_host)
    return pool_for(http2_prior_knowledge=True, limits=limits, **kwargs)


async def fetch_text(pool: ConnectionPool, url: str) -> str:
    response = await pool.handle_request(Request("GET", url))
    assert response.http_version == "HTTP/2"
    return (await response.aread()).decode()


async def test_goaway_mid_crawl_loses_no_request() -> None:
    def behaviour(server: RawServer, conn_no: int, stream_id: int, path: str) -> str:
        # The first connection answers three requests, holds the fourth, and at
        # the fifth says GOAWAY with the fourth as the last one processed.
        if conn_no > 1 or len(server.answered) < 3:
            return "answer"
        return "goaway" if server.held else "hold"

    got: dict[str, str] = {}
    with trio.fail_after(GUARD):
        async with raw_server(behaviour) as (url, server), h2c_pool(per_host=10) as pool:

            async def one(i: int) -> None:
                got[f"/g{i}"] = await fetch_text(pool, f"{url}/g{i}")

            async with trio.open_nursery() as nursery:
                for i in range(40):
                    nursery.start_soon(one, i)
    assert got == {f"/g{i}": f"ok /g{i}" for i in range(40)}
    assert sorted(server.answered) == sorted(got)  # each processed exactly once
    assert len(server.unprocessed) == 1 and server.unprocessed[0] in got  # sent again
    assert server.connections == 2


async def test_rst_stream_fails_only_its_own_request() -> None:
    def behaviour(server: RawServer, conn_no: int, stream_id: int, path: str) -> str:
        return "reset" if path == "/bad" else "answer"

    outcomes: dict[str, str] = {}
    with trio.fail_after(GUARD):
        async with raw_server(behaviour) as (url, server), h2c_pool() as pool:

            async def one(path: str) -> None:
                try:
                    outcomes[path] = await fetch_text(pool, url + path)
                except RemoteProtocolError as exc:
                    outcomes[path] = str(exc)

            async with trio.open_nursery() as nursery:
                for i in range(10):
                    nursery.start_soon(one, f"/ok{i}")
                nursery.start_soon(one, "/bad")
    assert "RST_STREAM INTERNAL_ERROR" in outcomes.pop("/bad")
    assert outcomes == {f"/ok{i}": f"ok /ok{i}" for i in range(10)}
    assert server.connections == 1


async def test_dead_connection_is_detected_by_ping_and_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(HTTP2Connection, "ping_interval", 0.2)
    monkeypatch.setattr(HTTP2Connection, "ping_timeout", 0.2)

    def behaviour(server: RawServer, conn_no: int, stream_id: int, path: str) -> str:
        # The first connection answers once, then goes silent without closing.
        return "hang" if conn_no == 1 and path == "/second" else "answer"

    with trio.fail_after(GUARD):
        async with raw_server(behaviour) as (url, server), h2c_pool() as pool:
            assert await fetch_text(pool, f"{url}/first") == "ok /first"
            assert await fetch_text(pool, f"{url}/second") == "ok /second"
    assert server.connections == 2


async def test_cancelled_stream_is_reset_and_frees_its_slot() -> None:
    def behaviour(server: RawServer, conn_no: int, stream_id: int, path: str) -> str:
        return "ignore" if path == "/never" else "answer"

    with trio.fail_after(GUARD):
        async with raw_server(behaviour) as (url, server), h2c_pool(per_host=1) as pool:
            with trio.move_on_after(0.2) as scope:
                await fetch_text(pool, f"{url}/never")
            assert scope.cancelled_caught
            await server.reset_seen.wait()  # RST_STREAM(CANCEL) reached the server
            assert await fetch_text(pool, f"{url}/next") == "ok /next"  # the slot is free
            assert "0 streams" in repr(pool)
    assert server.connections == 1 and len(server.resets_received) == 1


async def test_read_timeout_fails_one_stream_only() -> None:
    def behaviour(server: RawServer, conn_no: int, stream_id: int, path: str) -> str:
        return "ignore" if path == "/slow" else "answer"

    timeout = Timeout(5.0, read=0.3)
    with trio.fail_after(GUARD):
        async with raw_server(behaviour) as (url, server), h2c_pool(timeout=timeout) as pool:
            async with trio.open_nursery() as nursery:

                async def slow() -> None:
                    with pytest.raises(ReadTimeout, match="/slow"):
                        await fetch_text(pool, f"{url}/slow")

                nursery.start_soon(slow)
                assert await fetch_text(pool, f"{url}/quick") == "ok /quick"
            assert await fetch_text(pool, f"{url}/later") == "ok /later"
    assert server.connections == 1


# -- a whole crawl of the demo site ------------------------------------------------------


async def _crawl_demo(certs: Certs, url: str, http2: bool, tmp_path: Path) -> list[Any]:
    from crawler import Settings
    from crawler.demo import DEMO_PASSWORD, DEMO_USERNAME
    from crawler.engine._engine import Engine
    from spiders.myspider import MySpider

    options = {"site_url": url, "username": DEMO_USERNAME, "password": DEMO_PASSWORD}
    settings = Settings(options=options, project_dir=tmp_path, http2=http2)
    feed = tmp_path / f"items-{http2}.jsonl"
    # settings.toml has no CA option: the engine takes a pool built for this CA.
    pool = ConnectionPool(
        limits=settings.limits(), timeout=settings.timeout(), http2=http2, verify=certs.ca
    )
    async with pool, Engine(settings, pool=pool) as engine:
        stats = await engine.crawl(MySpider, settings, feeds=[feed])
    assert stats.pages > 20
    return [json.loads(line) for line in feed.read_text("utf-8").splitlines()]


async def test_demo_crawl_over_http2_matches_http11(certs: Certs, tmp_path: Path) -> None:
    from crawler.demo import DemoApp

    versions: set[str] = set()
    demo = DemoApp()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            versions.add(scope["http_version"])
        await demo(scope, receive, send)

    def key(item: Any) -> str:
        return json.dumps(item, sort_keys=True)

    with trio.fail_after(GUARD * 2):
        async with serve_asgi(
            app, certfile=certs.cert, keyfile=certs.key, alpn=["h2", "http/1.1"]
        ) as url:
            over_h1 = await _crawl_demo(certs, url, False, tmp_path)
            assert versions == {"1.1"}
            over_h2 = await _crawl_demo(certs, url, True, tmp_path)
    assert versions == {"1.1", "2"}
    assert len(over_h2) == len(over_h1) > 20
    assert sorted(map(key, over_h2)) == sorted(map(key, over_h1))


async def test_server_max_concurrent_streams_is_respected() -> None:
    def behaviour(server: RawServer, conn_no: int, stream_id: int, path: str) -> str:
        return "batch"

    got: list[str] = []
    with trio.fail_after(GUARD):
        async with raw_server(behaviour) as (url, server), h2c_pool() as pool:
            server.max_streams = 3

            async def one(i: int) -> None:
                got.append(await fetch_text(pool, f"{url}/m{i}"))

            async with trio.open_nursery() as nursery:
                for i in range(21):
                    nursery.start_soon(one, i)
    assert sorted(got) == sorted(f"ok /m{i}" for i in range(21))
    assert server.peak_open == 3  # reached (answers come in threes), never exceeded
    assert server.connections == 1


async def test_waiting_for_a_stream_times_out_with_pool_timeout() -> None:
    arrived = trio.Event()

    def behaviour(server: RawServer, conn_no: int, stream_id: int, path: str) -> str:
        if path == "/held":
            arrived.set()
            return "ignore"
        return "answer"

    timeout = Timeout(5.0, pool=0.2)
    with trio.fail_after(GUARD):
        async with (
            raw_server(behaviour) as (url, server),
            h2c_pool(per_host=1, timeout=timeout) as pool,
        ):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(fetch_text, pool, f"{url}/held")
                await arrived.wait()  # the only stream is taken
                with pytest.raises(PoolTimeout, match=r"HTTP/2 stream.*1 streams open"):
                    await fetch_text(pool, f"{url}/waits")
                nursery.cancel_scope.cancel()
            assert await fetch_text(pool, f"{url}/after") == "ok /after"
    assert server.connections == 1


async def test_settings_turn_http2_on_for_the_engine_pool() -> None:
    from crawler import Settings
    from crawler.engine._crawler import build_pool

    seen = Observed()
    pool = build_pool(Settings(http2=True, http2_prior_knowledge=True))
    with trio.fail_after(GUARD):
        async with serve_asgi(make_app(seen)) as url, pool:
            assert (await get_json(pool, f"{url}/engine"))["path"] == "/engine"
    assert seen.versions == {"2"}


async def test_full_global_cap_closes_an_idle_http2_connection() -> None:
    def behaviour(server: RawServer, conn_no: int, stream_id: int, path: str) -> str:
        return "answer"

    limits = Limits(max_connections=1, max_connections_per_host=10)
    with trio.fail_after(GUARD):
        async with (
            raw_server(behaviour) as (url_a, server_a),
            raw_server(behaviour) as (url_b, server_b),
            pool_for(http2_prior_knowledge=True, limits=limits) as pool,
        ):
            assert await fetch_text(pool, f"{url_a}/1") == "ok /1"
            assert await fetch_text(pool, f"{url_b}/2") == "ok /2"  # A's idle one made room
            assert (
                repr(pool)
                == "<ConnectionPool [0 active, 1 idle, HTTP/2: 1 connections, 0 streams]>"
            )
            assert await fetch_text(pool, f"{url_a}/3") == "ok /3"
    assert (server_a.connections, server_b.connections) == (2, 1)


async def test_http2_connection_gives_its_slot_to_a_blocked_host() -> None:
    held = trio.Event()

    def behaviour(server: RawServer, conn_no: int, stream_id: int, path: str) -> str:
        if path == "/held":
            held.set()
            return "ignore"
        return "answer"

    limits = Limits(max_connections=1, max_connections_per_host=10)
    got: list[str] = []
    with trio.fail_after(GUARD):
        async with (
            raw_server(behaviour) as (url_a, server_a),
            raw_server(behaviour) as (url_b, server_b),
            pool_for(http2_prior_knowledge=True, limits=limits) as pool,
        ):
            # A's stream holds the pool's only connection, so B waits for the
            # global cap; once A's stream is over, its idle connection makes room.
            a_scope = trio.CancelScope()

            async def fetch_a() -> None:
                with a_scope:
                    await fetch_text(pool, f"{url_a}/held")

            async def fetch_b() -> None:
                got.append(await fetch_text(pool, f"{url_b}/b"))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(fetch_a)
                await held.wait()
                nursery.start_soon(fetch_b)
                await trio.testing.wait_all_tasks_blocked()
                assert not got  # blocked by the global cap
                a_scope.cancel()  # A's stream is reset: its connection is now idle
            assert got == ["ok /b"]
    assert (server_a.connections, server_b.connections) == (1, 1)


# -- idle HTTP/2 connections under the caps ------------------------------------------------
#
# An HTTP/2 connection without streams is idle exactly as an HTTP/1.1 one
# between requests is: it may be closed to make room under the per-host or the
# global cap, it counts toward max_keepalive_connections, and it expires. The
# pool timeout is far above the hang guard, so a request stuck behind an idle
# connection fails the guard instead of waiting the timeout out.

LONG_POOL_WAIT = Timeout(5.0, pool=GUARD * 30)


def answer(server: RawServer, conn_no: int, stream_id: int, path: str) -> str:
    return "answer"


def tls_h11_context(certs: Certs) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.cert, certs.key)
    return context


async def test_idle_http2_connection_makes_room_for_another_port_of_its_host() -> None:
    with trio.fail_after(GUARD):
        async with (
            raw_server(answer) as (url_a, a),
            raw_server(answer) as (url_b, b),
            h2c_pool(per_host=1, timeout=LONG_POOL_WAIT) as pool,
        ):
            assert await fetch_text(pool, f"{url_a}/a") == "ok /a"
            assert await fetch_text(pool, f"{url_b}/b") == "ok /b"  # A's idle one made room
            await a.all_closed()
            assert b.open_now == 1 and (pool.num_active, pool.num_idle) == (0, 1)
            assert_consistent(pool)
            assert await fetch_text(pool, f"{url_a}/a2") == "ok /a2"  # and back again
            await b.all_closed()
            assert_consistent(pool)
    assert (a.connections, b.connections) == (2, 1)


async def test_idle_http2_connection_makes_room_under_the_global_cap() -> None:
    limits = Limits(max_connections=1, max_connections_per_host=10)
    with trio.fail_after(GUARD):
        async with (
            raw_server(answer, "127.0.0.2") as (url_a, a),
            raw_server(answer, "127.0.0.3") as (url_b, b),
            pool_for(http2_prior_knowledge=True, limits=limits, timeout=LONG_POOL_WAIT) as pool,
        ):
            assert await fetch_text(pool, f"{url_a}/a") == "ok /a"
            assert await fetch_text(pool, f"{url_b}/b") == "ok /b"
            await a.all_closed()
            assert repr(pool).startswith("<ConnectionPool [0 active, 1 idle, HTTP/2: 1 conn")
            assert b.open_now == 1 and (pool.num_active, pool.num_idle) == (0, 1)
            assert_consistent(pool)
    assert (a.connections, b.connections) == (1, 1)


async def test_idle_http2_connections_count_toward_max_keepalive() -> None:
    limits = Limits(max_keepalive_connections=1, max_connections_per_host=10)
    with trio.fail_after(GUARD):
        async with (
            raw_server(answer) as (url_a, a),
            raw_server(answer) as (url_b, b),
            pool_for(http2_prior_knowledge=True, limits=limits) as pool,
        ):
            assert await fetch_text(pool, f"{url_a}/a") == "ok /a"
            assert await fetch_text(pool, f"{url_b}/b") == "ok /b"
            await b.all_closed()  # one idle connection is all the pool keeps
            assert a.open_now == 1 and pool.num_idle == 1
            assert_consistent(pool)
            assert await fetch_text(pool, f"{url_a}/a2") == "ok /a2"  # the kept one, reused
            assert_consistent(pool)
    assert (a.connections, b.connections) == (1, 1)


async def test_idle_http2_connection_expires_when_another_one_goes_idle() -> None:
    now = [0.0]
    limits = Limits(keepalive_expiry=5.0, max_connections_per_host=10)
    with trio.fail_after(GUARD):
        async with (
            raw_server(answer) as (url_a, a),
            raw_server(answer) as (url_b, b),
            pool_for(http2_prior_knowledge=True, limits=limits, clock=lambda: now[0]) as pool,
        ):
            assert await fetch_text(pool, f"{url_a}/a") == "ok /a"
            now[0] = 10.0
            assert await fetch_text(pool, f"{url_b}/b") == "ok /b"  # B going idle expires A
            await a.all_closed()
            assert b.open_now == 1 and pool.num_idle == 1
            assert_consistent(pool)
    assert (a.connections, b.connections) == (1, 1)


async def test_idle_http2_connection_is_closed_when_it_expires_without_traffic() -> None:
    """As for HTTP/1.1: the pool closes it once idle for keepalive_expiry, though no
    request comes and looks, so the server sees it closed."""
    limits = Limits(keepalive_expiry=0.05)
    with trio.fail_after(GUARD):
        async with (
            raw_server(answer) as (url, server),
            pool_for(http2_prior_knowledge=True, limits=limits) as pool,
        ):
            assert await fetch_text(pool, f"{url}/a") == "ok /a"
            assert server.connections == 1
            await server.all_closed()
            assert (pool.num_idle, pool.num_active) == (0, 0)
            assert_consistent(pool)
    assert server.connections == 1


async def test_http2_connection_with_an_open_stream_is_never_closed_to_make_room() -> None:
    def behaviour(server: RawServer, conn_no: int, stream_id: int, path: str) -> str:
        return "gate" if path == "/held" else "answer"

    got: list[str] = []
    with trio.fail_after(GUARD):
        async with (
            raw_server(behaviour) as (url_a, a),
            raw_server(answer) as (url_b, b),
            h2c_pool(per_host=1, timeout=LONG_POOL_WAIT) as pool,
        ):

            async def fetch(url: str) -> None:
                got.append(await fetch_text(pool, url))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(fetch, f"{url_a}/held")
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(fetch, f"{url_b}/b")
                await trio.testing.wait_all_tasks_blocked()
                # B waits for the host's only slot; A's stream keeps its connection.
                assert got == [] and a.open_now == 1 and b.connections == 0
                assert_consistent(pool)
                a.gate.set()
            # A's stream ended, its connection went idle and gave B the slot.
            assert sorted(got) == ["ok /b", "ok /held"]
            await a.all_closed()
            assert_consistent(pool)
    assert (a.connections, b.connections) == (1, 1)


async def test_mixed_idle_connections_make_room_for_each_other_in_a_host(certs: Certs) -> None:
    # Prior knowledge makes http:// origins HTTP/2; https:// ones stay HTTP/1.1.
    with trio.fail_after(GUARD):
        async with (
            raw_server(answer) as (url_a, a),
            serve_h11(ssl_context=tls_h11_context(certs)) as b,
            h2c_pool(per_host=1, timeout=LONG_POOL_WAIT, verify=certs.ca) as pool,
        ):
            assert await fetch_text(pool, f"{url_a}/a") == "ok /a"
            response = await pool.handle_request(Request("GET", f"{b.url}/b"))
            assert response.http_version == "HTTP/1.1" and await response.aread() == b"ok /b"
            await a.all_closed()  # the idle HTTP/2 connection made room for HTTP/1.1
            assert_consistent(pool)
            assert await fetch_text(pool, f"{url_a}/a2") == "ok /a2"
            while b.open_now:  # and the idle HTTP/1.1 one for HTTP/2
                await b.closed.wait()
            assert_consistent(pool)
    assert (a.connections, b.connections_total) == (2, 1)


async def get_h1(pool: ConnectionPool, url: str) -> bytes:
    response = await pool.handle_request(Request("GET", url))
    assert response.http_version == "HTTP/1.1"
    return await response.aread()


async def test_global_cap_closes_the_oldest_idle_connection_whatever_its_protocol(
    certs: Certs,
) -> None:
    limits = Limits(max_connections=2)
    with trio.fail_after(GUARD):
        async with (
            raw_server(answer) as (url_a, a),
            serve_h11(ssl_context=tls_h11_context(certs)) as b,
            serve_h11(ssl_context=tls_h11_context(certs)) as c,
            pool_for(
                http2_prior_knowledge=True, limits=limits, timeout=LONG_POOL_WAIT, verify=certs.ca
            ) as pool,
        ):
            assert await fetch_text(pool, f"{url_a}/a") == "ok /a"  # idle first: the oldest
            assert await get_h1(pool, f"{b.url}/b") == b"ok /b"
            assert await get_h1(pool, f"{c.url}/c") == b"ok /c"
            await a.all_closed()  # not B's, which went idle after it
            assert b.open_now == 1 and c.open_now == 1 and pool.num_idle == 2
            assert_consistent(pool)
    assert (a.connections, b.connections_total, c.connections_total) == (1, 1, 1)


@pytest.mark.parametrize("h2_first", [True, False])
async def test_mixed_idle_connections_share_max_keepalive(certs: Certs, h2_first: bool) -> None:
    limits = Limits(max_keepalive_connections=1)
    with trio.fail_after(GUARD):
        async with (
            raw_server(answer) as (url_a, a),
            serve_h11(ssl_context=tls_h11_context(certs)) as b,
            pool_for(http2_prior_knowledge=True, limits=limits, verify=certs.ca) as pool,
        ):
            for step in ("h2", "h1") if h2_first else ("h1", "h2"):
                if step == "h2":
                    assert await fetch_text(pool, f"{url_a}/a") == "ok /a"
                else:
                    assert await get_h1(pool, f"{b.url}/b") == b"ok /b"
            # The second to go idle found the only keep-alive place taken.
            if h2_first:
                while b.open_now:
                    await b.closed.wait()
                assert a.open_now == 1
            else:
                await a.all_closed()
                assert b.open_now == 1
            assert pool.num_idle == 1
            assert_consistent(pool)
    assert (a.connections, b.connections_total) == (1, 1)


# -- the pool's invariant on HTTP/2 ---------------------------------------------------


async def test_the_invariant_check_sees_miscounted_http2_streams_and_connections() -> None:
    with trio.fail_after(GUARD):
        async with raw_server(answer) as (url, _server), h2c_pool() as pool:
            assert await fetch_text(pool, f"{url}/a") == "ok /a"
            (conn,) = pool._idle_all
            assert type(conn) is HTTP2Connection and isinstance(conn, PooledConnection)
            assert conn.is_idle() and conn.is_available() and not conn.is_readable()
            assert pool_errors(pool) == []
            state = conn.pool_state
            state.streams += 1  # a stream counted that no request holds
            assert pool_errors(pool) == [f"{state.origin.label}: 1 streams counted, 0 granted"]
            state.streams -= 1
            state.conns.remove(conn)  # a connection its origin has lost track of
            errors = pool_errors(pool)
            assert any("!= the origins' lists" in e for e in errors)
            assert any(e.startswith("127.0.0.1: count 1, connections and slots 0") for e in errors)
            state.conns.append(conn)
            assert_consistent(pool)


async def test_pool_for_checks_the_invariant_of_an_http2_pool_too() -> None:
    with trio.fail_after(GUARD):
        async with raw_server(answer) as (url, _server):
            with pytest.raises(AssertionError, match="1 streams counted, 0 granted"):
                async with h2c_pool() as pool:
                    assert await fetch_text(pool, f"{url}/a") == "ok /a"
                    for conn in pool._h2.conns:
                        conn.pool_state.streams += 1  # a stream no request holds
