"""The shared frontier's Lua scripts, run on a real redis-server through the client."""

from __future__ import annotations

from typing import Any

import trio

from crawler import Request
from crawler.distributed import RedisClient
from crawler.distributed._frontier import CrawlKeys, decode_stored, encode_stored
from crawler.distributed._scripts import COMMIT, LEASE, PUSH, RELEASE, SCRIPTS
from crawler.frontier._fingerprint import request_fingerprint
from tests.redis_server import RedisServer

KEYS = CrawlKeys("books", "t1")
P = KEYS.prefix


def stored(url: str, priority: int = 0) -> tuple[bytes, str]:
    request = Request(url, priority=priority)
    host = url.split("/")[2]
    return request_fingerprint("GET", url), encode_stored(request, host)


async def push(client: RedisClient, *urls: str, priority: int = 0) -> Any:
    args: list[Any] = [P]
    for url in urls:
        args += stored(url, priority)
    return await client.run(PUSH, [KEYS.meta], args)


async def lease(
    client: RedisClient,
    worker: str,
    n: int,
    *,
    ttl_ms: int = 60_000,
    register: bool = True,
    max_pages: int = 0,
    max_items: int = 0,
) -> tuple[int, int, int, bytes, list[tuple[bytes, str]]]:
    reply = await client.run(
        LEASE, [KEYS.meta], [P, worker, ttl_ms, n, int(register), n, max_pages, max_items]
    )
    assert isinstance(reply, list)
    alive, queued, leased, stop, *pairs = reply
    got = [(pairs[i], decode_stored(pairs[i + 1])[1].url) for i in range(0, len(pairs), 2)]
    return alive, queued, leased, stop, got


async def commit(
    client: RedisClient,
    worker: str,
    rid: bytes,
    children: list[str],
    items: list[str],
    *,
    again: bool = False,
) -> Any:
    args: list[Any] = [P, worker, int(not again), rid, len(children), len(items), int(again)]
    for url in children:
        args += stored(url)
    args += items
    return await client.run(COMMIT, [KEYS.meta], args)


def client_for(server: RedisServer) -> RedisClient:
    return RedisClient(server.url, scripts=SCRIPTS)


async def test_push_deduplicates_by_fingerprint(redis_server: RedisServer) -> None:
    async with client_for(redis_server) as client:
        assert await push(client, "http://a.test/1", "http://a.test/2") == 2
        # the same URL, and the same URL spelled differently: both seen already
        assert await push(client, "http://a.test/1", "http://A.test:80/2") == 0
        assert await client.execute("GET", KEYS.queued) == b"2"


async def test_lease_gives_priority_order_then_fifo(redis_server: RedisServer) -> None:
    async with client_for(redis_server) as client:
        await push(client, "http://a.test/low1", "http://a.test/low2", priority=0)
        await push(client, "http://a.test/high", priority=5)
        await push(client, "http://a.test/neg", priority=-1)
        *_, got = await lease(client, "w1", 10)
    assert [url for _, url in got] == [
        "http://a.test/high",
        "http://a.test/low1",
        "http://a.test/low2",
        "http://a.test/neg",
    ]


async def test_lease_takes_from_several_hosts_and_each_request_once(
    redis_server: RedisServer,
) -> None:
    async with client_for(redis_server) as client:
        for host in ("a.test", "b.test", "c.test"):
            await push(client, *(f"http://{host}/{i}" for i in range(4)))
        reply = await client.run(LEASE, [KEYS.meta], [P, "w1", 60_000, 6, 1, 2])
        assert isinstance(reply, list)
        first = [decode_stored(reply[i])[1].url for i in range(5, len(reply), 2)]
        *_, second = await lease(client, "w2", 100)
        alive, queued, leased, _, third = await lease(client, "w3", 100)
    assert {url.split("/")[2] for url in first} == {"a.test", "b.test", "c.test"}
    urls = first + [url for _, url in second]
    assert len(urls) == len(set(urls)) == 12
    assert (alive, queued, leased, third) == (1, 0, 12, [])


async def test_commit_applies_children_items_and_done_mark(redis_server: RedisServer) -> None:
    async with client_for(redis_server) as client:
        await push(client, "http://a.test/")
        *_, got = await lease(client, "w1", 1)
        rid = got[0][0]
        reply = await commit(
            client, "w1", rid, ["http://a.test/x", "http://a.test/"], ['{"n":1}', '{"n":2}']
        )
        assert reply == [1, 2, 0]  # one page, two items, nothing refused
        # what it keeps to know a resent commit expires, should the worker die holding it
        kept_for = await client.execute("PTTL", KEYS.prefix + "wc:w1")
        assert isinstance(kept_for, int) and 0 < kept_for <= 86_400_000
        # sent again (its reply lost): found done, not applied twice, not a refetch
        resent = await commit(client, "w1", rid, ["http://a.test/y"], ['{"n":3}'], again=True)
        assert resent == [0, 0, 1]
        stream = await client.execute("XRANGE", KEYS.items, "-", "+")
        owner = await client.execute("HLEN", KEYS.owner)
        stats = await client.execute("HGETALL", KEYS.stats)
        # the child the page had seen already (itself) was not queued again
        *_, rest = await lease(client, "w1", 10)
    assert [fields[1] for _, fields in stream] == [b'{"n":1}', b'{"n":2}']  # type: ignore[attr-defined]
    assert owner == 0
    assert [url for _, url in rest] == ["http://a.test/x"]
    assert dict(zip(stats[::2], stats[1::2], strict=True))[b"pages"] == b"1"  # type: ignore[index]


async def test_heartbeat_renews_and_a_dead_workers_leases_are_reaped(
    redis_server: RedisServer,
) -> None:
    async with client_for(redis_server) as client:
        await push(client, "http://a.test/1", "http://a.test/2")
        *_, got = await lease(client, "dead", 2, ttl_ms=300)
        assert len(got) == 2
        # a live worker renews its heartbeat meanwhile and finds nothing yet
        alive, queued, leased, _, none = await lease(client, "live", 1, ttl_ms=60_000)
        assert (alive, queued, leased, none) == (1, 0, 2, [])
        with trio.fail_after(30):
            while True:  # until the server's clock passes the dead worker's expiry
                alive, queued, leased, _, taken = await lease(client, "live", 5)
                if taken:
                    break
                await trio.sleep(0.05)
        reaped = await client.execute("HGET", KEYS.stats, "reaped")
        # the dead worker comes back: it is told it was reaped and leases nothing
        back = await lease(client, "dead", 5, register=False)
    assert sorted(url for _, url in taken) == ["http://a.test/1", "http://a.test/2"]
    assert reaped == b"2"
    assert back[0] == 0 and back[4] == []


async def test_commit_is_refused_once_the_lease_went_elsewhere(redis_server: RedisServer) -> None:
    async with client_for(redis_server) as client:
        await push(client, "http://a.test/")
        *_, got = await lease(client, "slow", 1, ttl_ms=200)
        rid = got[0][0]
        with trio.fail_after(30):
            while True:
                *_, again = await lease(client, "other", 1)
                if again:
                    break
                await trio.sleep(0.05)
        assert again[0][0] == rid
        refused = await commit(client, "slow", rid, ["http://a.test/late"], ['{"late":1}'])
        accepted = await commit(client, "other", rid, [], ['{"once":1}'])
        stream = await client.execute("XRANGE", KEYS.items, "-", "+")
        queued = await client.execute("GET", KEYS.queued)
        refetches = await client.execute("HGET", KEYS.stats, "refetches")
    assert refused == [0, 0, 0, rid]
    assert accepted == [1, 1, 0]
    assert [fields[1] for _, fields in stream] == [b'{"once":1}']  # type: ignore[attr-defined]
    assert queued == b"0"  # the refused page's child was not queued
    assert refetches == b"1"


async def test_release_gives_back_leases(redis_server: RedisServer) -> None:
    async with client_for(redis_server) as client:
        await push(client, *(f"http://a.test/{i}" for i in range(3)))
        *_, got = await lease(client, "w1", 3)
        keep = got[0][0]
        # "keep": the worker lists the one lease it knows; the two others go back
        assert await client.run(RELEASE, [KEYS.meta], [P, "w1", "keep", keep]) == 2
        assert await client.execute("GET", KEYS.queued) == b"2"
        assert await client.run(RELEASE, [KEYS.meta], [P, "w1", "leave"]) == 1
        assert await client.execute("GET", KEYS.queued) == b"3"
        assert await client.execute("ZSCORE", KEYS.workers, "w1") is None


async def test_stop_flag_stops_leasing_and_a_new_run_clears_it(redis_server: RedisServer) -> None:
    async with client_for(redis_server) as client:
        await push(client, "http://a.test/")
        await lease(client, "w0", 0)
        await client.execute("SET", KEYS.stop, "1")
        _, _, _, stop, got = await lease(client, "w1", 5)
        assert (stop, got) == (b"1", [])
        for worker in ("w0", "w1"):
            await client.run(RELEASE, [KEYS.meta], [P, worker, "leave"])
        # no worker is left: the next one to join starts a new run, without the stop
        _, _, _, stop, got = await lease(client, "w2", 5)
    assert stop == b"" and len(got) == 1


async def test_max_pages_leases_no_more_than_the_pages_left_then_stops_the_crawl(
    redis_server: RedisServer,
) -> None:
    async with client_for(redis_server) as client:
        await push(client, *(f"http://a.test/{i}" for i in range(10)))
        _, _, _, _, first = await lease(client, "w1", 3, max_pages=4)
        # three leased: one page is left to the crawl, whoever asks
        _, queued, _, _, second = await lease(client, "w2", 3, max_pages=4)
        _, queued_after, _, stop, third = await lease(client, "w2", 3, max_pages=4)
        assert (len(first), len(second), third, stop) == (3, 1, [], b"")
        assert (queued, queued_after) == (0, 0)  # nothing more to lease until pages end
        for rid, _ in first:
            await commit(client, "w1", rid, [], [])
        _, _, _, stop, fourth = await lease(client, "w1", 3, max_pages=4)
        assert (stop, fourth) == (b"", [])
        await commit(client, "w2", second[0][0], [], [])
        _, _, _, stop, fifth = await lease(client, "w1", 3, max_pages=4)
    assert (stop, fifth) == (b"max_pages", [])


async def test_max_items_stops_the_crawl_once_commits_added_that_many(
    redis_server: RedisServer,
) -> None:
    async with client_for(redis_server) as client:
        await push(client, *(f"http://a.test/{i}" for i in range(10)))
        _, _, _, _, got = await lease(client, "w1", 2, max_items=3)
        await commit(client, "w1", got[0][0], [], ['{"a": 1}', '{"a": 2}'])
        _, _, _, stop, more = await lease(client, "w1", 1, max_items=3)
        assert (stop, len(more)) == (b"", 1)
        await commit(client, "w1", got[1][0], [], ['{"a": 3}'])
        _, _, _, stop, last = await lease(client, "w1", 1, max_items=3)
    assert (stop, last) == (b"max_items", [])


async def test_a_lease_spreads_over_the_hosts_that_have_work(redis_server: RedisServer) -> None:
    async with client_for(redis_server) as client:
        for host in ("a.test", "b.test", "c.test"):
            await push(client, *(f"http://{host}/{i}" for i in range(4)))
        *_, spread = await lease(client, "w1", 6)  # no cap per host: an even share each
        await push(client, *(f"http://d.test/{i}" for i in range(8)))
        await client.run(RELEASE, [KEYS.meta], [P, "w1", "leave"])
        *_, everything = await lease(client, "w1", 20)
    hosts = [url.split("/")[2] for _, url in spread]
    assert sorted(hosts) == ["a.test", "a.test", "b.test", "b.test", "c.test", "c.test"]
    assert len(everything) == 20
