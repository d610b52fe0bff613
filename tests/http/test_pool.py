"""ConnectionPool semantics, proved by what real loopback servers observed.

Connection counts come from the server side (``serve_h11``: open_now,
peak_open, connections_total), not from the pool's own word. Time never passes
by sleeping: keep-alive expiry uses an injected clock, waiting uses trio events
and ``wait_all_tasks_blocked``.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import trio
import trio.lowlevel
import trio.testing

from crawler.http import (
    Limits,
    PoolTimeout,
    RemoteProtocolError,
    Request,
    Response,
    Timeout,
    Transport,
)
from crawler.http._http11 import EAGER_BODY_MAX, HTTP11Connection
from crawler.http._interfaces import PooledConnection
from crawler.http._pool import ConnectionPool
from tests.http.pools import GUARD, assert_consistent, pool_errors, pool_for
from tests.servers import H11Server, Reply, Seen, serve_h11, serve_tcp

# Every test here runs with h11's internals and with its public API only.
pytestmark = pytest.mark.usefixtures("h11_api")


async def fetch(pool: ConnectionPool, url: str, **kwargs: object) -> bytes:
    response = await pool.handle_request(Request("GET", url, **kwargs))  # type: ignore[arg-type]
    assert response.status_code == 200
    return await response.aread()


class Gate:
    """A responder that holds every request until ``open()``; counts arrivals."""

    def __init__(self) -> None:
        self.opened = trio.Event()
        self.arrived = 0

    async def __call__(self, seen: Seen) -> Reply:
        self.arrived += 1
        await self.opened.wait()
        return Reply(200, [], f"ok {seen.target}".encode())

    def open(self) -> None:
        self.opened.set()


def limits(**kwargs: int | float | None) -> Limits:
    return Limits(**kwargs)  # type: ignore[arg-type]


# -- reuse and caps -------------------------------------------------------------------


async def test_sequential_requests_reuse_one_connection() -> None:
    with trio.fail_after(GUARD):
        async with serve_h11() as server, pool_for() as pool:
            assert isinstance(pool, Transport)
            for i in range(20):
                assert await fetch(pool, f"{server.url}/{i}") == f"ok /{i}".encode()
            assert server.connections_total == 1
            assert {seen.connection_id for seen in server.requests} == {1}
            assert repr(pool) == "<ConnectionPool [0 active, 1 idle]>"
            assert pool.connection_counts() == {server.url: (0, 1)}


async def test_concurrent_requests_never_exceed_the_per_host_cap() -> None:
    gate = Gate()
    results: list[bytes] = []

    async def one(pool: ConnectionPool, i: int) -> None:
        results.append(await fetch(pool, f"{server.url}/{i}"))

    with trio.fail_after(GUARD):
        async with (
            serve_h11(gate) as server,
            pool_for(limits=limits(max_connections_per_host=4)) as pool,
        ):
            async with trio.open_nursery() as nursery:
                for i in range(200):
                    nursery.start_soon(one, pool, i)
                await trio.testing.wait_all_tasks_blocked()
                assert gate.arrived == 4
                assert pool.connection_counts() == {server.url: (4, 0)}
                gate.open()
            assert len(results) == 200
            assert sorted(results) == sorted(f"ok /{i}".encode() for i in range(200))
            assert server.peak_open == 4
            assert server.connections_total == 4


async def test_global_cap_holds_across_hosts() -> None:
    servers: list[H11Server] = []
    peak = 0

    async def responder(seen: Seen) -> Reply:
        nonlocal peak
        peak = max(peak, sum(s.open_now for s in servers))
        await trio.lowlevel.checkpoint()
        return Reply(200, [], b"ok")

    with trio.fail_after(GUARD):
        async with (
            serve_h11(responder, "127.0.0.2") as a,
            serve_h11(responder, "127.0.0.3") as b,
            serve_h11(responder, "127.0.0.4") as c,
            pool_for(limits=limits(max_connections=3, max_connections_per_host=8)) as pool,
        ):
            servers.extend([a, b, c])
            async with trio.open_nursery() as nursery:
                for server in servers:
                    for i in range(30):
                        nursery.start_soon(fetch, pool, f"{server.url}/{i}")
            assert peak == 3
            assert all(len(s.requests) == 30 for s in servers)
            assert pool.num_active == 0 and pool.num_idle <= 3


async def test_capped_host_does_not_block_other_hosts() -> None:
    gate = Gate()
    with trio.fail_after(GUARD):
        async with (
            serve_h11(gate, "127.0.0.2") as slow,
            serve_h11(host="127.0.0.3") as fast,
            pool_for(limits=limits(max_connections=4), host_limits={"127.0.0.2": 1}) as pool,
        ):
            async with trio.open_nursery() as nursery:
                for i in range(5):
                    nursery.start_soon(fetch, pool, f"{slow.url}/{i}")
                await trio.testing.wait_all_tasks_blocked()
                assert gate.arrived == 1
                for i in range(10):
                    assert await fetch(pool, f"{fast.url}/{i}") == f"ok /{i}".encode()
                assert slow.peak_open == 1
                gate.open()
            assert len(slow.requests) == 5 and slow.peak_open == 1


async def test_full_global_cap_closes_an_idle_connection_of_another_origin() -> None:
    with trio.fail_after(GUARD):
        async with (
            serve_h11(host="127.0.0.2") as a,
            serve_h11(host="127.0.0.3") as b,
            pool_for(limits=limits(max_connections=1)) as pool,
        ):
            await fetch(pool, a.url + "/")
            assert pool.connection_counts() == {a.url: (0, 1)}
            await fetch(pool, b.url + "/")
            assert pool.connection_counts() == {b.url: (0, 1)}
            while a.open_now:
                await a.closed.wait()
            assert a.connections_total == 1 and b.connections_total == 1


async def test_global_waiter_gets_a_slot_when_another_host_finishes() -> None:
    gate = Gate()
    with trio.fail_after(GUARD):
        async with (
            serve_h11(gate, "127.0.0.2") as a,
            serve_h11(host="127.0.0.3") as b,
            pool_for(limits=limits(max_connections=1)) as pool,
        ):
            got: list[bytes] = []

            async def fetch_b() -> None:
                got.append(await fetch(pool, b.url + "/b"))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(fetch, pool, a.url + "/a")
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(fetch_b)
                await trio.testing.wait_all_tasks_blocked()
                assert got == [] and b.connections_total == 0
                gate.open()
            assert got == [b"ok /b"]
            assert pool.connection_counts() == {b.url: (0, 1)}


async def test_waiters_are_served_in_arrival_order() -> None:
    gate = Gate()
    with trio.fail_after(GUARD):
        async with (
            serve_h11(gate) as server,
            pool_for(limits=limits(max_connections_per_host=1)) as pool,
        ):
            async with trio.open_nursery() as nursery:
                for i in range(6):
                    nursery.start_soon(fetch, pool, f"{server.url}/{i}")
                    await trio.testing.wait_all_tasks_blocked()
                gate.open()
            assert [seen.target for seen in server.requests] == [f"/{i}" for i in range(6)]
            assert server.connections_total == 1


async def test_set_host_limit_applies_to_new_and_waiting_requests() -> None:
    gate = Gate()
    with trio.fail_after(GUARD):
        async with serve_h11(gate) as server, pool_for() as pool:
            pool.set_host_limit("127.0.0.1", 1)
            async with trio.open_nursery() as nursery:
                for i in range(4):
                    nursery.start_soon(fetch, pool, f"{server.url}/{i}")
                await trio.testing.wait_all_tasks_blocked()
                assert gate.arrived == 1
                pool.set_host_limit("127.0.0.1", 3)
                await trio.testing.wait_all_tasks_blocked()
                assert gate.arrived == 3
                gate.open()
            assert server.peak_open == 3
            with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
                pool.set_host_limit("127.0.0.1", 0)


async def test_pool_timeout_then_the_pool_still_works() -> None:
    gate = Gate()
    with trio.fail_after(GUARD):
        async with (
            serve_h11(gate) as server,
            pool_for(
                limits=limits(max_connections_per_host=1), timeout=Timeout(5.0, pool=0.0)
            ) as pool,
        ):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(fetch, pool, server.url + "/held")
                await trio.testing.wait_all_tasks_blocked()
                with pytest.raises(PoolTimeout, match=f"{server.url}/waiting"):
                    await fetch(pool, server.url + "/waiting")
                gate.open()
            assert await fetch(pool, server.url + "/next") == b"ok /next"
            assert server.connections_total == 1
            assert pool.num_active == 0


# -- keep-alive -------------------------------------------------------------------------


async def test_idle_connections_beyond_max_keepalive_are_closed() -> None:
    gate = Gate()
    with trio.fail_after(GUARD):
        async with (
            serve_h11(gate) as server,
            pool_for(
                limits=limits(max_connections_per_host=5, max_keepalive_connections=2)
            ) as pool,
        ):
            async with trio.open_nursery() as nursery:
                for i in range(5):
                    nursery.start_soon(fetch, pool, f"{server.url}/{i}")
                await trio.testing.wait_all_tasks_blocked()
                assert server.open_now == 5
                gate.open()
            assert pool.connection_counts() == {server.url: (0, 2)}
            while server.open_now > 2:
                await server.closed.wait()
            assert server.open_now == 2


async def test_keepalive_expiry_closes_idle_connections() -> None:
    now = [0.0]
    with trio.fail_after(GUARD):
        async with (
            serve_h11(host="127.0.0.2") as a,
            serve_h11(host="127.0.0.3") as b,
            pool_for(limits=limits(keepalive_expiry=5.0), clock=lambda: now[0]) as pool,
        ):
            await fetch(pool, a.url + "/")
            now[0] = 4.0
            await fetch(pool, a.url + "/")  # still fresh: reused
            assert a.connections_total == 1
            now[0] = 10.0
            await fetch(pool, b.url + "/")  # checking b in expires a's idle connection
            assert pool.connection_counts() == {b.url: (0, 1)}
            while a.open_now:
                await a.closed.wait()
            now[0] = 20.0
            await fetch(pool, b.url + "/")  # expired on checkout: a new connection
            assert b.connections_total == 2


async def test_an_idle_connection_is_closed_when_it_expires_without_traffic() -> None:
    """The pool closes an expired idle connection by itself: no request has to come
    and look, so the server sees it closed and no socket outlives keepalive_expiry."""
    with trio.fail_after(GUARD):
        async with serve_h11() as server, pool_for(limits=limits(keepalive_expiry=0.05)) as pool:
            closed = server.closed  # set when the server sees the connection closed
            await fetch(pool, server.url + "/")
            await closed.wait()
            assert (server.open_now, server.connections_total, len(server.requests)) == (0, 1, 1)
            assert (pool.num_idle, pool.num_active) == (0, 0)
            assert_consistent(pool)
            # It comes back with the next idle connection.
            closed = server.closed
            await fetch(pool, server.url + "/again")
            await closed.wait()
            assert (server.open_now, server.connections_total) == (0, 2)


async def test_keepalive_expiry_with_trio_clock(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(GUARD * 100):  # virtual time: the clock jumps
        async with serve_h11() as server, pool_for(limits=limits(keepalive_expiry=30.0)) as pool:
            await fetch(pool, server.url + "/1")
            await trio.sleep(10)
            await fetch(pool, server.url + "/2")
            assert server.connections_total == 1
            await trio.sleep(60)
            await fetch(pool, server.url + "/3")
            assert server.connections_total == 2
            assert pool.connection_counts() == {server.url: (0, 1)}


# -- the stale keep-alive race ---------------------------------------------------------


def closing_server(*, answer_second: bool) -> tuple[list[int], object]:
    """Answers one request per connection with a keep-alive response, then hangs up
    without saying so: before the next request arrives, or just after it."""
    seen_per_conn: list[int] = []

    async def handler(stream: trio.SocketStream) -> None:
        async with stream:
            index = len(seen_per_conn)
            seen_per_conn.append(0)
            data = b""
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        return
                    data += chunk
                data = data.split(b"\r\n\r\n", 1)[1]
                seen_per_conn[index] += 1
                if seen_per_conn[index] > 1:
                    return  # the race: the request crossed our close
                await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                if not answer_second:
                    return

    return seen_per_conn, handler


async def test_server_closing_idle_connections_is_survived() -> None:
    seen, handler = closing_server(answer_second=False)
    with trio.fail_after(GUARD):
        async with serve_tcp(handler) as port, pool_for() as pool:  # type: ignore[arg-type]
            for _ in range(5):
                assert await fetch(pool, f"http://127.0.0.1:{port}/") == b"ok"
                await trio.testing.wait_all_tasks_blocked()
            assert seen == [1] * 5


async def test_idle_connection_closed_by_server_is_detected_before_a_post() -> None:
    # A POST is never resent, so the pool must see the hang-up before sending it.
    seen, handler = closing_server(answer_second=False)
    with trio.fail_after(GUARD):
        async with serve_tcp(handler) as port, pool_for() as pool:  # type: ignore[arg-type]
            for _ in range(3):
                response = await pool.handle_request(
                    Request("POST", f"http://127.0.0.1:{port}/", content=b"x")
                )
                assert await response.aread() == b"ok"
                await trio.testing.wait_all_tasks_blocked()
            assert seen == [1, 1, 1]


async def test_reused_connection_dropped_mid_request_is_retried_for_get() -> None:
    seen, handler = closing_server(answer_second=True)
    with trio.fail_after(GUARD):
        async with serve_tcp(handler) as port, pool_for() as pool:  # type: ignore[arg-type]
            url = f"http://127.0.0.1:{port}/"
            assert await fetch(pool, url) == b"ok"
            assert await fetch(pool, url) == b"ok"  # conn 1 drops it; retried on conn 2
            assert seen == [2, 1]
            with pytest.raises(RemoteProtocolError, match="without sending a response"):
                await pool.handle_request(Request("POST", url, content=b"x"))  # not retried
            assert seen == [2, 2]
            assert pool.num_active == 0


# -- cancellation and closing ------------------------------------------------------------


async def test_cancel_while_waiting_for_response_and_for_slot() -> None:
    gate = Gate()
    with trio.fail_after(GUARD):
        async with (
            serve_h11(gate) as server,
            pool_for(limits=limits(max_connections_per_host=1)) as pool,
        ):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(fetch, pool, server.url + "/a")
                nursery.start_soon(fetch, pool, server.url + "/b")
                await trio.testing.wait_all_tasks_blocked()
                assert gate.arrived == 1 and pool.num_active == 1
                nursery.cancel_scope.cancel()
            assert pool.num_active == 0 and pool.num_idle == 0
            gate.open()  # the server handler notices the close once it is unblocked
            while server.open_now:
                await server.closed.wait()
            assert await fetch(pool, server.url + "/c") == b"ok /c"
            assert server.connections_total == 2


async def test_cancel_mid_body_never_returns_the_connection() -> None:
    big = b"y" * (EAGER_BODY_MAX * 8)
    with trio.fail_after(GUARD):
        async with serve_h11(lambda seen: Reply(200, [], big)) as server, pool_for() as pool:
            response: Response = await pool.handle_request(Request("GET", server.url + "/"))
            with trio.CancelScope() as scope:
                async for _ in response.aiter_bytes():
                    scope.cancel()
            assert pool.num_active == 0 and pool.num_idle == 0
            assert await fetch(pool, server.url + "/") == big
            assert server.connections_total == 2


async def test_closed_pool_refuses_requests_and_wakes_waiters() -> None:
    gate = Gate()
    with trio.fail_after(GUARD):
        async with serve_h11(gate) as server:
            pool = ConnectionPool(limits=limits(max_connections_per_host=1))
            errors: list[BaseException] = []

            async def attempt(path: str) -> None:
                try:
                    await fetch(pool, server.url + path)
                except Exception as exc:
                    errors.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(attempt, "/a")
                nursery.start_soon(attempt, "/b")
                await trio.testing.wait_all_tasks_blocked()
                await pool.aclose()
            assert len(errors) == 2
            assert any(isinstance(e, RuntimeError) and "closed" in str(e) for e in errors)
            assert pool.num_active == 0 and pool.num_idle == 0
            with pytest.raises(RuntimeError, match="ConnectionPool is closed"):
                await fetch(pool, server.url + "/late")
            await trio.testing.wait_all_tasks_blocked()
            assert not pool._watchdog._running  # its deadline watcher has ended too


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.needs(_has_ipv6_loopback(), "an IPv6 loopback (::1)")
async def test_ipv6_origin_host_header_and_label() -> None:
    with trio.fail_after(GUARD):
        async with serve_h11(host="::1") as server, pool_for() as pool:
            url = f"http://[::1]:{server.port}"
            assert await fetch(pool, url + "/six") == b"ok /six"
            assert server.requests[0].headers["host"] == f"[::1]:{server.port}"
            assert pool.connection_counts() == {url: (0, 1)}
            assert repr(pool) == "<ConnectionPool [0 active, 1 idle]>"


async def test_the_invariant_check_sees_a_miscounted_or_doubled_connection() -> None:
    with trio.fail_after(GUARD):
        async with serve_h11() as server, pool_for() as pool:
            await fetch(pool, server.url + "/")
            assert pool_errors(pool) == []
            pool._total += 1
            assert pool_errors(pool) == ["pool total 2, hosts' counts add up to 1"]
            pool._total -= 1
            (origin,) = pool._origins.values()
            origin.idle.append(origin.idle[0])  # one connection listed idle twice
            errors = pool_errors(pool)
            assert any("is idle twice" in e for e in errors)
            assert any(e.startswith("127.0.0.1: count 1, connections and slots 2") for e in errors)
            origin.idle.pop()
            assert_consistent(pool)


async def test_lowering_a_host_limit_closes_the_idle_connections_beyond_it() -> None:
    gate = Gate()
    with trio.fail_after(GUARD):
        async with serve_h11(gate) as server, pool_for() as pool:
            async with trio.open_nursery() as nursery:
                for i in range(3):
                    nursery.start_soon(fetch, pool, f"{server.url}/{i}")
                await trio.testing.wait_all_tasks_blocked()
                assert gate.arrived == 3
                gate.open()
            assert pool.num_idle == 3 and server.open_now == 3
            pool.set_host_limit("127.0.0.1", 1)
            assert pool.num_idle == 1
            assert_consistent(pool)
            for _ in range(2):  # the server sees each close
                if server.open_now > 1:
                    await server.closed.wait()
            assert server.open_now == 1
            assert await fetch(pool, server.url + "/again") == b"ok /again"
            assert server.connections_total == 3, "the connection kept is reused"


async def test_pool_for_checks_the_invariant_when_the_test_body_is_done() -> None:
    with trio.fail_after(GUARD):
        async with serve_h11() as server:
            with pytest.raises(AssertionError, match="pool total 2, hosts'"):
                async with pool_for() as pool:
                    await fetch(pool, server.url + "/")
                    pool._total += 1  # a slot counted that no connection holds


async def test_a_live_http11_connection_is_a_pooled_connection() -> None:
    with trio.fail_after(GUARD):
        async with serve_h11() as server, pool_for() as pool:
            await fetch(pool, server.url + "/")
            (conn,) = pool._idle_all
            assert type(conn) is HTTP11Connection and isinstance(conn, PooledConnection)
            assert conn.is_idle() and conn.is_available() and not conn.is_readable()


_CONFORMANCE = """
from typing import Protocol

from crawler.http._http2 import HTTP2Connection
from crawler.http._http11 import HTTP11Connection
from crawler.http._interfaces import PooledConnection


def both(h1: HTTP11Connection, h2: HTTP2Connection) -> list[PooledConnection]:
    return [h1, h2]


class Stricter(PooledConnection, Protocol):
    def not_there(self) -> None: ...


def neither(h1: HTTP11Connection, h2: HTTP2Connection) -> list[Stricter]:
    return [h1, h2]
"""


def test_mypy_proves_both_connection_classes_fit_the_pool_interface(tmp_path: Path) -> None:
    """The pool types its shared collections with PooledConnection; this is the
    static proof that both classes fit it (the stricter protocol shows the check bites)."""
    from mypy import api as mypy_api

    module = tmp_path / "conformance.py"
    module.write_text(_CONFORMANCE)
    cache = str(tmp_path / "cache")
    out, err, _ = mypy_api.run(["--strict", "--cache-dir", cache, str(module)])
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert all(":18: error:" in line for line in errors), out + err
    assert len(errors) == 2 and out.count('missing following "Stricter"') == 2, out + err
