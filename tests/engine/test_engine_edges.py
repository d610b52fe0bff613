"""Engine edge cases where work could be lost, miscounted or crash the crawl."""

from __future__ import annotations

import datetime
import functools
import gzip
import logging
from collections import Counter, UserDict
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from crawler import DecodingError, Request, Response, Spider
from crawler.engine._engine import Engine
from crawler.sessions._session import Session
from tests.crawl.helpers import run, settings
from tests.servers import Reply, Seen, serve_h11, serve_tcp

HTML = [("Content-Type", "text/html")]


async def test_a_redirect_after_a_retry_gets_its_own_retry_budget() -> None:
    """The target of a redirect is a new request: the retries its source took do not
    use up its own (nor show in its meta, nor keep it out of the page count)."""
    hits: Counter[str] = Counter()

    def site(seen: Seen) -> Reply:
        hits[seen.target] += 1
        if seen.target == "/a":
            if hits["/a"] == 1:
                return Reply(503, [], b"busy")
            return Reply(302, [("Location", "/b")], b"")
        if seen.target == "/b":
            if hits["/b"] == 1:
                return Reply(503, [], b"busy")
            return Reply(200, HTML, b"<title>b</title>")
        return Reply(404, [], b"")

    async with serve_h11(site) as server:

        class Redirected(Spider):
            name = "redirected"

            def start_requests(self) -> Iterator[Request]:
                yield Request(server.url + "/a")

            def parse(self, response: Response) -> dict[str, Any]:
                return {"url": str(response.url), "retries": response.crawl_request.retries}

        stats, items = await run(Redirected, settings("", retry_times=1, obey_robots=False))
    assert hits["/b"] == 2
    assert items == [{"url": server.url + "/b", "retries": 1}]
    assert stats.failed == 0
    assert stats.retries == 2


def _sync_wrapper(method: Callable[..., Any]) -> Callable[..., Any]:
    """A plain decorator around an async callback: it returns what the callback returns."""

    @functools.wraps(method)
    def wrapper(*args: Any) -> Any:
        return method(*args)

    return wrapper


async def test_callbacks_behind_a_plain_decorator_are_awaited_or_iterated() -> None:
    def site(seen: Seen) -> Reply:
        return Reply(200, HTML, b"<title>t</title>")

    async with serve_h11(site) as server:

        class Decorated(Spider):
            name = "decorated"

            def start_requests(self) -> Iterator[Request]:
                yield Request(server.url + "/c", callback=self.coro)
                yield Request(server.url + "/g", callback=self.agen)

            @_sync_wrapper
            async def coro(self, response: Response) -> dict[str, str]:
                return {"kind": "coroutine"}

            @_sync_wrapper
            async def agen(self, response: Response) -> AsyncIterator[Any]:
                yield {"kind": "agen"}
                yield Request(server.url + "/next", callback=self.coro)

        stats, items = await run(Decorated, settings("", obey_robots=False))
    assert sorted(item["kind"] for item in items) == ["agen", "coroutine", "coroutine"]
    assert stats.pages == 3
    assert stats.callback_errors == 0


async def test_a_retry_does_not_touch_the_meta_other_requests_share() -> None:
    """``meta=response.meta`` hands one dict to many requests: a retry of one of them
    must not spend the retries of the others."""
    hits: Counter[str] = Counter()

    def site(seen: Seen) -> Reply:
        hits[seen.target] += 1
        if seen.target in ("/a", "/b") and hits[seen.target] == 1:
            return Reply(503, [], b"busy")
        return Reply(200, HTML, b"<title>t</title>")

    async with serve_h11(site) as server:

        class Shared(Spider):
            name = "shared"

            def start_requests(self) -> Iterator[Request]:
                yield Request(server.url + "/list", callback=self.listing, meta={"cat": "x"})

            def listing(self, response: Response) -> Iterator[Request]:
                yield Request(server.url + "/a", meta=response.meta)
                yield Request(server.url + "/b", meta=response.meta)

            def parse(self, response: Response) -> dict[str, Any]:
                return {
                    "path": response.url.path,
                    "retries": response.crawl_request.retries,
                    "meta": response.meta,
                }

        stats, items = await run(
            Shared, settings("", retry_times=1, concurrency=1, obey_robots=False)
        )
    assert sorted(items, key=lambda i: i["path"]) == [
        {"path": "/a", "retries": 1, "meta": {"cat": "x"}},
        {"path": "/b", "retries": 1, "meta": {"cat": "x"}},
    ]
    assert stats.failed == 0
    assert hits["/a"] == hits["/b"] == 2


async def test_a_start_request_that_is_no_request_is_reported_and_the_rest_still_go_out(
    caplog: Any,
) -> None:
    def site(seen: Seen) -> Reply:
        return Reply(200, HTML, b"<title>t</title>")

    async with serve_h11(site) as server:

        class Sloppy(Spider):
            name = "sloppy"

            def start_requests(self) -> Iterator[Any]:
                yield server.url + "/as-text"
                yield Request(server.url + "/b")

            def parse(self, response: Response) -> dict[str, str]:
                return {"path": response.url.path}

        stats, items = await run(Sloppy, settings("", obey_robots=False))
    assert items == [{"path": "/b"}]
    assert stats.errors["start_requests"] == 1
    assert "yielded '" + server.url + "/as-text' (str), not a Request" in caplog.text


async def test_a_retry_after_header_of_odd_digits_is_ignored_not_a_crash() -> None:
    """``"²".isdigit()`` is true but ``float("²")`` fails: such a header is unreadable."""
    hits: Counter[str] = Counter()

    async def handler(stream: trio.SocketStream) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            data = await stream.receive_some(4096)
            if not data:
                return
            head += data
        path = head.split(b" ", 2)[1].decode()
        hits[path] += 1
        if hits[path] == 1:
            reply = b"HTTP/1.1 503 Busy\r\nRetry-After: \xb2\r\nContent-Length: 0\r\n"
        else:
            reply = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n"
        await stream.send_all(
            reply + b"Connection: close\r\n\r\n" + (b"<p/>." if hits[path] > 1 else b"")
        )
        await stream.aclose()

    async with serve_tcp(handler) as port:

        class Odd(Spider):
            name = "odd"

            def start_requests(self) -> Iterator[Request]:
                yield Request(f"http://127.0.0.1:{port}/a")

            def parse(self, response: Response) -> dict[str, str]:
                return {"path": response.url.path}

        stats, items = await run(Odd, settings("", obey_robots=False))
    assert items == [{"path": "/a"}]
    assert stats.retries == 1
    assert not stats.errors


async def test_a_mapping_item_returned_by_a_callback_is_one_item_not_its_keys() -> None:
    def site(seen: Seen) -> Reply:
        return Reply(200, HTML, b"<title>t</title>")

    async with serve_h11(site) as server:

        class Mappings(Spider):
            name = "mappings"

            def start_requests(self) -> Iterator[Request]:
                yield Request(server.url + "/m")

            def parse(self, response: Response) -> UserDict[str, Any]:
                return UserDict({"title": "t", "price": 3})

        stats, items = await run(Mappings, settings("", obey_robots=False))
    assert [dict(item) for item in items] == [{"title": "t", "price": 3}]
    assert stats.callback_errors == 0


async def test_start_requests_may_be_a_coroutine_or_an_async_iterable() -> None:
    def site(seen: Seen) -> Reply:
        return Reply(200, HTML, b"<title>t</title>")

    async with serve_h11(site) as server:

        class Later:
            """An async iterable that is no iterator itself."""

            def __aiter__(self) -> AsyncIterator[Request]:
                return self._requests()

            async def _requests(self) -> AsyncIterator[Request]:
                yield Request(server.url + "/iterable")

        class FromCoroutine(Spider):
            name = "coroutine"

            async def start_requests(self) -> list[Request]:  # type: ignore[override]
                return [Request(server.url + "/coroutine")]

            def parse(self, response: Response) -> dict[str, str]:
                return {"path": response.url.path}

        class FromIterable(FromCoroutine):
            name = "iterable"

            def start_requests(self) -> Any:
                return Later()

        stats, items = await run(FromCoroutine, settings("", obey_robots=False))
        assert items == [{"path": "/coroutine"}]
        assert not stats.errors
        stats, items = await run(FromIterable, settings("", obey_robots=False))
        assert items == [{"path": "/iterable"}]
        assert not stats.errors


async def test_a_request_a_job_cannot_store_does_not_mark_its_url_as_seen(tmp_path: Path) -> None:
    """A durable crawl refuses a request whose meta is not JSON; the same URL yielded
    properly afterwards must still be fetched, not dropped as a duplicate."""
    hits: Counter[str] = Counter()

    def site(seen: Seen) -> Reply:
        hits[seen.target] += 1
        return Reply(200, HTML, b"<title>t</title>")

    async with serve_h11(site) as server:

        class Unstorable(Spider):
            name = "unstorable"

            def start_requests(self) -> Iterator[Request]:
                yield Request(server.url + "/first", callback=self.first, priority=1)
                yield Request(server.url + "/second", callback=self.second)

            def first(self, response: Response) -> Iterator[Request]:
                yield Request(server.url + "/x", meta={"at": datetime.date(2026, 1, 1)})

            def second(self, response: Response) -> Iterator[Request]:
                yield Request(server.url + "/x", meta={"at": "2026-01-01"})

            def parse(self, response: Response) -> dict[str, Any]:
                return {"path": response.url.path, "at": response.meta["at"]}

        stats, items = await run(
            Unstorable,
            settings("", concurrency=1, obey_robots=False, job_dir=str(tmp_path / "job")),
        )
    assert items == [{"path": "/x", "at": "2026-01-01"}]
    assert hits["/x"] == 1
    assert stats.callback_errors == 1


async def test_max_items_counts_the_items_of_this_run_when_a_job_resumes(tmp_path: Path) -> None:
    def site(seen: Seen) -> Reply:
        return Reply(200, HTML, b"<title>t</title>")

    async with serve_h11(site) as server:

        class Pages(Spider):
            name = "pages"

            def start_requests(self) -> Iterator[Request]:
                for n in range(10):
                    yield Request(f"{server.url}/p/{n}", priority=-n)

            def parse(self, response: Response) -> dict[str, str]:
                return {"path": response.url.path}

        s = settings(
            "", concurrency=1, max_items=2, obey_robots=False, job_dir=str(tmp_path / "job")
        )
        stats, first = await run(Pages, s)
        assert [i["path"] for i in first] == ["/p/0", "/p/1"]
        assert stats.finish_reason == "max_items"
        stats, second = await run(Pages, s)
    assert [i["path"] for i in second] == ["/p/2", "/p/3"]
    assert stats.finish_reason == "max_items"
    assert stats.items == 4  # the job's total


async def test_requests_dropped_by_a_failed_login_stay_queued_in_a_job(tmp_path: Path) -> None:
    """The crawl stops when a re-login fails; the request that came back logged out
    was never handled, so the job must still have it for the next run."""
    state = {"sid": 0, "served": 0, "logins_allowed": 1, "logins": 0}
    hits: Counter[str] = Counter()

    def site(seen: Seen) -> Reply:
        if seen.target == "/login":
            if state["logins"] >= state["logins_allowed"]:
                return Reply(403, [], b"no")
            state["logins"] += 1
            state["sid"] += 1
            state["served"] = 0
            return Reply(200, [("Set-Cookie", f"sid={state['sid']}; Path=/")], b"welcome")
        if seen.headers.get("cookie") != f"sid={state['sid']}" or state["served"] >= 3:
            return Reply(200, HTML, b"please log in")
        state["served"] += 1
        hits[seen.target] += 1
        return Reply(200, HTML, b"<title>t</title>")

    async with serve_h11(site) as server:

        class Members(Spider):
            name = "members"

            async def login(self, session: Session) -> None:
                page = await session.get(server.url + "/login")
                if page.status_code != 200:
                    raise RuntimeError(f"login refused: HTTP {page.status_code}")

            def logged_out(self, response: Response) -> bool:
                return b"please log in" in response.content

            def start_requests(self) -> Iterator[Request]:
                for n in range(6):
                    yield Request(f"{server.url}/p/{n}", priority=-n)

            def parse(self, response: Response) -> dict[str, str]:
                return {"path": response.url.path}

        s = settings("", concurrency=1, obey_robots=False, job_dir=str(tmp_path / "job"))
        stats, first = await run(Members, s)
        assert [i["path"] for i in first] == ["/p/0", "/p/1", "/p/2"]
        assert stats.finish_reason == "login_failed"
        state["logins_allowed"] = 10
        stats, second = await run(Members, s)
    assert [i["path"] for i in second] == ["/p/3", "/p/4", "/p/5"]
    assert stats.finish_reason == "finished"
    assert all(hits[f"/p/{n}"] == 1 for n in range(6))


async def test_a_crawl_cancelled_from_outside_does_not_say_it_finished() -> None:
    arrived = trio.Event()
    never = trio.Event()

    async def site(seen: Seen) -> Reply:
        arrived.set()
        await never.wait()
        return Reply(200, HTML, b"")

    async with serve_h11(site) as server:

        class Stuck(Spider):
            name = "stuck"
            start_urls = [server.url + "/slow"]

        s = settings("", obey_robots=False)
        async with Engine(s) as engine:
            crawler = engine.crawler(Stuck, s, pipelines=[])
            async with trio.open_nursery() as nursery:
                nursery.start_soon(crawler.run)
                await arrived.wait()
                nursery.cancel_scope.cancel()
    assert crawler.stats.finish_reason == "aborted"


async def test_follow_and_follow_all_honour_base_href_as_links_does() -> None:
    hits: Counter[str] = Counter()
    page = (
        b'<html><head><base href="/shop/"></head><body>'
        b'<a class="next" href="page2">next</a><a id="more" href="page3">more</a></body></html>'
    )

    def site(seen: Seen) -> Reply:
        hits[seen.target] += 1
        if seen.target == "/dir/index.html":
            return Reply(200, HTML, page)
        return Reply(200, HTML, b"<title>t</title>")

    async with serve_h11(site) as server:

        class Based(Spider):
            name = "based"

            def start_requests(self) -> Iterator[Request]:
                yield Request(server.url + "/dir/index.html", callback=self.index)

            def index(self, response: Response) -> Iterator[Request]:
                assert response.links() == [server.url + "/shop/page2", server.url + "/shop/page3"]
                yield from response.follow_all(css="a.next")
                yield response.follow(response.css_first("#more"))

            def parse(self, response: Response) -> dict[str, str]:
                return {"path": response.url.path}

        stats, items = await run(Based, settings("", obey_robots=False))
    assert sorted(i["path"] for i in items) == ["/shop/page2", "/shop/page3"]
    assert stats.callback_errors == 0


async def test_a_resumed_job_does_not_queue_again_the_start_requests_it_had(
    tmp_path: Path,
) -> None:
    """Start requests with ``dont_filter`` escape the seen set: a job stopped while its
    start requests were being queued must not fetch those it had again on resume."""
    hits: Counter[str] = Counter()

    def site(seen: Seen) -> Reply:
        hits[seen.target] += 1
        return Reply(200, HTML, b"<title>t</title>")

    class Counting:
        def __init__(self, stop_after: int, crawler: Any = None) -> None:
            self.items: list[Any] = []
            self.stop_after = stop_after
            self.crawler = crawler

        def process_item(self, item: Any, spider: Spider) -> Any:
            self.items.append(item)
            if len(self.items) == self.stop_after and self.crawler is not None:
                self.crawler.stop("shutdown")
            return item

    async with serve_h11(site) as server:
        blocked = [True]

        class Starts(Spider):
            name = "starts"

            async def start_requests(self) -> AsyncIterator[Request]:
                for n in range(4):
                    if n == 2 and blocked[0]:
                        await trio.sleep_forever()  # still queueing when the crawl stops
                    yield Request(f"{server.url}/s/{n}", dont_filter=True)

            def parse(self, response: Response) -> dict[str, str]:
                return {"path": response.url.path}

        s = settings("", obey_robots=False, job_dir=str(tmp_path / "job"))
        for stop_after in (2, 0):
            async with Engine(s) as engine:
                counting = Counting(stop_after)
                crawler = engine.crawler(Starts, s, pipelines=[counting])
                counting.crawler = crawler
                with trio.fail_after(30):
                    await crawler.run()
            if stop_after:
                assert sorted(i["path"] for i in counting.items) == ["/s/0", "/s/1"]
                blocked[0] = False
    assert sorted(i["path"] for i in counting.items) == ["/s/2", "/s/3"]
    assert all(hits[f"/s/{n}"] == 1 for n in range(4))


def test_a_request_refuses_headers_it_could_never_send() -> None:
    """Refused where the spider builds it (its callback fails saying why), not deep in a
    worker where the request would vanish as an internal error, or be retried in vain."""
    with pytest.raises(
        TypeError, match=r"header 'X-Page' of http://h\.test/ must be text, not int"
    ):
        Request("http://h.test/", headers={"X-Page": 2})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match=r"header 'X-C' of http://h\.test/"):
        Request("http://h.test/", headers={"X-C": "a\r\nInjected: yes"})
    with pytest.raises(ValueError, match=r"header 'bad name' of http://h\.test/"):
        Request("http://h.test/", headers={"bad name": "v"})
    with pytest.raises(ValueError, match=r"header 'X-U' of http://h\.test/.*latin-1"):
        Request("http://h.test/", headers={"X-U": "ключ"})
    latin1 = Request("http://h.test/", headers={"X-B": b"caf\xe9"})  # type: ignore[dict-item]
    assert latin1.headers == {"X-B": "café"}


async def test_a_truncated_compressed_page_fails_once_with_a_clear_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Half a page must not reach the callback as a whole one; the same bytes would
    come back on a retry, so it fails at once, counted and logged, not as an internal
    error with a traceback."""
    hits: Counter[str] = Counter()
    page = gzip.compress(b"<title>whole</title>" + b"<p>text</p>" * 5000)

    async def handler(stream: trio.SocketStream) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            data = await stream.receive_some(4096)
            if not data:
                return
            head += data
        path = head.split(b" ", 2)[1].decode()
        hits[path] += 1
        body = page[: len(page) // 2] if path == "/cut" else page
        await stream.send_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await stream.aclose()

    errors: list[BaseException] = []
    async with serve_tcp(handler) as port:

        class Cut(Spider):
            name = "cut"

            def start_requests(self) -> Iterator[Request]:
                for path in ("/cut", "/whole"):
                    yield Request(f"http://127.0.0.1:{port}{path}", errback=self.failed)

            def parse(self, response: Response) -> dict[str, str]:
                return {"path": response.url.path}

            def failed(self, request: Request, error: BaseException) -> None:
                errors.append(error)

        with caplog.at_level(logging.WARNING, logger="crawler"):
            stats, items = await run(Cut, settings("", obey_robots=False, retry_times=2))
    assert items == [{"path": "/whole"}]
    assert hits["/cut"] == 1
    assert (stats.failed, stats.retries, dict(stats.errors)) == (1, 0, {"DecodingError": 1})
    assert len(errors) == 1 and isinstance(errors[0], DecodingError)
    (line,) = [r.getMessage() for r in caplog.records if "/cut" in r.getMessage()]
    assert f"giving up on GET http://127.0.0.1:{port}/cut" in line
    assert "truncated" in line
