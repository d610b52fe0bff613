"""Limits and shared work of a shared crawl count the whole crawl, not each worker."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from crawler import Request
from crawler.distributed import RedisClient, RedisError
from crawler.distributed._admin import crawl_status, export_items
from crawler.engine._stats import Stats
from tests.distributed.helpers import TwoHostSite, TwoHostSpider, serve_two_hosts
from tests.distributed.workers import (
    KEYS,
    collect,
    page_hits,
    run_worker,
    shared_settings,
    stream_urls,
)
from tests.redis_server import RedisServer

CONCURRENCY = 4
# Past max_items, each worker finishes at most what it holds leased: its pages in flight
# and its local buffer (max(8, concurrency) requests).
HELD = 2 * (max(8, CONCURRENCY) + CONCURRENCY)


async def _two_workers(site: TwoHostSite, url: str, **limits: Any) -> list[Stats]:
    s = shared_settings(site, url, concurrency=CONCURRENCY, **limits)
    results: list[Stats] = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for agent in ("w1", "w2"):
                nursery.start_soon(collect, results, s, agent)
    return results


async def _counters(url: str) -> dict[str, int]:
    async with RedisClient(url) as client:
        stats = await client.execute("HGETALL", KEYS.stats)
    assert isinstance(stats, list)
    return {stats[i].decode(): int(stats[i + 1]) for i in range(0, len(stats), 2)}


async def test_max_pages_counts_the_pages_of_every_worker(redis_server: RedisServer) -> None:
    async with serve_two_hosts(TwoHostSite(200)) as site:
        results = await _two_workers(site, redis_server.url, max_pages=20)
        fetched = sum(page_hits(site).values())
    # No more is leased than max_pages leaves: exactly the limit, with no refetch.
    assert fetched == 20
    assert [stats.finish_reason for stats in results] == ["max_pages", "max_pages"]
    counters = await _counters(redis_server.url)
    assert counters["pages"] == fetched
    urls = await stream_urls(redis_server.url)
    assert len(urls) == len(set(urls)) == counters["items"]
    status = await trio.to_thread.run_sync(crawl_status, redis_server.url, None, "default")
    assert "state:         stopped: max_pages reached" in status
    assert "stop requested" not in status


async def test_max_items_counts_the_items_of_every_worker(redis_server: RedisServer) -> None:
    async with serve_two_hosts(TwoHostSite(200)) as site:
        results = await _two_workers(site, redis_server.url, max_items=30)
        fetched = sum(page_hits(site).values())
    counters = await _counters(redis_server.url)
    assert 30 <= counters["items"] <= 30 + HELD  # one item a page
    assert fetched == counters["pages"] == counters["items"]
    assert [stats.finish_reason for stats in results] == ["max_items", "max_items"]
    urls = await stream_urls(redis_server.url)
    assert len(urls) == len(set(urls)) == counters["items"]
    status = await trio.to_thread.run_sync(crawl_status, redis_server.url, None, "default")
    assert "state:         stopped: max_items reached" in status


async def test_a_new_run_of_a_crawl_past_its_limit_fetches_nothing(
    redis_server: RedisServer,
) -> None:
    async with serve_two_hosts(TwoHostSite(200)) as site:
        await _two_workers(site, redis_server.url, max_pages=10)
        hits = dict(site.hits)
        results = await _two_workers(site, redis_server.url, max_pages=10)
        assert dict(site.hits) == hits
        assert [stats.finish_reason for stats in results] == ["max_pages", "max_pages"]
        # A higher limit carries the same crawl on.
        await _two_workers(site, redis_server.url, max_pages=16)
        fetched = sum(page_hits(site).values())
    assert fetched == 16


class RobotsSite(TwoHostSite):
    """TwoHostSite whose hosts forbid page 7 in their robots.txt."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] != "/robots.txt":
            await super().__call__(scope, receive, send)
            return
        host, port = scope["server"]
        self.hits[f"http://{host}:{port}/robots.txt"] += 1
        body = b"User-agent: *\nDisallow: /p/7\n"
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def test_robots_txt_is_fetched_once_per_host_for_every_worker(
    redis_server: RedisServer,
) -> None:
    async with serve_two_hosts(RobotsSite(40)) as site:
        robots = [f"{base}/robots.txt" for base in site.bases]
        first = shared_settings(site, redis_server.url, obey_robots=True, max_pages=3)
        with trio.fail_after(60):
            await collect([], first, "w1")  # pages 0 to 2: both hosts
        assert [site.hits[url] for url in robots] == [1, 1]
        await _two_workers(site, redis_server.url, obey_robots=True)
    # the other workers read the file the first one stored, and obeyed it
    assert [site.hits[url] for url in robots] == [1, 1]
    assert site.url(7) not in site.hits
    # 7 and what only it links to (15, 16, 31 to 34) are not crawled; the rest once
    assert sum(page_hits(site).values()) == 40 - 7


async def _redis_ms(client: RedisClient) -> int:
    clock = await client.execute("TIME")
    assert isinstance(clock, list)
    return int(clock[0]) * 1000 + int(clock[1]) // 1000


async def _deadline(client: RedisClient) -> int:
    value = await client.execute("GET", KEYS.deadline)
    assert isinstance(value, bytes), "no max_seconds deadline in Redis"
    return int(value)


async def _fast_forward(client: RedisClient) -> None:
    """Make the run's deadline due now: the effect of max_seconds passing, without waiting."""
    await client.execute("SET", KEYS.deadline, await _redis_ms(client))


async def test_max_seconds_counts_from_the_start_of_the_run_for_every_worker(
    redis_server: RedisServer,
) -> None:
    hour = 3600.0
    async with (
        serve_two_hosts(TwoHostSite(100_000, delay=0.01)) as site,
        RedisClient(redis_server.url) as client,
    ):
        s = shared_settings(site, redis_server.url, concurrency=CONCURRENCY, max_seconds=hour)
        results: list[Stats] = []
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(collect, results, s, "w1")
                await site.wait_for(lambda: site.by_agent["w1"])
                # The first worker fixed the deadline on Redis's clock...
                deadline = await _deadline(client)
                assert 0 < deadline - await _redis_ms(client) <= hour * 1000
                nursery.start_soon(collect, results, s, "w2")
                await site.wait_for(lambda: site.by_agent["w2"])
                # ...and the second, joining later, keeps it rather than starting its own.
                assert await _deadline(client) == deadline
                status = await trio.to_thread.run_sync(
                    crawl_status, redis_server.url, "twohosts", "default"
                )
                assert "time left:" in status
                await _fast_forward(client)
        # Both stopped at the crawl's deadline, long before their own hour, and committed
        # every page they had in flight.
        assert [stats.finish_reason for stats in results] == ["max_seconds", "max_seconds"]
        counters = await _counters(redis_server.url)
        assert counters["pages"] == sum(page_hits(site).values())
        assert counters.get("refetches", 0) == 0
        status = await trio.to_thread.run_sync(crawl_status, redis_server.url, None, "default")
        assert "state:         stopped: max_seconds reached" in status

        # A new run of the crawl gets a fresh max_seconds: it crawls on, then stops at its
        # own deadline.
        before = sum(page_hits(site).values())
        results.clear()
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(collect, results, s, "w3")
                await site.wait_for(lambda: site.by_agent["w3"])
                assert await _deadline(client) - await _redis_ms(client) > (hour - 60) * 1000
                await _fast_forward(client)
        assert [stats.finish_reason for stats in results] == ["max_seconds"]
        assert sum(page_hits(site).values()) > before


class ManyStartsSpider(TwoHostSpider):
    """TwoHostSpider starting from every URL in its ``start`` option: every worker gets
    some of them, so several need the same robots.txt at once."""

    def start_requests(self) -> Iterator[Request]:
        for url in self.settings["start"].split():
            yield Request(url)


class GatedRobotsSite(TwoHostSite):
    """TwoHostSite whose first host forbids /p/98 in a robots.txt it answers only once
    ``gate`` is set; ``asked()`` counts the requests for that file."""

    def __init__(self, pages: int) -> None:
        super().__init__(pages)
        self.gate = trio.Event()
        self.asked: Callable[[], None] = lambda: None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] != "/robots.txt":
            await super().__call__(scope, receive, send)
            return
        host, port = scope["server"]
        url = f"http://{host}:{port}/robots.txt"
        self.hits[url] += 1
        if url == f"{self.bases[0]}/robots.txt":
            self.asked()
            await self.gate.wait()
        body = b"User-agent: *\nDisallow: /p/98\n"
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class _Waits(logging.Handler):
    """Calls ``seen`` for each worker's log line saying it waits for another's fetch."""

    def __init__(self, seen: Callable[[], None]) -> None:
        super().__init__(logging.DEBUG)
        self.seen = seen

    def emit(self, record: logging.LogRecord) -> None:
        if "which another worker is fetching" in record.getMessage():
            self.seen()


async def test_robots_txt_needed_by_several_workers_at_once_is_fetched_once(
    redis_server: RedisServer,
) -> None:
    workers = ("w1", "w2", "w3")
    site = GatedRobotsSite(100)
    async with serve_two_hosts(site):
        # The robots.txt answer is held until every worker needs it: each has either
        # asked the site for it or said that it waits for another worker's fetch.
        needing = 0

        def needs() -> None:
            nonlocal needing
            needing += 1
            if needing == len(workers):
                site.gate.set()

        site.asked = needs
        handler = _Waits(needs)
        logger = logging.getLogger("crawler.distributed")
        level = logger.level
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        starts = " ".join(site.url(i) for i in range(0, 100, 2))  # all on the first host
        s = shared_settings(
            site, redis_server.url, concurrency=2, obey_robots=True, options={"start": starts}
        )
        try:
            with trio.fail_after(60):
                async with trio.open_nursery() as nursery:
                    for agent in workers:
                        nursery.start_soon(run_worker, s, agent, ManyStartsSpider)
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)
    assert [site.hits[f"{base}/robots.txt"] for base in site.bases] == [1, 1]
    # Every worker obeyed the one answer.
    assert set(page_hits(site)) == site.all_urls() - {site.url(98)}
    assert all(site.by_agent[agent] for agent in workers)


async def test_a_robots_lock_left_by_a_dead_worker_expires_and_another_fetches(
    redis_server: RedisServer,
) -> None:
    async with serve_two_hosts(RobotsSite(20)) as site:
        robots = f"{site.bases[0]}/robots.txt"
        async with RedisClient(redis_server.url) as client:
            # A worker killed while fetching the file: its lock outlives it a little.
            await client.execute("SET", f"{KEYS.prefix}robots-lock:{robots}", "dead", "PX", 300)
        s = shared_settings(site, redis_server.url, obey_robots=True)
        with trio.fail_after(60):
            await collect([], s, "w1")
    assert site.hits[robots] == 1
    assert site.url(7) not in site.hits  # the rules were fetched and obeyed
    assert sum(page_hits(site).values()) == 20 - 3  # 7, and 15 and 16 it alone links to


def _export(redis: RedisServer, out: Path, *, append: bool = True, trim: bool = True) -> int:
    result = export_items(
        redis.url, "twohosts", "default", out, append=append, follow=False, trim=trim
    )
    return result.written


async def _stream_length(url: str) -> int:
    async with RedisClient(url) as client:
        length = await client.execute("XLEN", KEYS.items)
    assert isinstance(length, int)
    return length


async def test_export_with_trim_shrinks_the_stream_and_keeps_every_item_once(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    out = tmp_path / "items.jsonl"
    async with serve_two_hosts(TwoHostSite(40)) as site:
        with trio.fail_after(60):
            await collect([], shared_settings(site, redis_server.url, max_pages=15), "w1")
        assert await trio.to_thread.run_sync(lambda: _export(redis_server, out)) == 15
        assert await _stream_length(redis_server.url) == 0
        # More items committed after the trim: the next export writes just those.
        with trio.fail_after(60):
            await collect([], shared_settings(site, redis_server.url, max_pages=30), "w1")
        assert await _stream_length(redis_server.url) == 15
        # An export stopped after its position was on disk, before it trimmed: the next
        # export with --trim trims it, and writes nothing twice.
        assert await trio.to_thread.run_sync(lambda: _export(redis_server, out, trim=False)) == 15
        assert await _stream_length(redis_server.url) == 15
        assert await trio.to_thread.run_sync(lambda: _export(redis_server, out)) == 0
        assert await _stream_length(redis_server.url) == 0
        with trio.fail_after(60):
            await collect([], shared_settings(site, redis_server.url), "w1")
        assert await trio.to_thread.run_sync(lambda: _export(redis_server, out)) == 10
    urls = [json.loads(line)["url"] for line in out.read_text().splitlines()]
    assert sorted(urls) == sorted(site.all_urls())  # each once
    assert await _stream_length(redis_server.url) == 0
    status = await trio.to_thread.run_sync(crawl_status, redis_server.url, None, "default")
    assert "items:         40 (0 in the stream, 40 exported and trimmed)" in status


async def test_an_export_that_would_miss_trimmed_items_refuses_and_keeps_its_file(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    trimmed, other = tmp_path / "trimmed.jsonl", tmp_path / "other.jsonl"
    async with serve_two_hosts(TwoHostSite(20)) as site:
        with trio.fail_after(60):
            await collect([], shared_settings(site, redis_server.url, max_pages=5), "w1")
        await trio.to_thread.run_sync(lambda: _export(redis_server, other, trim=False))
        with trio.fail_after(60):
            await collect([], shared_settings(site, redis_server.url, max_pages=10), "w1")
        # Trims the 5 items the other file has not exported yet.
        await trio.to_thread.run_sync(lambda: _export(redis_server, trimmed))
        with trio.fail_after(60):
            await collect([], shared_settings(site, redis_server.url), "w1")
    kept = other.read_bytes()
    for out, append in ((other, True), (other, False), (tmp_path / "new.jsonl", False)):
        with pytest.raises(RedisError, match="were trimmed from the stream by `crawl export"):
            await trio.to_thread.run_sync(partial(_export, redis_server, out, append=append))
    assert other.read_bytes() == kept  # -O refused before it emptied the file
    # The file trimmed from goes on.
    assert await trio.to_thread.run_sync(lambda: _export(redis_server, trimmed)) == 10
