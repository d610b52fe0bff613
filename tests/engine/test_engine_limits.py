"""Limits the engine puts on what it reads and fetches: robots.txt size, URL length,
max_pages with retries pending. Each is checked against a real loopback server."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from crawler import Request, Response, Spider
from crawler.engine._robots import ROBOTS_MAX_SIZE
from tests.crawl.helpers import run, settings
from tests.servers import H11Server, Reply, Seen, serve_h11

HTML = [("Content-Type", "text/html")]


def _links_page(*paths: str) -> bytes:
    return "".join(f'<a href="{path}">{path}</a>' for path in paths).encode()


class FollowAll(Spider):
    """Starts at the ``base`` option and follows every link."""

    name = "follow_all"

    def start_requests(self) -> Iterator[Request]:
        yield Request(self.settings["base"] + "/")

    def parse(self, response: Response) -> Iterator[Request]:
        yield from response.follow_all()


def _big_robots() -> bytes:
    """A robots.txt of 1 MiB: a rule at the top, a rule cut in two by the 500 KiB limit
    (its first half, "Disallow: /la", would forbid /late), and a rule past the limit."""
    head = b"User-agent: *\nDisallow: /private\n"
    cut = b"Disallow: /la"
    padding = ROBOTS_MAX_SIZE - len(head) - len(cut)
    lines = b"".join(b"# " + b"x" * 97 + b"\n" for _ in range(padding // 100))
    lines += b"#" + b"x" * (padding - len(lines) - 2) + b"\n"
    body = head + lines + cut + b"te\n"
    assert body.index(cut) + len(cut) == ROBOTS_MAX_SIZE
    tail = b"Disallow: /beyond\n" + b"# filler\n" * 60_000
    return body + tail


async def test_a_robots_txt_larger_than_max_response_size_is_read_up_to_its_own_limit() -> None:
    robots = _big_robots()
    assert len(robots) > 2 * ROBOTS_MAX_SIZE

    def site(seen: Seen) -> Reply:
        if seen.target == "/robots.txt":
            return Reply(200, [("Content-Type", "text/plain")], robots)
        if seen.target == "/":
            return Reply(200, HTML, _links_page("/private/x", "/late", "/beyond", "/public"))
        return Reply(200, HTML, b"<p>leaf</p>")

    async with serve_h11(site) as server:
        stats, _ = await run(FollowAll, settings(server.url, max_response_size=64 * 1024))
    fetched = Counter(seen.target for seen in server.requests)
    # The rule before the limit applies; the rule half cut by it and the one after do not.
    assert fetched == Counter({"/robots.txt": 1, "/": 1, "/late": 1, "/beyond": 1, "/public": 1})
    assert stats.dropped["robots"] == 1
    assert stats.failed == 0 and not stats.errors


async def test_urls_longer_than_max_url_length_are_dropped_before_they_are_queued(
    caplog: pytest.LogCaptureFixture,
) -> None:
    huge = "/huge?q=" + "a" * 100_000
    medium = "/" + "m" * 3000  # over the default, but a server reads it
    long_path = "/" + "b" * 1990  # with the origin, within the default of 2083
    pages = {
        "/": _links_page(huge, medium, long_path, "/second"),
        "/second": _links_page(huge, "/"),  # the same huge URL again: dropped again
    }

    def site(seen: Seen) -> Reply:
        return Reply(200, HTML, pages.get(seen.target, b"<p>leaf</p>"))

    def fetched(server: H11Server) -> Counter[str]:
        return Counter(seen.target for seen in server.requests)

    caplog.set_level(logging.DEBUG, logger="crawler.scheduler")
    async with serve_h11(site) as server:
        stats, _ = await run(FollowAll, settings(server.url, obey_robots=False))
        assert fetched(server) == Counter({"/": 1, long_path: 1, "/second": 1})
        # Never seen, so never a duplicate: the length is checked before anything else.
        assert stats.dropped["url_too_long"] == 3
        assert f"dropped {server.url}/huge?q=aaa" in caplog.text
        assert f"{len(server.url + huge)} characters, over max_url_length 2083" in caplog.text

        pages["/"] = _links_page(medium, long_path)
        server.requests.clear()
        stats, _ = await run(FollowAll, settings(server.url, obey_robots=False, max_url_length=0))
        assert fetched(server) == Counter({"/": 1, medium: 1, long_path: 1})
        assert "url_too_long" not in stats.dropped

        server.requests.clear()
        stats, _ = await run(
            FollowAll, settings(server.url, obey_robots=False, max_url_length=1000)
        )
        assert fetched(server) == Counter({"/": 1})
        assert stats.dropped["url_too_long"] == 2


class TwoPages(Spider):
    """Two start pages, nothing followed."""

    name = "two_pages"

    def start_requests(self) -> Iterator[Request]:
        yield Request(self.settings["base"] + "/a")
        yield Request(self.settings["base"] + "/b")

    def parse(self, response: Response) -> Iterator[Any]:
        yield {"path": response.url.path}
        yield from response.follow_all()


async def test_a_retry_pending_when_max_pages_is_reached_still_goes_out() -> None:
    """/a fails once and waits for its retry while /b, the last page max_pages allows,
    goes out: the retry belongs to a page within the limit and is sent."""
    hits: Counter[str] = Counter()

    def site(seen: Seen) -> Reply:
        hits[seen.target] += 1
        if seen.target == "/a" and hits["/a"] == 1:
            return Reply(503, [], b"busy")
        return Reply(200, HTML, b"<p>ok</p>")

    async with serve_h11(site) as server:
        stats, items = await run(
            TwoPages, settings(server.url, obey_robots=False, concurrency=1, max_pages=2)
        )
    assert hits == Counter({"/a": 2, "/b": 1})
    assert sorted(item["path"] for item in items) == ["/a", "/b"]
    assert (stats.pages, stats.retries, stats.failed, stats.queued) == (2, 1, 0, 0)
    assert stats.finish_reason == "max_pages"


async def test_after_max_pages_only_retries_go_out_and_each_retry_runs_out() -> None:
    """A retry sent after the limit that fails again is retried again (its budget is
    its own), and gives up as failed; new pages found meanwhile stay queued."""
    hits: Counter[str] = Counter()

    def site(seen: Seen) -> Reply:
        hits[seen.target] += 1
        if seen.target == "/a":
            return Reply(503, [], b"busy")
        return Reply(200, HTML, _links_page("/c", "/d"))

    async with serve_h11(site) as server:
        stats, _ = await run(
            TwoPages,
            settings(server.url, obey_robots=False, concurrency=1, max_pages=2, retry_times=2),
        )
    assert hits == Counter({"/a": 3, "/b": 1})
    assert (stats.pages, stats.retries, stats.failed, stats.queued) == (1, 2, 1, 2)
    assert stats.errors == {"http_503": 1}
    assert stats.finish_reason == "max_pages"
