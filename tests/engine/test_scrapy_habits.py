"""Habits a Scrapy spider brings: CloseSpider from a callback, and cb_kwargs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from crawler import CloseSpider, Request, Response, Spider
from tests.crawl.helpers import run, settings
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


# -- cb_kwargs --------------------------------------------------------------------


def test_cb_kwargs_are_copied_carried_by_replace_and_stored() -> None:
    from crawler.frontier.sqlite import decode_request, encode_request

    given = {"n": 1, "trail": [0]}
    request = Request("http://a.test/", cb_kwargs=given)
    given["n"] = 2  # the request keeps its own copy
    assert request.cb_kwargs == {"n": 1, "trail": [0]}
    assert request.replace(url="http://a.test/b").cb_kwargs == {"n": 1, "trail": [0]}
    assert Request.from_dict(request.to_dict()).cb_kwargs == {"n": 1, "trail": [0]}
    assert decode_request(None, None, encode_request(request)).cb_kwargs == {"n": 1, "trail": [0]}
    assert Request("http://a.test/").cb_kwargs == {}


def test_records_without_cb_kwargs_are_unchanged_and_still_decode() -> None:
    """No new store format: a request without cb_kwargs is stored as before, so the
    records of a job started by an older version decode as they are."""
    from crawler.frontier.sqlite import decode_request, encode_request

    plain = encode_request(Request("http://a.test/", meta={"k": 1}))
    old_record = '["http://a.test/","GET",null,"",0,{"k":1},false,null,0,0,0,0,[]]'
    assert plain == old_record
    decoded = decode_request("parse", None, old_record)
    assert (decoded.cb_kwargs, decoded.meta, decoded.callback) == ({}, {"k": 1}, "parse")


def test_cb_kwargs_that_are_not_json_are_refused_where_the_request_is_stored() -> None:
    import pytest

    from crawler.frontier.sqlite import encode_request

    with pytest.raises(TypeError, match="cb_kwargs must be JSON data"):
        encode_request(Request("http://a.test/", cb_kwargs={"when": object()}))


async def test_cb_kwargs_reach_the_callback_through_follow_redirects_and_retries() -> None:
    hits: Counter[str] = Counter()

    def respond(seen: Seen) -> Reply:
        hits[seen.target] += 1
        if seen.target == "/":
            links = '<a href="/moved">m</a><a href="/flaky">f</a><a href="/gone">g</a>'
            return Reply(200, HTML, links.encode())
        if seen.target == "/moved":
            return Reply(302, [("Location", "/new")], b"")
        if seen.target == "/flaky" and hits[seen.target] == 1:
            return Reply(500, [], b"busy")
        if seen.target == "/gone":
            return Reply(404, [], b"")
        return Reply(200, HTML, b"<h1>leaf</h1>")

    failures: list[str] = []
    async with serve_h11(respond) as server:
        url = server.url

        class Kwargs(Spider):
            name = "kwargs"

            def start_requests(self) -> Iterator[Request]:
                yield Request(url + "/", callback=self.home, cb_kwargs={"level": "home"})

            def home(self, response: Response, level: str) -> Iterator[Any]:
                yield {"path": "/", "level": level}
                for link in ("/moved", "/flaky"):
                    yield response.follow(
                        link, self.leaf, cb_kwargs={"came_from": level, "link": link}
                    )
                yield response.follow(
                    "/gone", self.leaf, errback=self.failed, cb_kwargs={"link": "/gone"}
                )

            def leaf(self, response: Response, came_from: str, link: str) -> Any:
                return {"path": response.url.path, "came_from": came_from, "link": link}

            def failed(self, request: Request, error: Exception) -> None:
                # Scrapy's rule: cb_kwargs are the callback's, the errback gets none.
                failures.append(request.url)

        stats, items = await run(Kwargs, settings("", obey_robots=False, retry_times=1))
    assert sorted(items, key=lambda item: item["path"]) == [
        {"path": "/", "level": "home"},
        {"path": "/flaky", "came_from": "home", "link": "/flaky"},  # after a retry
        {"path": "/new", "came_from": "home", "link": "/moved"},  # after a redirect
    ]
    assert hits["/flaky"] == 2 and hits["/new"] == 1
    assert failures == [url + "/gone"] and stats.callback_errors == 0
