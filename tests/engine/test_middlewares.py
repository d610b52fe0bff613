"""Crawl middlewares end to end: a real loopback site, the middlewares named in the settings."""

from __future__ import annotations

import logging
import socket
from collections import Counter
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from crawler import ComponentError, DropRequest, HTTPError, Request, Response, Spider
from crawler.engine._crawler import Crawler
from crawler.engine._middlewares import MAX_MIDDLEWARE_REQUESTS
from tests.crawl.helpers import run_crawler, settings
from tests.servers import serve_asgi

HERE = __name__


class Site:
    """``/`` links to /a, /b and /c; /forbidden is 403 unless asked with ``X-Again``; every
    page says which User-Agent asked for it."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"]
        query = scope["query_string"].decode()
        self.hits[path + ("?" + query if query else "")] += 1
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        status = 200
        if path == "/":
            body = "".join(f'<a href="{p}">{p}</a>' for p in ("/a", "/b", "/c"))
        elif path == "/forbidden" and "x-again" not in headers:
            status, body = 403, "no"
        else:
            body = f"<title>{path}</title>"
        body += f"<p id=ua>{headers.get('user-agent', '')}</p>"
        data = body.encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"text/html"),
                    (b"content-length", b"%d" % len(data)),
                ],
            }
        )
        await send({"type": "http.response.body", "body": data})


class Pages(Spider):
    """Crawls what ``start`` names (paths on the site, or whole URLs), following links."""

    name = "pages"
    options: ClassVar[dict[str, Any]] = {"base": "", "start": ["/"]}

    def start_requests(self) -> Iterator[Request]:
        for path in self.settings.options.get("start") or ["/"]:
            url = path if "://" in path else self.settings["base"] + path
            yield Request(url, callback=self.parse)

    def parse(self, response: Response) -> Iterator[Any]:
        yield {
            "url": str(response.url),
            "status": response.status_code,
            "ua": response.css("#ua::text").get(""),
            "body": response.text[:60],
        }
        yield from response.follow_all(callback=self.parse)


# The calls every middleware below saw, in order: ("A.request", path)...
CALLS: list[tuple[str, str]] = []


@pytest.fixture(autouse=True)
def _fresh_calls() -> None:
    CALLS.clear()


def _path(url: object) -> str:
    text = str(url)
    return text[text.index("/", 8) :]


class First:
    """Sync methods; changes the User-Agent in place."""

    opened = closed = 0

    def open_spider(self, spider: Spider) -> None:
        First.opened += 1

    def close_spider(self, spider: Spider) -> None:
        First.closed += 1

    def process_request(self, request: Request, spider: Spider) -> None:
        CALLS.append(("First.request", _path(request.url)))
        request.headers = {**(request.headers or {}), "User-Agent": "first/1.0"}

    def process_response(self, request: Request, response: Response, spider: Spider) -> Response:
        CALLS.append(("First.response", _path(request.url)))
        return response


class Second:
    """Async methods, and only two of them."""

    async def process_request(self, request: Request, spider: Spider) -> None:
        CALLS.append(("Second.request", _path(request.url)))

    async def process_response(
        self, request: Request, response: Response, spider: Spider
    ) -> Response:
        CALLS.append(("Second.response", _path(request.url)))
        return response


def _settings(base: str, *middlewares: str, **overrides: Any) -> Any:
    options = {"base": base, **overrides.pop("options", {})}
    return settings(
        base,
        middlewares=tuple(f"{HERE}:{m}" for m in middlewares),
        concurrency=1,
        options=options,
        **overrides,
    )


async def test_request_in_list_order_responses_in_reverse_sync_and_async() -> None:
    site = Site()
    First.opened = First.closed = 0
    async with serve_asgi(site) as base:
        stats, items, _ = await run_crawler(Pages, _settings(base, "First", "Second"))
    assert sorted(item["url"].removeprefix(base) for item in items) == ["/", "/a", "/b", "/c"]
    assert {item["ua"] for item in items} == {"first/1.0"}
    for path in ("/", "/a", "/b", "/c"):
        seen = [name for name, p in CALLS if p == path]
        assert seen == ["First.request", "Second.request", "Second.response", "First.response"]
    assert (First.opened, First.closed) == (1, 1)
    assert stats.pages == 4


class Cache:
    """Serves /b without sending it."""

    def process_request(self, request: Request, spider: Spider) -> Response | None:
        if request.url.endswith("/b"):
            return Response(200, html="<title>served</title>")
        return None


async def test_a_response_from_process_request_is_used_and_nothing_is_sent() -> None:
    site = Site()
    async with serve_asgi(site) as base:
        stats, items, _ = await run_crawler(Pages, _settings(base, "First", "Cache", "Second"))
    by_path = {item["url"].removeprefix(base): item for item in items}
    assert set(by_path) == {"/", "/a", "/b", "/c"}
    assert by_path["/b"]["body"].startswith("<title>served</title>")
    assert site.hits["/b"] == 0
    # The later process_request is skipped; every process_response still runs.
    assert [name for name, p in CALLS if p == "/b"] == [
        "First.request",
        "Second.response",
        "First.response",
    ]
    assert stats.status[200] == 4 and stats.requests == sum(site.hits.values())


class Rewrite:
    """Sends /c?v=2 instead of /c."""

    def process_request(self, request: Request, spider: Spider) -> Request | None:
        if request.url.endswith("/c"):
            return request.replace(url=request.url + "?v=2")
        return None


async def test_a_request_from_process_request_is_sent_instead() -> None:
    site = Site()
    async with serve_asgi(site) as base:
        _, items, _ = await run_crawler(Pages, _settings(base, "Rewrite"))
    paths = sorted(item["url"].removeprefix(base) for item in items)
    assert paths == ["/", "/a", "/b", "/c?v=2"]
    assert site.hits["/c"] == 0 and site.hits["/c?v=2"] == 1


class AskAgain:
    """A 403 is asked for again with another header (a new request, not a duplicate)."""

    async def process_response(
        self, request: Request, response: Response, spider: Spider
    ) -> Response | Request:
        if response.status_code == 403:
            return request.replace(headers={"X-Again": "1"})
        return response


async def test_a_request_from_process_response_is_scheduled_and_its_answer_used() -> None:
    site = Site()
    async with serve_asgi(site) as base:
        stats, items, _ = await run_crawler(
            Pages, _settings(base, "AskAgain", options={"start": ["/forbidden"]})
        )
    assert [(item["url"].removeprefix(base), item["status"]) for item in items] == [
        ("/forbidden", 200)
    ]
    assert site.hits["/forbidden"] == 2
    assert stats.failed == 0 and stats.retries == 0 and not stats.errors


class Always:
    """Always answers with a new request: the loop is cut."""

    def process_response(self, request: Request, response: Response, spider: Spider) -> Request:
        return request.replace()


async def test_middleware_requests_in_a_loop_are_bounded_and_dropped() -> None:
    site = Site()
    async with serve_asgi(site) as base:
        stats, items, _ = await run_crawler(
            Pages, _settings(base, "Always", options={"start": ["/a"]})
        )
    assert items == []
    assert site.hits["/a"] == MAX_MIDDLEWARE_REQUESTS + 1
    assert stats.dropped["middleware_loop"] == 1


def _refused_url() -> str:
    """A loopback URL nothing listens on: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/down"


class Fallback:
    """A refused connection is answered with a page of its own; other errors go on."""

    errors: ClassVar[list[str]] = []

    def process_exception(
        self, request: Request, error: HTTPError, spider: Spider
    ) -> Response | None:
        Fallback.errors.append(type(error).__name__)
        if request.meta.get("fallback", True):
            return Response(200, html="<title>fallback</title>")
        return None


async def test_process_exception_on_a_refused_connection() -> None:
    Fallback.errors = []
    site = Site()
    async with serve_asgi(site) as base:
        stats, items, _ = await run_crawler(
            Pages,
            # robots.txt keeps a request from a site it cannot reach before the chain.
            _settings(
                base, "First", "Fallback", obey_robots=False, options={"start": [_refused_url()]}
            ),
        )
    assert [item["body"][:21] for item in items] == ["<title>fallback</title>"[:21]]
    assert Fallback.errors == ["ConnectError"]
    assert stats.failed == 0 and stats.retries == 0 and not stats.errors
    # Its process_response runs on the answer, as on a fetched one.
    assert [name for name, _ in CALLS] == ["First.request", "First.response"]


async def test_process_exception_returning_none_leaves_the_error_to_retries() -> None:
    Fallback.errors = []

    class Refused(Pages):
        def start_requests(self) -> Iterator[Request]:
            yield Request(_refused_url(), meta={"fallback": False})

    site = Site()
    async with serve_asgi(site) as base:
        stats, items, _ = await run_crawler(
            Refused, _settings(base, "Fallback", retry_times=2, obey_robots=False)
        )
    assert items == []
    assert Fallback.errors == ["ConnectError"] * 3
    assert stats.retries == 2 and stats.failed == 1


class NoB:
    async def process_request(self, request: Request, spider: Spider) -> None:
        if request.url.endswith("/b"):
            raise DropRequest("no_b")


class Drops:
    """An extension that keeps what request_dropped was sent."""

    seen: ClassVar[list[tuple[str, str]]] = []

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Drops:
        crawler.signals.connect("request_dropped", cls.dropped)
        return cls()

    @classmethod
    async def dropped(cls, request: Request, reason: str) -> None:
        cls.seen.append((_path(request.url), reason))


async def test_drop_request_is_counted_by_reason_signalled_and_nothing_is_sent() -> None:
    Drops.seen = []
    site = Site()
    async with serve_asgi(site) as base:
        stats, items, _ = await run_crawler(
            Pages, _settings(base, "NoB", extensions=(f"{HERE}:Drops",))
        )
    assert sorted(item["url"].removeprefix(base) for item in items) == ["/", "/a", "/c"]
    assert site.hits["/b"] == 0
    assert stats.dropped["no_b"] == 1
    assert Drops.seen == [("/b", "no_b")]


class Robots(Site):
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/robots.txt":
            data = b"User-agent: *\nDisallow: /b\n"
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"%d" % len(data))],
                }
            )
            await send({"type": "http.response.body", "body": data})
            return
        await super().__call__(scope, receive, send)


async def test_robots_txt_decides_before_the_middlewares() -> None:
    site = Robots()
    async with serve_asgi(site) as base:
        stats, items, _ = await run_crawler(Pages, _settings(base, "First"))
    assert sorted(item["url"].removeprefix(base) for item in items) == ["/", "/a", "/c"]
    assert stats.dropped["robots"] == 1
    assert "/b" not in {path for _, path in CALLS}


class Broken:
    """Fails on /a in process_request, and returns nonsense for /c's response."""

    def process_request(self, request: Request, spider: Spider) -> None:
        if request.url.endswith("/a"):
            raise ValueError("a bug in the middleware")

    def process_response(self, request: Request, response: Response, spider: Spider) -> Any:
        if request.url.endswith("/c"):
            return "not a response"
        return response


async def test_a_broken_middleware_names_itself_and_the_url_and_loses_nothing_else(
    caplog: pytest.LogCaptureFixture,
) -> None:
    site = Site()
    caplog.set_level(logging.ERROR, "crawler.engine")
    async with serve_asgi(site) as base:
        stats, items, _ = await run_crawler(Pages, _settings(base, "Broken"))
    assert sorted(item["url"].removeprefix(base) for item in items) == ["/", "/b"]
    assert stats.errors["middleware"] == 2
    messages = [r.getMessage() for r in caplog.records]
    label = f"{HERE}:Broken"
    assert any(
        f"{label}.process_request failed on GET {base}/a" in m and "a bug in the middleware" in m
        for m in messages
    ), messages
    assert any(
        f"{label}.process_response failed on GET {base}/c" in m
        and "returned str 'not a response'" in m
        for m in messages
    ), messages


class Nothing:
    pass


class BadOpen:
    def process_request(self, request: Request, spider: Spider) -> None:
        pass

    def open_spider(self, spider: Spider) -> None:
        raise RuntimeError("cannot open")


class Built:
    """Built by from_crawler, which gets the crawler."""

    crawlers: ClassVar[list[Crawler]] = []

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Built:
        cls.crawlers.append(crawler)
        return cls()

    def process_request(self, request: Request, spider: Spider) -> None:
        pass


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "nowhere_module:X",
            "middleware 'nowhere_module:X': cannot import module 'nowhere_module'",
        ),
        (f"{HERE}:Missing", f"middleware '{HERE}:Missing': module '{HERE}' has no attribute"),
        (f"{HERE}:Nothing", "has none of process_request, process_response, process_exception"),
        (f"{HERE}:BadOpen", f"middleware '{HERE}:BadOpen': open_spider failed: RuntimeError"),
    ],
)
async def test_middleware_loading_errors_are_clear(name: str, message: str) -> None:
    site = Site()
    async with serve_asgi(site) as base:
        with pytest.raises(ComponentError) as caught:
            await run_crawler(Pages, settings(base, middlewares=(name,)))
    assert message in str(caught.value)
    assert site.hits["/"] == 0


async def test_from_crawler_builds_a_middleware_and_no_middleware_keeps_the_plain_worker() -> None:
    Built.crawlers = []
    site = Site()
    async with serve_asgi(site) as base:
        _, items, crawler = await run_crawler(Pages, _settings(base, "Built"))
        assert Built.crawlers == [crawler] and len(items) == 4
        _, _, plain = await run_crawler(Pages, _settings(base))
    assert crawler.middlewares and not plain.middlewares
