"""Priority across hosts: a high-priority request of one host goes before low-priority
ones of another, seen in the order two real loopback servers were asked."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from crawler import Request, Response, Spider
from crawler.frontier.sqlite import SqliteFrontier
from tests.crawl.helpers import run, settings
from tests.servers import Reply, Seen, serve_h11

HTML = [("Content-Type", "text/html")]


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.needs(_has_ipv6_loopback(), "an IPv6 loopback (::1)")
async def test_a_high_priority_request_of_one_host_goes_before_others_low_ones() -> None:
    order: list[str] = []

    def site(name: str) -> Callable[[Seen], Reply]:
        def respond(seen: Seen) -> Reply:
            order.append(name + seen.target)
            return Reply(200, HTML, b"<p>ok</p>")

        return respond

    async with serve_h11(site("v4")) as v4, serve_h11(site("v6"), host="::1") as v6:
        a, b = v4.url, f"http://[::1]:{v6.port}"

        class Ordered(Spider):
            name = "ordered"

            def start_requests(self) -> Iterator[Request]:
                yield Request(a + "/start", callback=self.fan_out)

            def fan_out(self, response: Response) -> Iterator[Request]:
                for i in range(3):
                    yield Request(f"{a}/low{i}")
                yield Request(a + "/mid", priority=3)
                yield Request(b + "/high", priority=5)
                yield Request(b + "/low")

            def parse(self, response: Response) -> None:
                return None

        # One request at a time, so the order the servers saw is the scheduler's.
        stats, _ = await run(Ordered, settings("", concurrency=1, obey_robots=False))
    assert order == [
        "v4/start",
        "v6/high",
        "v4/mid",
        "v6/low",  # ties: hosts in turn, from when each was last served
        "v4/low0",
        "v4/low1",
        "v4/low2",
    ]
    assert stats.pages == 7


def test_sqlite_frontier_gives_the_priority_of_a_hosts_head(tmp_path: Path) -> None:
    frontier = SqliteFrontier(tmp_path / "job.db", cache_size=2)
    try:
        assert frontier.head_priority("h.test") == 0
        frontier.push(Request("http://h.test/a", priority=1), "h.test")
        frontier.push(Request("http://h.test/b", priority=4), "h.test")
        frontier.push(Request("http://h.test/c", priority=3), "h.test")  # past the cache: disk
        assert frontier.head_priority("h.test") == 4
        popped = [frontier.pop("h.test"), frontier.pop("h.test")]
        assert [r.url[-1] for r in popped if r] == ["b", "a"]
        # The cache is empty; the bound from disk is at least the priority waiting there.
        assert frontier.head_priority("h.test") >= 3
        last = frontier.pop("h.test")
        assert last is not None and last.url.endswith("/c")
        assert frontier.head_priority("h.test") == 0
    finally:
        frontier.close()
