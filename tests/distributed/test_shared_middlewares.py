"""Crawl middlewares in a crawl shared through Redis: the shared worker loop runs the
chain as the in-memory one does (a real redis-server, real sites on loopback)."""

from __future__ import annotations

from typing import Any

import trio

from crawler import DropRequest, Request, Spider
from crawler.engine._stats import Stats
from tests.distributed.helpers import TwoHostSite, serve_two_hosts
from tests.distributed.workers import collect, shared_settings, stream_urls
from tests.redis_server import RedisServer

KEPT = 10  # pages /p/0 .. /p/9 are crawled; the links to later ones are dropped


class FirstPagesOnly:
    """Drops every request for a page numbered KEPT or more."""

    def process_request(self, request: Request, spider: Spider) -> Any:
        if int(request.url.rsplit("/", 1)[1]) >= KEPT:
            raise DropRequest("beyond")
        return None


async def test_two_shared_workers_run_the_middlewares_on_every_request(
    redis_server: RedisServer,
) -> None:
    site_pages = 30
    async with serve_two_hosts(TwoHostSite(site_pages)) as site:
        s = shared_settings(
            site,
            redis_server.url,
            middlewares=("tests.distributed.test_shared_middlewares:FirstPagesOnly",),
        )
        results: list[Stats] = []
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for agent in ("w1", "w2"):
                    nursery.start_soon(collect, results, s, agent)
    kept = {site.url(i) for i in range(KEPT)}
    assert {url for url, n in site.hits.items() if "/p/" in url} == kept
    assert sorted(await stream_urls(redis_server.url)) == sorted(kept)
    # pages 10..20 are linked from the kept ones (page i links to 2i+1 and 2i+2): each is
    # dropped once, by whichever worker leased it
    assert sum(stats.dropped["beyond"] for stats in results) == 2 * KEPT + 1 - KEPT
