"""Connection permits and request slots in a real redis-server: the Lua scripts and the
objects around them, in one process (several processes: tests/crawl/test_shared_politeness.py)."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from crawler.distributed import RedisClient, RedisDelays, RedisPermits, SharedPoliteness, _permits
from crawler.http import ConnectionPermits, PoolTimeout, Request, Timeout
from tests.redis_server import RedisServer, free_port
from tests.servers import serve_h11

GUARD = 30
PREFIX = "crawl:{test/one}:"
KEY = PREFIX + "host:example.com:conns"


def test_redis_permits_answer_the_pool_protocol() -> None:
    permits = RedisPermits(RedisClient("redis://127.0.0.1:1/0"), PREFIX)
    assert isinstance(permits, ConnectionPermits)
    assert permits.host_key("example.com") == KEY


async def test_acquire_takes_leases_up_to_the_cap_and_release_deletes_them(
    redis_server: RedisServer,
) -> None:
    with trio.fail_after(GUARD):
        async with RedisClient(redis_server.url) as client:
            permits = RedisPermits(client, PREFIX, ttl=30)
            leases = [await permits.acquire("example.com", 3) for _ in range(3)]
            assert await client.execute("ZCARD", KEY) == 3
            pttl = await client.execute("PTTL", KEY)
            assert isinstance(pttl, int) and 0 < pttl <= 30_000  # no key outlives its leases
            with trio.move_on_after(0.05) as scope:
                await permits.acquire("example.com", 3)  # full: it keeps asking
            assert scope.cancelled_caught
            permits.release(leases[0])
            permits.release(leases[0])  # twice is once
            await permits._flush()  # what the background task does with queued releases
            assert await client.execute("ZCARD", KEY) == 2  # the cancelled try left nothing
            await permits.aclose()  # gives back what is still held
            assert await client.execute("EXISTS", KEY) == 0


async def test_acquire_reaps_expired_leases(redis_server: RedisServer) -> None:
    with trio.fail_after(GUARD):
        async with RedisClient(redis_server.url) as client:
            # two leases of a dead worker, expired long ago by Redis's clock
            await client.execute("ZADD", KEY, 1, "dead:1", 2, "dead:2")
            permits = RedisPermits(client, PREFIX)
            await permits.acquire("example.com", 2)
            await permits.acquire("example.com", 2)
            members = await client.execute("ZRANGE", KEY, 0, -1)
            assert isinstance(members, list) and len(members) == 2
            assert not {b"dead:1", b"dead:2"} & set(members)


async def test_concurrent_acquirers_of_two_workers_never_exceed_the_cap(
    redis_server: RedisServer,
) -> None:
    holding = 0
    peak = 0
    done = 0
    full = trio.Event()  # the cap reached once: the first holders wait for it

    async def use(permits: RedisPermits) -> None:
        nonlocal holding, peak, done
        lease = await permits.acquire("example.com", 3)
        holding += 1
        peak = max(peak, holding)
        if peak == 3:
            full.set()
        if not full.is_set():
            await full.wait()  # hold on, with the others trying meanwhile
        for _ in range(3):
            await trio.lowlevel.checkpoint()  # let the others try meanwhile
        holding -= 1
        permits.release(lease)
        done += 1

    with trio.fail_after(GUARD):
        async with RedisClient(redis_server.url, pool_size=8) as client:
            a = RedisPermits(client, PREFIX, worker="a")
            b = RedisPermits(client, PREFIX, worker="b")
            async with trio.open_nursery() as nursery:
                await nursery.start(a.run)
                await nursery.start(b.run)
                async with trio.open_nursery() as users:
                    for i in range(30):
                        users.start_soon(use, a if i % 2 else b)
                nursery.cancel_scope.cancel()
            await a.aclose()
            await b.aclose()
            assert done == 30 and peak == 3
            assert await client.execute("ZCARD", KEY) == 0


async def _acquire_calls(client: RedisClient) -> int:
    """ACQUIRE calls so far: the only script that runs ZREMRANGEBYSCORE."""
    info = await client.execute("INFO", "commandstats")
    assert isinstance(info, bytes)
    for line in info.decode().splitlines():
        if line.startswith("cmdstat_zremrangebyscore:"):
            return int(line.split("calls=", 1)[1].split(",", 1)[0])
    return 0


async def test_a_full_host_waits_for_a_message_not_polling_and_one_task_asks_at_a_time(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The look a waiter takes in case a message was lost, out of the way: only the
    # message that a permit was given back can let a waiter ask again.
    monkeypatch.setattr(_permits, "_SLOW_POLL", 600.0)
    hold = 0.2  # how long each connection is in use: a poller would ask several times
    got = 0

    async def open_one(permits: RedisPermits) -> None:
        nonlocal got
        lease = await permits.acquire("example.com", 1)
        got += 1
        await trio.sleep(hold)
        permits.release(lease)

    with trio.fail_after(GUARD):
        async with RedisClient(redis_server.url, pool_size=8) as client:
            a = RedisPermits(client, PREFIX, worker="a")
            b = RedisPermits(client, PREFIX, worker="b")
            async with trio.open_nursery() as nursery:
                await nursery.start(a.run)
                await nursery.start(b.run)
                first = await a.acquire("example.com", 1)
                before = await _acquire_calls(client)
                async with trio.open_nursery() as users:
                    for _ in range(3):
                        users.start_soon(open_one, b)
                    await trio.sleep(hold)
                    a.release(first)
                calls = await _acquire_calls(client) - before
                nursery.cancel_scope.cancel()
            await a.aclose()
            await b.aclose()
    assert got == 3
    # 3 refused at first; then per permit given back one call that takes it, and one
    # refused call of the next task in line (which missed nothing): 3 + 2 + 2 + 1.
    assert calls <= 10, f"{calls} acquire calls"


async def test_renewal_pushes_expiry_out_and_counts_a_lost_lease_again(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    with trio.fail_after(GUARD):
        async with RedisClient(redis_server.url) as client:
            permits = RedisPermits(client, PREFIX, ttl=30)
            lease = await permits.acquire("example.com", 2)
            await client.execute("ZADD", KEY, 5, permits.worker + ":1")  # as if about to expire
            await permits._renew()
            score = await client.execute("ZSCORE", KEY, permits.worker + ":1")
            assert isinstance(score, bytes) and float(score) > 5
            await client.execute("DEL", KEY)  # expired while Redis was out of reach
            with caplog.at_level(logging.WARNING, "crawler.distributed"):
                await permits._renew()
            assert await client.execute("ZCARD", KEY) == 1
            assert "had expired while their connections were open" in caplog.text
            permits.release(lease)
            await permits.aclose()
            assert await client.execute("EXISTS", KEY) == 0


async def test_a_full_host_is_a_pool_timeout_and_no_connection_is_opened(
    redis_server: RedisServer,
) -> None:
    with trio.fail_after(GUARD):
        async with serve_h11() as server, RedisClient(redis_server.url) as client:
            shared = SharedPoliteness(redis_server.url, "test", "one")
            key = shared.permits.host_key("127.0.0.1")
            await client.execute("ZADD", key, 10**15, "other:1", 10**15, "other:2")
            from crawler.http import ConnectionPool, Limits

            pool = ConnectionPool(limits=Limits(max_connections_per_host=2), permits=shared.permits)
            try:
                with pytest.raises(PoolTimeout, match=r"RedisPermits.*127\.0\.0\.1"):
                    await pool.handle_request(
                        Request("GET", server.url, timeout=Timeout(10, pool=0.05))
                    )
            finally:
                await pool.aclose()
                await shared.aclose()
            assert server.connections_total == 0


async def test_while_redis_is_unreachable_acquire_waits_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    permits = RedisPermits(RedisClient(f"redis://127.0.0.1:{free_port()}/0"), PREFIX)
    with trio.fail_after(GUARD), caplog.at_level(logging.ERROR, "crawler.distributed"):
        with trio.move_on_after(0.05) as scope:
            await permits.acquire("example.com", 2)
        assert scope.cancelled_caught
    assert "Redis unreachable" in caplog.text and "no new connection is opened" in caplog.text
    assert caplog.text.count("Redis unreachable") == 1  # said once, not per try


# -- request slots (download_delay across workers) -----------------------------------


async def test_reserve_books_slots_a_gap_apart_on_redis_time(redis_server: RedisServer) -> None:
    with trio.fail_after(GUARD):
        async with RedisClient(redis_server.url) as client:
            a = RedisDelays(client, PREFIX)
            b = RedisDelays(client, PREFIX)
            assert await a.reserve("example.com", 0.5) == (0, 0)  # no throttle
            second, _ = await b.reserve("example.com", 0.5)
            third, _ = await a.reserve("example.com", 0.5)
            # each is booked 0.5 s after the previous one, whoever booked it
            assert 0 < second <= 0.5
            assert second + 0.4 < third <= 1.0
            assert await a.reserve("other.example", 0.5) == (0, 0)  # hosts are apart
            ttl = await client.execute("PTTL", PREFIX + "host:example.com:next")
            assert isinstance(ttl, int) and 0 < ttl <= 62_000


async def test_a_pause_holds_every_worker_back(redis_server: RedisServer) -> None:
    with trio.fail_after(GUARD):
        async with RedisClient(redis_server.url) as client:
            a = RedisDelays(client, PREFIX)
            b = RedisDelays(client, PREFIX)
            a.pause("example.com", 30.0)
            a.pause("example.com", 10.0)  # the longer one stands
            await a.flush()
            wait, _ = await b.reserve("example.com", 0.1)
            assert 29 < wait <= 30


async def test_the_engine_shares_nothing_without_a_redis_url() -> None:
    from crawler.engine import Engine
    from crawler.settings import Settings

    async with Engine(Settings()) as engine:
        assert engine.shared is None and engine.pool._permits is None


async def test_the_engine_builds_shared_politeness_from_frontier_url(
    redis_server: RedisServer,
) -> None:
    from crawler.engine import Engine
    from crawler.settings import Settings

    settings = Settings(frontier_url=redis_server.url, crawl_id="run7")
    with trio.fail_after(GUARD):
        async with Engine(settings, spider="books") as engine:
            assert engine.shared is not None
            assert engine.shared.prefix == "crawl:{books/run7}:"
            assert engine.pool._permits is engine.shared.permits


async def test_a_crawl_gives_back_every_lease_when_it_ends(redis_server: RedisServer) -> None:
    """The pool closes its idle connections on the way out: their leases must reach Redis
    before the engine's background task stops, not be left to expire."""
    from crawler import Spider
    from crawler.engine import crawl
    from crawler.request import Request as CrawlRequest
    from crawler.settings import Settings

    class Pages(Spider):
        name = "pages"

        def start_requests(self):  # type: ignore[no-untyped-def]
            for server in servers:
                for i in range(4):
                    yield CrawlRequest(f"{server.url}/{i}", callback=self.parse)

        async def parse(self, response):  # type: ignore[no-untyped-def]
            yield {"url": str(response.url)}

    with trio.fail_after(GUARD):
        async with serve_h11(host="127.0.0.2") as a, serve_h11(host="127.0.0.3") as b:
            servers = [a, b]
            for run in range(3):
                # a new crawl each time: the shared frontier would find the pages seen
                settings = Settings(
                    frontier_url=redis_server.url,
                    crawl_id=f"run{run}",
                    obey_robots=False,
                    max_connections_per_host=2,
                )
                stats = await crawl(Pages, settings)
                assert stats.requests == 8
                async with RedisClient(redis_server.url) as client:
                    keys = await client.execute("KEYS", f"crawl:{{pages/run{run}}}:host:*")
                    assert keys == []
