"""A robots.txt that fails: retries of the pages waiting on it must reach the server.

While an origin's failed robots.txt is cached, a page retried against it would
only meet the cached failure: the server counts the requests it really saw, and
the crawl's stats and "giving up ... after N retries" line must agree with it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trio

from crawler import Request, Response, Settings, Spider
from crawler.engine._engine import Engine
from crawler.engine._stats import Stats
from tests.servers import H11Server, Reply, Seen, serve_h11


def _robots_down(seen: Seen) -> Reply:
    if seen.target == "/robots.txt":
        return Reply(500, [], b"down")
    return Reply(200, [("Content-Type", "text/html")], b"<html></html>")


class _OnePage(Spider):
    name = "one_page"

    def start_requests(self) -> Iterator[Request]:
        yield Request(self.settings["base"] + "/page", callback=self.parse)

    def parse(self, response: Response) -> None:
        raise AssertionError("the page may not be fetched while robots.txt is unknown")


async def _crawl(server: H11Server, robots_error_retry: float) -> Stats:
    s = Settings(
        retry_times=2,
        retry_backoff=0.01,
        retry_backoff_max=0.05,
        download_delay_jitter=0.0,
        options={"base": server.url},
    )
    async with Engine(s) as engine:
        crawler = engine.crawler(_OnePage, s)
        assert crawler.robots is not None
        crawler.robots.error_retry = robots_error_retry
        with trio.fail_after(30):
            stats: Stats = await crawler.run()
    return stats


def _giving_up(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "giving up" in r.getMessage()]


async def test_no_retry_that_would_only_meet_the_cached_robots_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The failure stands for 300 s, far beyond the longest wait between retries.
    async with serve_h11(_robots_down) as server:
        stats = await _crawl(server, 300.0)
    assert [seen.target for seen in server.requests] == ["/robots.txt"]
    assert stats.requests == 1
    assert stats.retries == 0
    assert stats.failed == 1 and stats.errors == {"RobotsUnavailable": 1}
    [line] = _giving_up(caplog)
    assert f"{server.url}/page after 0 retries" in line
    assert f"{server.url}/robots.txt could not be fetched (HTTP 500)" in line


async def test_retries_wait_for_the_robots_refetch_and_reach_the_server(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The failure stands for less than the longest wait: each retry fetches robots.txt again.
    async with serve_h11(_robots_down) as server:
        stats = await _crawl(server, 0.02)
    assert [seen.target for seen in server.requests] == ["/robots.txt"] * 3
    assert stats.requests == 3
    assert stats.retries == 2
    assert stats.failed == 1 and stats.errors == {"RobotsUnavailable": 1}
    [line] = _giving_up(caplog)
    assert f"{server.url}/page after 2 retries" in line
