"""A worker with nothing to lease waits for a notification rather than polling Redis.

The site is a chain: each page links to the next one only, so a crawl has one
request at a time, and of two workers one always starves. Redis's own count of
script calls (``INFO commandstats``) shows whether the starving one polls.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import trio

from crawler import Request, Response, Settings, Spider
from crawler.distributed import RedisClient, _shared
from crawler.engine._engine import Engine
from crawler.engine._stats import Stats
from tests.crawl.helpers import settings
from tests.redis_server import RedisServer
from tests.servers import serve_asgi

PAGES = 20


class ChainSite:
    """``/c/0`` .. ``/c/N-1``, each linking to the next; each answer takes ``delay``
    seconds, as a slow site's would, so that a starving worker has time to poll."""

    def __init__(self, pages: int, delay: float) -> None:
        self.pages = pages
        self.delay = delay
        self.hits = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        self.hits += 1
        await trio.sleep(self.delay)
        i = int(scope["path"].rsplit("/", 1)[1])
        link = f'<a href="/c/{i + 1}">next</a>' if i + 1 < self.pages else ""
        body = f"<html><body>{link}</body></html>".encode()
        headers = [(b"content-type", b"text/html"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class ChainSpider(Spider):
    name = "chain"
    options = {"start": ""}

    def start_requests(self) -> Iterator[Request]:
        yield Request(self.settings["start"])

    def parse(self, response: Response) -> Iterator[Any]:
        yield {"url": str(response.url)}
        yield from response.follow_all()


async def _worker(s: Settings, results: list[Stats]) -> None:
    async with Engine(s) as engine:
        results.append(await engine.crawler(ChainSpider, s, pipelines=[]).run())


async def _script_calls(client: RedisClient) -> int:
    info = await client.execute("INFO", "commandstats")
    assert isinstance(info, bytes)
    for line in info.decode().splitlines():
        if line.startswith("cmdstat_evalsha:"):
            return int(line.split("calls=", 1)[1].split(",", 1)[0])
    return 0


async def test_a_starving_worker_waits_for_a_notification_not_polling(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fallback look a worker takes in case a notification was lost, out of the way:
    # only notifications can wake the starving worker, so the count is theirs.
    monkeypatch.setattr(_shared, "_SLOW_POLL", 600.0)
    site = ChainSite(PAGES, delay=0.2)
    async with (
        serve_asgi(site, "127.0.0.1") as base,
        RedisClient(redis_server.url) as client,
    ):
        s = settings(
            base,
            frontier_url=redis_server.url,
            lease_ttl=120.0,  # no heartbeat round during the crawl
            obey_robots=False,
            options={"start": f"{base}/c/0"},
        )
        before = await _script_calls(client)
        results: list[Stats] = []
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for _ in range(2):
                    nursery.start_soon(_worker, s, results)
        calls = await _script_calls(client) - before
    assert site.hits == PAGES
    assert [stats.finish_reason for stats in results] == ["finished", "finished"]
    # The worker with the page: a lease when its buffer empties, then the commit and
    # the next lease: 3 a page. Besides, about 17 in all: each worker joins, pushes
    # the start request, takes a connection permit, sees the end and leaves. The
    # starving one adds nothing, where polling every 0.1 s cost 2 more a page.
    assert calls <= 3 * PAGES + 30, f"{calls} script calls for {PAGES} pages"
