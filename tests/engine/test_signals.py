"""Signals and extensions end to end: handlers connected by extensions and spiders, a real site."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
import trio

from crawler import ComponentError, DropItem, Request, Response, Spider
from crawler.engine._engine import Crawler, Engine
from tests.crawl.helpers import Collector, settings
from tests.servers import serve_asgi

HERE = __name__


async def site(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``/`` links to /a, /b, /c and /a again; every other page is a leaf."""
    path = scope["path"]
    body = (
        "".join(f'<a href="{p}">{p}</a>' for p in ("/a", "/b", "/c", "/a"))
        if path == "/"
        else f"<title>{path}</title>"
    )
    data = body.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/html"), (b"content-length", b"%d" % len(data))],
        }
    )
    await send({"type": "http.response.body", "body": data})


class Pages(Spider):
    name = "pages"

    def start_requests(self) -> Iterator[Request]:
        base = self.settings["base"]
        yield Request(base + "/", callback=self.parse)
        yield Request(base + "/a", callback=self.parse)

    def parse(self, response: Response) -> Iterator[Any]:
        yield {"path": response.url.path}
        yield from response.follow_all(callback=self.parse)
        if response.url.path == "/":
            # Dropped by the scheduler as a duplicate, like the links to /a.
            yield Request(self.settings["base"] + "/a", callback=self.parse)


class Picky:
    """Drops /b's item, breaks on /c's."""

    def process_item(self, item: dict[str, Any], spider: Spider) -> dict[str, Any]:
        if item["path"] == "/b":
            raise DropItem("no b")
        if item["path"] == "/c":
            raise ValueError("c is broken")
        return item


async def _run(spider: type[Spider], s: Any) -> tuple[Crawler, list[dict[str, Any]]]:
    collector = Collector()
    async with Engine(s) as engine:
        crawler = engine.crawler(spider, s, pipelines=[Picky(), collector])
        with trio.fail_after(30):
            await crawler.run()
    return crawler, collector.items


class Recorder:
    """An extension that records every signal, with sync and async handlers."""

    seen: ClassVar[list[tuple[str, dict[str, Any]]]] = []

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Recorder:
        ext = cls()
        signals = crawler.signals
        signals.connect("spider_opened", ext.opened)
        signals.connect("spider_closed", ext.closed)
        signals.connect("request_scheduled", ext.any_of("request_scheduled"))
        signals.connect("request_dropped", ext.any_of("request_dropped"))
        signals.connect("response_received", ext.received)
        signals.connect("item_scraped", ext.any_of("item_scraped"))
        signals.connect("item_dropped", ext.any_of("item_dropped"))
        signals.connect("item_error", ext.any_of("item_error"))
        return ext

    def opened(self, spider: Spider) -> None:
        self.seen.append(("spider_opened", {"spider": spider}))

    async def closed(self, reason: str) -> None:
        await trio.lowlevel.checkpoint()
        self.seen.append(("spider_closed", {"reason": reason}))

    async def received(self, response: Response, request: Request) -> None:
        self.seen.append(("response_received", {"response": response, "request": request}))

    def any_of(self, name: str) -> Any:
        def handler(**kwargs: Any) -> None:
            self.seen.append((name, kwargs))

        return handler


def _of(name: str) -> list[dict[str, Any]]:
    return [args for signal, args in Recorder.seen if signal == name]


async def test_signals_fire_with_their_arguments_and_counts() -> None:
    Recorder.seen = []
    async with serve_asgi(site) as base:
        crawler, items = await _run(
            Pages, settings(base, extensions=(f"{HERE}:Recorder",), concurrency=1)
        )
    assert sorted(item["path"] for item in items) == ["/", "/a"]
    assert [args["spider"] for args in _of("spider_opened")] == [crawler.spider]
    assert Recorder.seen[0][0] == "spider_opened"
    assert _of("spider_closed") == [{"reason": "finished"}]
    assert Recorder.seen[-1][0] == "spider_closed"
    scheduled = sorted(args["request"].url.removeprefix(base) for args in _of("request_scheduled"))
    assert scheduled == ["/", "/a", "/b", "/c"]
    assert all(args["spider"] is crawler.spider for args in _of("request_scheduled"))
    dropped = [(a["request"].url.removeprefix(base), a["reason"]) for a in _of("request_dropped")]
    # As a link of / (follow_all builds its Request once a handler listens) and as a
    # yielded request: each is dropped by the scheduler as a duplicate of the start one.
    assert dropped == [("/a", "duplicate")] * 2
    assert crawler.stats.dropped["duplicate"] == 2
    received = _of("response_received")
    assert len(received) == 4
    assert {a["response"].status_code for a in received} == {200}
    assert {str(a["response"].url) for a in received} == {a["request"].url for a in received}
    assert sorted(a["item"]["path"] for a in _of("item_scraped")) == ["/", "/a"]
    assert [(a["item"], a["reason"]) for a in _of("item_dropped")] == [({"path": "/b"}, "no b")]
    errors = _of("item_error")
    assert [a["item"] for a in errors] == [{"path": "/c"}]
    assert isinstance(errors[0]["error"], ValueError)
    assert not crawler.stats.errors.get("signal_handler")


class Broken:
    """Its handlers raise: each failure is logged and counted, and nothing else is lost."""

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Broken:
        ext = cls()
        crawler.signals.connect("item_scraped", ext.on_item)
        crawler.signals.connect("response_received", ext.on_response)
        return ext

    def on_item(self, item: Any) -> None:
        raise RuntimeError("handler bug")

    async def on_response(self, response: Response) -> None:
        raise RuntimeError("async handler bug")


async def test_a_failing_handler_is_logged_by_name_counted_and_harmless(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, "crawler.engine")
    async with serve_asgi(site) as base:
        crawler, items = await _run(Pages, settings(base, extensions=(f"{HERE}:Broken",)))
    assert sorted(item["path"] for item in items) == ["/", "/a"]
    assert crawler.stats.errors["signal_handler"] == 2 + 4
    assert crawler.stats.pages == 4
    messages = [r.getMessage() for r in caplog.records]
    assert any("item_scraped handler Broken.on_item failed" in m for m in messages), messages
    assert any("response_received handler Broken.on_response failed" in m for m in messages)


class MoreWhenIdle(Pages):
    """Asks for /d and /e the first time the crawl goes idle; a second handler schedules
    /f through the crawler."""

    idles: ClassVar[int] = 0

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> MoreWhenIdle:
        spider = super().from_crawler(crawler)
        crawler.signals.connect("spider_idle", spider.more)
        crawler.signals.connect("spider_idle", spider.one_more)
        return spider

    def more(self) -> list[Request]:
        MoreWhenIdle.idles += 1
        if MoreWhenIdle.idles > 1:
            return []
        base = self.settings["base"]
        return [Request(base + "/d", callback=self.parse), Request(base + "/e")]

    async def one_more(self, spider: Spider) -> None:
        if MoreWhenIdle.idles == 1:
            self.crawler.schedule(Request(self.settings["base"] + "/f", callback=self.parse))


async def test_spider_idle_handlers_can_schedule_more_requests() -> None:
    MoreWhenIdle.idles = 0
    async with serve_asgi(site) as base:
        crawler, items = await _run(MoreWhenIdle, settings(base))
    assert sorted(item["path"] for item in items) == ["/", "/a", "/d", "/e", "/f"]
    # Idle once with nothing left, handlers queue three pages; idle again: the end.
    assert MoreWhenIdle.idles == 2
    assert crawler.stats.finish_reason == "finished"


class FailsToBuild:
    @classmethod
    def from_crawler(cls, crawler: Crawler) -> FailsToBuild:
        raise RuntimeError("no config")


class BadSignal:
    @classmethod
    def from_crawler(cls, crawler: Crawler) -> BadSignal:
        crawler.signals.connect("item_scrapped", print)  # type: ignore[arg-type]
        return cls()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nowhere_mod:Ext", "extension 'nowhere_mod:Ext': cannot import module 'nowhere_mod'"),
        ("no_colon", "extension 'no_colon': name it by import path"),
        (
            f"{HERE}:FailsToBuild",
            f"extension '{HERE}:FailsToBuild': from_crawler(crawler) failed: "
            "RuntimeError: no config",
        ),
        (f"{HERE}:BadSignal", "no signal named 'item_scrapped'; the signals are item_dropped"),
    ],
)
async def test_extension_loading_errors_are_clear(name: str, message: str) -> None:
    with pytest.raises(ComponentError) as caught:
        await _run(Pages, settings("http://127.0.0.1:9", extensions=(name,)))
    assert message in str(caught.value)


async def test_nothing_connected_leaves_the_direct_paths() -> None:
    async with serve_asgi(site) as base:
        crawler, _ = await _run(Pages, settings(base))
    assert crawler._schedule == crawler.scheduler.enqueue
    assert crawler.scheduler.on_idle is None
    assert crawler.pipelines.on_drop is None and crawler.pipelines.on_error is None
    assert not crawler._extended()


async def robots_site(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """robots.txt disallows /private; ``/`` links to /open and /private."""
    path = scope["path"]
    if path == "/robots.txt":
        body, kind = b"User-agent: *\nDisallow: /private\n", b"text/plain"
    elif path == "/":
        body, kind = b'<a href="/open">o</a><a href="/private">p</a>', b"text/html"
    else:
        body, kind = f"<title>{path}</title>".encode(), b"text/html"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", kind), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Followers(Spider):
    name = "followers"

    def start_requests(self) -> Iterator[Request]:
        yield Request(self.settings["base"] + "/", callback=self.parse)

    def parse(self, response: Response) -> Iterator[Any]:
        yield {"path": response.url.path}
        yield from response.follow_all(callback=self.parse)


async def test_a_request_robots_txt_forbids_is_dropped_with_the_reason_robots() -> None:
    Recorder.seen = []
    async with serve_asgi(robots_site) as base:
        crawler, items = await _run(
            Followers,
            settings(base, extensions=(f"{HERE}:Recorder",), obey_robots=True, concurrency=1),
        )
    assert sorted(item["path"] for item in items) == ["/", "/open"]
    dropped = [(a["request"].url.removeprefix(base), a["reason"]) for a in _of("request_dropped")]
    assert dropped == [("/private", "robots")]
    assert crawler.stats.dropped["robots"] == 1
