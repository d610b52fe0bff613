"""download_timeout: a crawl request that a server keeps alive by trickling bytes
fails like any timeout (retried, then counted as failed) instead of hanging."""

from __future__ import annotations

from collections.abc import Iterator

from crawler import Request, Response, Settings, Spider
from crawler.http import Timeout
from tests.crawl.helpers import run, settings
from tests.servers import HUGE_HEAD, serve_tcp, trickling_server


async def test_trickling_server_fails_the_request_after_retries() -> None:
    errors: list[str] = []
    async with serve_tcp(trickling_server(HUGE_HEAD)) as port:
        url = f"http://127.0.0.1:{port}/slow"

        class Trickle(Spider):
            name = "trickle"

            def start_requests(self) -> Iterator[Request]:
                yield Request(url, callback=self.parse, errback=self.failed)

            def parse(self, response: Response) -> None:
                raise AssertionError("no response expected")

            def failed(self, request: Request, error: BaseException) -> None:
                errors.append(type(error).__name__)

        s = settings("", obey_robots=False, retry_times=1, read_timeout=1.0, download_timeout=0.5)
        stats, items = await run(Trickle, s)
    assert items == []
    assert stats.retries == 1 and stats.failed == 1
    assert stats.errors == {"TotalTimeout": 1}
    assert errors == ["TotalTimeout"]


def test_download_timeout_is_the_total_timeout() -> None:
    assert Settings().download_timeout == 180.0
    assert Settings(download_timeout=2.5).timeout() == Timeout(
        connect=10.0, read=30.0, write=30.0, pool=60.0, total=2.5
    )
    assert Settings(download_timeout=0).timeout().total is None
