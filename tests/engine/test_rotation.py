"""Rotation through the proxies setting: turns, benching, retries through another proxy.

The proxies are real servers: tinyproxy (which the origin recognises by its Via
header), a closed port (a proxy that is down), and small HTTP/1.1 servers that
act as forward proxies answering by themselves (a proxy that bans every request
with a 403, or one that bans only the first), each counting what it was asked.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from crawler import Request, Response, Spider
from crawler.settings import SettingsError
from tests.crawl.helpers import run, settings
from tests.proxies import PASSWORD, run_tinyproxy
from tests.servers import Reply, Seen, serve_h11, serve_tcp

_ENV = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def spider_for(urls: list[str], **fields: Any) -> type[Spider]:
    class Pages(Spider):
        name = "pages"

        def start_requests(self) -> Iterator[Request]:
            for url in urls:
                yield Request(url, callback="parse", **fields)

        def parse(self, response: Response) -> Iterator[dict[str, Any]]:
            yield {"url": response.url}

    return Pages


def banning(seen: Seen) -> Reply:
    return Reply(403, [], b"banned")


async def _closed_port() -> int:
    async def hang_up(stream: trio.SocketStream) -> None:
        await stream.aclose()

    async with serve_tcp(hang_up) as port:
        pass
    return port


def via_tinyproxy(origin: Any) -> list[str]:
    return sorted(s.target for s in origin.requests if "tinyproxy" in s.headers.get("via", ""))


async def test_a_proxy_that_is_down_is_benched_and_its_requests_retried(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{await _closed_port()}"
    with run_tinyproxy(tmp_path) as good:
        async with serve_h11() as origin:
            urls = [f"{origin.url}/p{i}" for i in range(6)]
            s = settings(
                origin.url,
                obey_robots=False,
                retry_times=2,
                concurrency=1,
                proxies=(dead, good.url),
                proxy_bench_after=1,
                proxy_bench_seconds=600,
            )
            stats, items = await run(spider_for(urls), s)
    assert len(items) == 6, stats.to_dict()
    assert via_tinyproxy(origin) == sorted(f"/p{i}" for i in range(6))
    down = stats.proxies[f"{dead}"]
    assert (down["requests"], down["failures"], down["benched"]) == (1, 1, 1)
    assert stats.retries == 1  # the failed attempt, sent again through the other proxy
    shown = stats.to_dict()["proxies"]
    label = f"http://***@127.0.0.1:{good.port}"
    assert shown[label] == {"requests": 6, "failures": 0, "benched": 0}
    assert PASSWORD not in json.dumps(stats.to_dict())


async def test_a_ban_status_is_retried_through_another_proxy(tmp_path: Path) -> None:
    with run_tinyproxy(tmp_path) as good:
        async with serve_h11() as origin, serve_h11(banning) as banner:
            urls = [f"{origin.url}/p{i}" for i in range(4)]
            s = settings(
                origin.url,
                obey_robots=False,
                retry_times=1,
                concurrency=1,
                proxies=(banner.url, good.url),
                proxy_bench_after=1,
                proxy_bench_seconds=600,
            )
            stats, items = await run(spider_for(urls), s)
    assert len(items) == 4, stats.to_dict()
    # 403 is no retry_http_code: the ban alone made it a retry, through tinyproxy.
    assert [seen.target for seen in banner.requests] == [f"{origin.url}/p0"]
    assert via_tinyproxy(origin) == sorted(f"/p{i}" for i in range(4))
    assert stats.retries == 1
    assert stats.proxies[banner.url] == {"requests": 1, "failures": 1, "benched": 1}


async def test_ban_retries_stop_at_retry_times() -> None:
    async with serve_h11(banning) as banner:
        s = settings(
            "http://site.test",
            obey_robots=False,
            retry_times=2,
            proxies=(banner.url,),
            proxy_bench_seconds=0,
        )
        stats, items = await run(spider_for(["http://site.test/x"]), s)
    assert items == []
    assert len(banner.requests) == 3  # the first try and two retries
    assert stats.retries == 2 and stats.failed == 1
    assert stats.errors["http_403"] == 1


async def test_when_every_proxy_is_benched_requests_wait_for_the_first_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def ban_first(seen: Seen) -> Reply:
        return Reply(429 if len(seen_by_proxy) == 1 else 200, [], b"page")

    seen_by_proxy: list[Seen] = []

    def counting(seen: Seen) -> Reply:
        seen_by_proxy.append(seen)
        return ban_first(seen)

    caplog.set_level(logging.WARNING, logger="crawler.engine")
    async with serve_h11(counting) as flaky:
        s = settings(
            "http://site.test",
            obey_robots=False,
            retry_times=1,
            retry_http_codes=(),
            proxies=(flaky.url,),
            proxy_bench_after=1,
            proxy_bench_seconds=0.2,
        )
        stats, items = await run(spider_for(["http://site.test/x"]), s)
    assert items == [{"url": "http://site.test/x"}]
    assert len(seen_by_proxy) == 2
    assert stats.proxies[flaky.url] == {"requests": 2, "failures": 1, "benched": 1}
    assert f"proxy {flaky.url} benched for 0.2 s: HTTP 429" in caplog.text


async def test_every_proxy_benched_for_longer_than_pool_timeout_is_a_clear_error() -> None:
    async with serve_h11(banning) as banner:
        s = settings(
            "http://site.test",
            obey_robots=False,
            retry_times=1,
            pool_timeout=5,
            proxies=(banner.url,),
            proxy_bench_after=1,
            proxy_bench_seconds=600,
        )
        stats, items = await run(spider_for(["http://site.test/x"]), s)
    assert items == []
    assert len(banner.requests) == 1  # the retry found every proxy benched
    assert stats.errors["ProxyError"] == 1 and stats.failed == 1


async def test_least_recently_failed_prefers_proxies_that_did_not_fail(tmp_path: Path) -> None:
    with run_tinyproxy(tmp_path) as good:
        async with serve_h11() as origin, serve_h11(banning) as banner:
            urls = [f"{origin.url}/p{i}" for i in range(5)]
            s = settings(
                origin.url,
                obey_robots=False,
                retry_times=1,
                concurrency=1,
                proxies=(banner.url, good.url),
                proxy_rotation="least-recently-failed",
                proxy_bench_after=5,
            )
            stats, items = await run(spider_for(urls), s)
    assert len(items) == 5, stats.to_dict()
    # Tried once (first in the list, nothing failed yet), never again: round-robin
    # would have sent it every other request.
    assert len(banner.requests) == 1
    assert stats.proxies[banner.url] == {"requests": 1, "failures": 1, "benched": 0}


async def test_request_and_domain_proxies_win_over_the_rotation(tmp_path: Path) -> None:
    with run_tinyproxy(tmp_path) as good:
        async with serve_h11() as origin, serve_h11(banning) as banner:
            s = settings(
                origin.url,
                obey_robots=False,
                retry_times=0,
                proxies=(banner.url,),
                domains={"localhost": {"proxy": good.url}},
            )
            direct = spider_for([f"{origin.url}/direct"], proxy="")
            _, items = await run(direct, s)
            by_domain = spider_for([f"http://localhost:{origin.port}/domain"])
            _, more = await run(by_domain, s)
    assert len(items) == len(more) == 1
    assert banner.requests == []
    assert [(r.target, "via" in r.headers) for r in origin.requests] == [
        ("/direct", False),
        ("/domain", True),
    ]


async def test_bad_proxies_settings_are_refused_by_name() -> None:
    spider = spider_for([])
    with pytest.raises(SettingsError, match=r"'proxy' and 'proxies' are both set"):
        await run(spider, settings("", proxy="http://p:1", proxies=("http://q:1",)))
    with pytest.raises(SettingsError, match=r"proxies\[1\].*only http://") as caught:
        await run(spider, settings("", proxies=("http://p:1", "ftp://u:pw@q:1")))
    assert "pw" not in str(caught.value)
