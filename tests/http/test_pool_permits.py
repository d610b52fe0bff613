"""ConnectionPermits: a cap on open connections per host shared beyond one pool.

Two pools sharing one in-process permit counter stand for two crawl
processes sharing Redis. What the server saw (``serve_h11``: open_now,
peak_open) is the proof; the counter also refuses a permit given back twice
or never given, so every close path is checked to give back exactly once.
"""

from __future__ import annotations

import itertools

import pytest
import trio
import trio.testing

from crawler.http import (
    ConnectionPermits,
    Limits,
    PoolTimeout,
    Request,
    Timeout,
    TransportError,
)
from crawler.http._pool import ConnectionPool
from tests.http.pools import GUARD, assert_consistent, pool_for
from tests.http.tls_sites import Certs, tls_site
from tests.servers import Reply, Seen, serve_h11, serve_tcp

pytestmark = pytest.mark.usefixtures("h11_api")


class SharedPermits:
    """Permits counted per host in this process, as Redis counts them across processes."""

    def __init__(self) -> None:
        self.held: dict[str, int] = {}
        self.tokens: set[tuple[str, int]] = set()
        self.acquired = 0
        self.changed = trio.Event()
        self._ids = itertools.count()

    async def acquire(self, host: str, cap: int) -> object:
        for _ in range(100_000):
            if self.held.get(host, 0) < cap:
                break
            await self.changed.wait()
        self.held[host] = self.held.get(host, 0) + 1
        self.acquired += 1
        token = (host, next(self._ids))
        self.tokens.add(token)
        return token

    def release(self, permit: object) -> None:
        assert isinstance(permit, tuple)
        self.tokens.remove(permit)  # KeyError: given back twice, or never given
        self.held[permit[0]] -= 1
        self.changed.set()
        self.changed = trio.Event()

    def __repr__(self) -> str:
        return "<SharedPermits>"


class Gate:
    """Holds every request until ``open()``; counts arrivals."""

    async def __call__(self, seen: Seen) -> Reply:
        self.arrived += 1
        await self.opened.wait()
        return Reply(200, [("Connection", "close")] if self.closing else [], b"ok")

    def __init__(self, *, closing: bool = False) -> None:
        self.opened = trio.Event()
        self.arrived = 0
        self.closing = closing


async def fetch(pool: ConnectionPool, url: str, **kwargs: object) -> int:
    response = await pool.handle_request(Request("GET", url, **kwargs))  # type: ignore[arg-type]
    await response.aread()
    return response.status_code


def test_the_in_process_permits_answer_the_protocol() -> None:
    assert isinstance(SharedPermits(), ConnectionPermits)


async def test_two_pools_sharing_permits_never_open_more_than_the_cap_together() -> None:
    """Each connection is closed after one request, so the permits pass between the pools
    (an idle keep-alive connection would keep its permit until it closes)."""
    permits = SharedPermits()
    gate = Gate(closing=True)
    statuses: list[int] = []

    async def one(pool: ConnectionPool, i: int) -> None:
        statuses.append(await fetch(pool, f"{server.url}/{i}"))

    limits = Limits(max_connections_per_host=2)
    with trio.fail_after(GUARD):
        async with (
            serve_h11(gate) as server,
            pool_for(limits=limits, permits=permits) as a,
            pool_for(limits=limits, permits=permits) as b,
        ):
            async with trio.open_nursery() as nursery:
                for i in range(30):
                    nursery.start_soon(one, a if i % 2 else b, i)
                await trio.testing.wait_all_tasks_blocked()
                # each pool alone would have opened 2: together they hold 2
                assert gate.arrived == 2 and server.open_now == 2
                assert_consistent(a)
                assert_consistent(b)
                gate.opened.set()
            assert statuses == [200] * 30
            assert server.peak_open == 2 and server.connections_total == 30
            assert permits.held == {"127.0.0.1": 0}
    assert permits.tokens == set()  # both pools closed: every permit came back


async def test_reusing_an_idle_connection_takes_no_permit() -> None:
    permits = SharedPermits()
    with trio.fail_after(GUARD):
        async with serve_h11() as server, pool_for(permits=permits) as pool:
            for i in range(10):
                assert await fetch(pool, f"{server.url}/{i}") == 200
            assert permits.acquired == 1 and server.connections_total == 1
    assert permits.tokens == set()


async def test_a_permit_comes_back_on_idle_expiry() -> None:
    permits = SharedPermits()
    now = [0.0]
    with trio.fail_after(GUARD):
        async with (
            serve_h11() as a,
            serve_h11(host="127.0.0.2") as b,
            pool_for(
                limits=Limits(keepalive_expiry=5.0), permits=permits, clock=lambda: now[0]
            ) as pool,
        ):
            assert await fetch(pool, a.url) == 200
            assert permits.held == {"127.0.0.1": 1}
            now[0] = 10.0
            assert await fetch(pool, b.url) == 200  # its check-in expires a's connection
            assert permits.held == {"127.0.0.1": 0, "127.0.0.2": 1}


async def test_a_permit_comes_back_when_the_server_closes_the_connection() -> None:
    permits = SharedPermits()

    def closing(seen: Seen) -> Reply:
        return Reply(200, [("Connection", "close")], b"bye")

    with trio.fail_after(GUARD):
        async with serve_h11(closing) as server, pool_for(permits=permits) as pool:
            for _ in range(3):
                assert await fetch(pool, server.url) == 200
                assert permits.held == {"127.0.0.1": 0}
            assert permits.acquired == 3


async def test_a_permit_comes_back_when_the_connection_fails() -> None:
    permits = SharedPermits()

    async def hang_up(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        await stream.aclose()

    with trio.fail_after(GUARD):
        async with serve_tcp(hang_up) as port, pool_for(permits=permits) as pool:
            with pytest.raises(TransportError):
                await fetch(pool, f"http://127.0.0.1:{port}/")
            assert permits.held == {"127.0.0.1": 0} and permits.tokens == set()


async def test_a_permit_comes_back_when_the_connect_is_cancelled() -> None:
    """A TLS handshake the server never answers: the connect is under way when cancelled."""
    permits = SharedPermits()
    accepted = trio.Event()

    async def silent(stream: trio.SocketStream) -> None:
        accepted.set()
        await trio.sleep_forever()

    with trio.fail_after(GUARD):
        async with serve_tcp(silent) as port, pool_for(permits=permits) as pool:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(fetch, pool, f"https://127.0.0.1:{port}/")
                await accepted.wait()
                assert permits.held == {"127.0.0.1": 1}
                nursery.cancel_scope.cancel()
            assert permits.held == {"127.0.0.1": 0} and permits.tokens == set()


async def test_open_connections_give_their_permits_back_when_the_pool_closes() -> None:
    permits = SharedPermits()
    gate = Gate()
    failed: list[Exception] = []

    async def doomed(pool: ConnectionPool) -> None:
        try:
            await fetch(pool, server.url)
        except Exception as exc:  # the pool closes under it
            failed.append(exc)

    with trio.fail_after(GUARD):
        async with serve_h11(gate) as server, serve_h11(host="127.0.0.2") as idle:
            pool = ConnectionPool(permits=permits)
            assert await fetch(pool, idle.url) == 200
            async with trio.open_nursery() as nursery:
                nursery.start_soon(doomed, pool)
                await trio.testing.wait_all_tasks_blocked()
                assert permits.held == {"127.0.0.1": 1, "127.0.0.2": 1}
                await pool.aclose()
            assert len(failed) == 1
            assert permits.tokens == set()


async def test_a_permit_that_never_comes_is_a_pool_timeout_naming_the_host() -> None:
    permits = SharedPermits()
    permits.held["127.0.0.1"] = 8  # held by others (the cap is 8), never given back
    with trio.fail_after(GUARD):
        async with serve_h11() as server, pool_for(permits=permits) as pool:
            with pytest.raises(PoolTimeout, match=r"permit .* to 127\.0\.0\.1 across"):
                await fetch(pool, server.url, timeout=Timeout(5.0, pool=0.01))
            assert server.connections_total == 0
            assert pool.num_active == 0


async def test_a_request_cancelled_while_waiting_for_a_permit_leaves_nothing_behind() -> None:
    permits = SharedPermits()
    permits.held["127.0.0.1"] = 8
    with trio.fail_after(GUARD):
        async with serve_h11() as server, pool_for(permits=permits) as pool:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(fetch, pool, server.url)
                await trio.testing.wait_all_tasks_blocked()
                assert pool.num_active == 1  # the slot is taken while the permit is awaited
                nursery.cancel_scope.cancel()
            assert pool.num_active == 0
            permits.held["127.0.0.1"] = 0
            assert await fetch(pool, server.url) == 200


async def test_close_expired_gives_back_the_permits_of_idle_connections_without_traffic() -> None:
    """Nothing is checked in, so only the timer's call can close them."""
    permits = SharedPermits()
    now = [0.0]
    with trio.fail_after(GUARD):
        async with (
            serve_h11() as server,
            pool_for(
                limits=Limits(keepalive_expiry=5.0), permits=permits, clock=lambda: now[0]
            ) as pool,
        ):
            assert await fetch(pool, server.url) == 200
            pool.close_expired()
            assert permits.held == {"127.0.0.1": 1}  # not expired yet
            now[0] = 6.0
            pool.close_expired()
            assert permits.held == {"127.0.0.1": 0} and pool.num_idle == 0
            for _ in range(100):
                if server.open_now == 0:
                    break
                await server.closed.wait()
            assert server.open_now == 0


async def test_close_idle_closes_a_hosts_idle_connections_and_never_one_in_use() -> None:
    """What another process's refused permit asks of this pool: the idle connection and
    its permit go now, the one carrying a request stays; ``idle_for`` spares the young."""
    permits = SharedPermits()
    now = [0.0]
    release = trio.Event()

    async def hold_one(seen: Seen) -> Reply:
        if seen.target == "/held":
            await release.wait()
        return Reply(200, [], b"ok")

    async def held() -> None:
        assert await fetch(pool, f"{server.url}/held") == 200

    with trio.fail_after(GUARD):
        async with (
            serve_h11(hold_one) as server,
            serve_h11(host="127.0.0.2") as other,
            pool_for(
                limits=Limits(max_connections_per_host=2, keepalive_expiry=60.0),
                permits=permits,
                clock=lambda: now[0],
            ) as pool,
        ):
            assert pool.close_idle("127.0.0.1") == 0  # a host never seen
            async with trio.open_nursery() as nursery:
                nursery.start_soon(held)
                await trio.testing.wait_all_tasks_blocked()
                assert await fetch(pool, f"{server.url}/quick") == 200
                assert await fetch(pool, other.url) == 200
                assert server.open_now == 2 and permits.held["127.0.0.1"] == 2
                now[0] = 1.0
                assert pool.close_idle("127.0.0.1", idle_for=2.0) == 0  # idle for 1 s only
                assert pool.num_idle == 2
                assert pool.close_idle("127.0.0.1", idle_for=0.5) == 1
                assert permits.held == {"127.0.0.1": 1, "127.0.0.2": 1}  # the other host's stays
                assert pool.num_idle == 1 and pool.num_active == 1
                assert_consistent(pool)
                for _ in range(100):
                    if server.open_now == 1:
                        break
                    await server.closed.wait()
                assert server.open_now == 1  # the server saw the idle one closed
                release.set()  # the one in use was never touched: its request completes
            assert server.connections_total == 2 and permits.held["127.0.0.1"] == 1
            assert pool.close_idle("127.0.0.1") == 1  # idle now: closed at once
            assert permits.held["127.0.0.1"] == 0


# -- HTTP/2, and its fallback to HTTP/1.1 -----------------------------------------------


async def test_an_http2_connection_holds_one_permit_for_all_its_streams(certs: Certs) -> None:
    permits = SharedPermits()
    with trio.fail_after(GUARD):
        async with (
            tls_site(certs) as (url, seen),
            pool_for(
                http2=True,
                verify=certs.ca,
                permits=permits,
                limits=Limits(max_connections_per_host=100),
            ) as pool,
        ):
            seen.hold_until = 20  # all 20 in flight at once

            async def one(i: int) -> None:
                response = await pool.handle_request(Request("GET", f"{url}/r{i}"))
                assert response.http_version == "HTTP/2"
                await response.aread()

            async with trio.open_nursery() as nursery:
                for i in range(20):
                    nursery.start_soon(one, i)
            assert permits.acquired == 1 and permits.held == {"127.0.0.1": 1}
            assert pool.close_idle("127.0.0.1") == 1  # its streams are over: it is idle
            assert permits.held == {"127.0.0.1": 0} and pool.num_idle == 0
            assert_consistent(pool)
    assert permits.tokens == set()
    assert len(seen.client_ports) == 1


async def test_a_connection_that_falls_back_to_http11_keeps_its_permit(certs: Certs) -> None:
    permits = SharedPermits()
    with trio.fail_after(GUARD):
        async with (
            tls_site(certs, alpn=["http/1.1"]) as (url, seen),
            pool_for(
                http2=True,
                verify=certs.ca,
                permits=permits,
                limits=Limits(max_connections_per_host=3),
            ) as pool,
        ):

            async def one(i: int) -> None:
                response = await pool.handle_request(Request("GET", f"{url}/f{i}"))
                assert response.http_version == "HTTP/1.1"
                await response.aread()

            async with trio.open_nursery() as nursery:
                for i in range(9):
                    nursery.start_soon(one, i)
            assert permits.held == {"127.0.0.1": len(pool._conns)}
            assert permits.acquired == len(seen.client_ports)
    assert permits.tokens == set()
