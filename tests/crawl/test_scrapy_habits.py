"""Habits a Scrapy spider brings: CloseSpider from a callback, and cb_kwargs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from crawler import CloseSpider, Request, Response, Spider
from tests.crawl.test_engine import run, settings
from tests.servers import Reply, Seen, serve_h11

HTML = [("Content-Type", "text/html")]


def chain(hits: Counter[str], length: int) -> Any:
    """/p/0 links to /p/1, and so on: the crawl's order is fixed whatever the concurrency."""

    def respond(seen: Seen) -> Reply:
        hits[seen.target] += 1
        number = int(seen.target.rsplit("/", 1)[1])
        link = f'<a href="/p/{number + 1}">next</a>' if number + 1 < length else ""
        return Reply(200, HTML, f"<h1>{number}</h1>{link}".encode())

    return respond


# -- CloseSpider ------------------------------------------------------------------


async def test_close_spider_from_a_callback_stops_gracefully_with_its_reason() -> None:
    hits: Counter[str] = Counter()
    closed_with: list[str] = []
    async with serve_h11(chain(hits, 10)) as server:
        url = server.url

        class Stopper(Spider):
            name = "stopper"

            def start_requests(self) -> Iterator[Request]:
                yield Request(url + "/p/0")

            def parse(self, response: Response) -> Iterator[Any]:
                number = int(str(response.url).rsplit("/", 1)[1])
                yield {"page": number}
                if number == 3:
                    raise CloseSpider("found page 3")
                yield from response.follow_all()

            def closed(self, reason: str) -> None:
                closed_with.append(reason)

        stats, items = await run(Stopper, settings("", obey_robots=False))
    # The item yielded before the raise was kept; nothing was fetched after it.
    assert [item["page"] for item in items] == [0, 1, 2, 3]
    assert set(hits) == {f"/p/{n}" for n in range(4)}
    assert stats.finish_reason == "found page 3" and closed_with == ["found page 3"]
    assert stats.callback_errors == 0  # a stop, not a failure


async def test_close_spider_without_a_reason_is_cancelled() -> None:
    hits: Counter[str] = Counter()
    async with serve_h11(chain(hits, 3)) as server:
        url = server.url

        class Stopper(Spider):
            name = "stopper"

            def start_requests(self) -> Iterator[Request]:
                yield Request(url + "/p/0")

            async def parse(self, response: Response) -> None:
                raise CloseSpider

        stats, items = await run(Stopper, settings("", obey_robots=False))
    assert items == [] and stats.finish_reason == "cancelled" and hits == {"/p/0": 1}
