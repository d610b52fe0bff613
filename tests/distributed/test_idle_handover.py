"""Idle connections handed over: a worker refused a permit gets the idle connection
another worker keeps to the host, without waiting for its keep-alive expiry.

Two engines in one process stand for two workers of one crawl (same spider name
and crawl_id, same redis-server); what the loopback server saw is the proof.
Keep-alive expiry is 60 s and the guards are well below it: a request that gets
its connection only at expiry fails its guard.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from crawler.distributed import RedisClient, RedisPermits, Subscription
from crawler.engine import Engine
from crawler.http import ConnectionPool, Request
from crawler.settings import Settings
from tests.redis_server import RedisServer
from tests.servers import H11Server, Reply, Seen, serve_h11

GUARD = 30  # seconds: a hang guard, half the keep-alive expiry
PREFIX = "crawl:{test/handover}:"  # the engines' prefix: spider "test", crawl_id "handover"


def worker_settings(redis: RedisServer) -> Settings:
    return Settings(
        frontier_url=redis.url,
        crawl_id="handover",
        max_connections_per_host=1,
        keepalive_expiry=60.0,
        pool_timeout=120.0,
    )


async def fetch(pool: ConnectionPool, url: str) -> int:
    response = await pool.handle_request(Request("GET", url))
    await response.aread()
    return response.status_code


async def until_open(server: H11Server, count: int) -> None:
    for _ in range(100):
        if server.open_now == count:
            return
        await server.closed.wait()
    raise AssertionError(f"{server.open_now} connections open, expected {count}")


class Messages:
    """The hosts published on the crawl's ``wanted`` channel, as they come."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self._changed = trio.Event()

    def add(self, _channel: bytes, data: bytes) -> None:
        self.received.append(data)
        self._changed.set()
        self._changed = trio.Event()

    async def until(self, count: int) -> None:
        for _ in range(100):
            if len(self.received) >= count:
                return
            await self._changed.wait()
        raise AssertionError(f"{self.received} after 100 messages")


@asynccontextmanager
async def wanted_messages(redis: RedisServer) -> AsyncIterator[Messages]:
    messages = Messages()
    async with RedisClient(redis.url) as client, trio.open_nursery() as nursery:
        subscription = Subscription(client, [PREFIX + "wanted"], messages.add)
        await nursery.start(subscription.run)
        assert subscription.ready
        yield messages
        nursery.cancel_scope.cancel()


async def test_a_refused_worker_gets_the_idle_connection_another_worker_kept(
    redis_server: RedisServer,
) -> None:
    settings = worker_settings(redis_server)
    with trio.fail_after(GUARD):
        async with (
            serve_h11() as server,
            Engine(settings, spider="test") as a,
            Engine(settings, spider="test") as b,
        ):
            assert await fetch(a.pool, f"{server.url}/a") == 200
            assert a.pool.num_idle == 1  # idle, holding the host's only permit
            assert await fetch(b.pool, f"{server.url}/b") == 200
            assert a.pool.num_idle == 0
            assert server.connections_total == 2
            await until_open(server, 1)  # the server saw a's connection closed
            assert [seen.connection_id for seen in server.requests] == [1, 2]


async def test_a_connection_in_use_is_handed_over_only_once_idle(
    redis_server: RedisServer,
) -> None:
    """The request on a's connection completes on it; b gets the connection next."""
    settings = worker_settings(redis_server)
    arrived = trio.Event()
    release = trio.Event()
    statuses: list[int] = []

    async def hold_one(seen: Seen) -> Reply:
        if seen.target == "/held":
            arrived.set()
            await release.wait()
        return Reply(200, [], b"ok")

    async def one(pool: ConnectionPool, path: str) -> None:
        statuses.append(await fetch(pool, f"{server.url}{path}"))

    with trio.fail_after(GUARD):
        async with (
            serve_h11(hold_one) as server,
            wanted_messages(redis_server) as wanted,
            Engine(settings, spider="test") as a,
            Engine(settings, spider="test") as b,
        ):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(one, a.pool, "/held")
                await arrived.wait()
                nursery.start_soon(one, b.pool, "/b")
                await wanted.until(1)  # b was refused: a's connection is in use
                assert a.pool.num_active == 1 and not statuses
                release.set()
            assert statuses == [200, 200]
            assert wanted.received == [b"127.0.0.1"]
            assert [(seen.target, seen.connection_id) for seen in server.requests] == [
                ("/held", 1),
                ("/b", 2),
            ]
            await until_open(server, 1)


async def test_a_refusal_publishes_the_host_once_until_a_permit_comes_back(
    redis_server: RedisServer,
) -> None:
    with trio.fail_after(GUARD):
        async with (
            RedisClient(redis_server.url) as client,
            wanted_messages(redis_server) as wanted,
        ):
            permits = RedisPermits(client, PREFIX)
            lease, _ = await permits._try("example.com", 1)
            assert lease is not None
            for _ in range(3):
                assert await permits._try("example.com", 1) == (None, True)
            await sync(client, wanted)
            assert wanted.received == [b"example.com", b"sync"]  # once for three refusals
            permits.release(lease)
            await permits._flush()  # the mark is cleared: the next refusal tells again
            lease, _ = await permits._try("example.com", 1)
            assert await permits._try("example.com", 1) == (None, True)
            await sync(client, wanted)
            assert wanted.received == [b"example.com", b"sync", b"example.com", b"sync"]
            await permits.aclose()


async def sync(client: RedisClient, messages: Messages) -> None:
    """Publish a marker and wait for it: the messages published before it have come."""
    before = messages.received.count(b"sync")
    await client.execute("PUBLISH", PREFIX + "wanted", "sync")
    for _ in range(100):
        if messages.received.count(b"sync") > before:
            return
        await messages.until(len(messages.received) + 1)
    raise AssertionError("the marker never came")
