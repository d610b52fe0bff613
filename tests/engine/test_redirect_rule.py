"""The client and the crawl follow redirects by one rule, checked side by side.

The same site answers the same redirect to a request sent through ``Client``
(which follows it itself) and to one crawled by the engine (which schedules
the target as a new request); the site records what reached the target, and
both paths must have sent the same thing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import trio

from crawler import Client, Request, Response, Spider
from crawler.engine import Engine
from tests.crawl.helpers import settings
from tests.servers import serve_asgi

Arrival = tuple[str, bytes, dict[str, str]]  # method, body, the headers that matter
WATCHED = ("authorization", "proxy-authorization", "content-type", "x-keep")


class RedirectSite:
    """``/r/STATUS?to=URL`` redirects; ``/target`` records what arrived."""

    def __init__(self) -> None:
        self.arrivals: list[Arrival] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path: str = scope["path"]
        if path.startswith("/r/"):
            location = scope["query_string"].decode().removeprefix("to=")
            await send(
                {
                    "type": "http.response.start",
                    "status": int(path[3:]),
                    "headers": [(b"location", location.encode())],
                }
            )
        else:
            headers = {k.decode(): v.decode() for k, v in scope["headers"]}
            watched = {k: v for k, v in headers.items() if k in WATCHED}
            self.arrivals.append((scope["method"], body, watched))
            await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"<html></html>"})


class OneRequest(Spider):
    name = "one-request"
    options = {"start": "", "method": "GET"}

    def start_requests(self) -> Iterator[Request]:
        yield Request(
            self.settings["start"],
            method=self.settings["method"],
            body=b'{"k":1}' if self.settings["method"] != "GET" else None,
            headers={
                "Content-Type": "application/json",
                "X-Keep": "1",
                "Authorization": "Bearer secret",
                "Proxy-Authorization": "Basic c2VjcmV0",
            },
        )

    def parse(self, response: Response) -> None:
        return None


async def _through_client(start: str, method: str) -> None:
    async with Client() as client:
        await client.request(
            method,
            start,
            content=b'{"k":1}' if method != "GET" else None,
            headers={
                "Content-Type": "application/json",
                "X-Keep": "1",
                "Authorization": "Bearer secret",
                "Proxy-Authorization": "Basic c2VjcmV0",
            },
            follow_redirects=True,
        )


async def _through_crawl(start: str, method: str, **overrides: Any) -> Any:
    s = settings(start, obey_robots=False, options={"start": start, "method": method}, **overrides)
    async with Engine(s) as engine:
        return await engine.crawl(OneRequest, s)


CASES = [
    (301, "POST"),
    (301, "PUT"),
    (302, "POST"),
    (302, "PUT"),
    (303, "PUT"),
    (303, "GET"),
    (307, "POST"),
    (308, "PUT"),
]


@pytest.mark.parametrize(("status", "method"), CASES)
@pytest.mark.parametrize("cross_origin", [False, True], ids=["same-origin", "cross-origin"])
async def test_client_and_crawl_send_the_same_request_after_a_redirect(
    status: int, method: str, cross_origin: bool
) -> None:
    site = RedirectSite()
    with trio.fail_after(30):
        async with serve_asgi(site) as first, serve_asgi(site) as second:
            target = (second if cross_origin else first) + "/target"
            start = f"{first}/r/{status}?to={target}"
            await _through_client(start, method)
            stats = await _through_crawl(start, method)
    assert stats.redirects == 1 and stats.failed == 0
    by_client, by_crawl = site.arrivals
    assert by_client == by_crawl
    sent_method, body, headers = by_crawl
    if (status == 303 and method != "GET") or (status in (301, 302) and method == "POST"):
        assert (sent_method, body) == ("GET", b"")
        assert "content-type" not in headers
    else:
        assert sent_method == method  # 302 after a PUT stays a PUT, as browsers do
        assert body == (b'{"k":1}' if method != "GET" else b"")
    assert headers["x-keep"] == "1"
    credentials = {"authorization", "proxy-authorization"} & headers.keys()
    assert credentials == (set() if cross_origin else {"authorization", "proxy-authorization"})


async def test_the_crawl_takes_its_redirect_limit_from_the_settings() -> None:
    site = RedirectSite()
    with trio.fail_after(30):
        async with serve_asgi(site) as base:
            hop2 = f"{base}/r/302?to={base}/target"
            start = f"{base}/r/302?to={hop2}"
            limited = await _through_crawl(start, "GET", max_redirects=1)
            allowed = await _through_crawl(start, "GET", max_redirects=2)
    assert limited.failed == 1 and limited.redirects == 1
    assert allowed.failed == 0 and allowed.redirects == 2
    assert len(site.arrivals) == 1  # only the crawl allowed two hops reached the target
