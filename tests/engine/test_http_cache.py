"""The HTTP cache, through the engine, against real loopback servers that count what
they are asked: a cached run must ask them nothing (or only to revalidate)."""

from __future__ import annotations

import email.utils
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import trio

from crawler import HttpCache, Request, Response, Session, Settings, Spider
from crawler.engine import Crawler, Engine
from crawler.engine._cache_store import CACHE_FILE, cache_size
from crawler.engine._http_cache import fresh_until
from tests.crawl.helpers import Collector, settings
from tests.servers import Reply, Seen, serve_h11

HTML = [("Content-Type", "text/html")]


def _html(title: str, links: list[str]) -> bytes:
    anchors = "".join(f'<a href="{link}">{link}</a>' for link in links)
    return f"<html><head><title>{title}</title></head><body>{anchors}</body></html>".encode()


class Pages(Spider):
    """Follows every link from its start page; one item per page it reaches."""

    name = "pages"

    def start_requests(self) -> Iterator[Request]:
        yield Request(self.settings["base"] + "/")

    def parse(self, response: Response) -> Iterator[Any]:
        yield {
            "url": response.url,
            "status": response.status_code,
            "title": response.css_first("title").text(),
            "x": response.headers.get("x-page"),
        }
        yield from response.follow_all(css="a")


def site(extra: Callable[[Seen], Reply | None] | None = None) -> Callable[[Seen], Reply]:
    """An index linking to two pages, one of them behind a redirect, and a robots.txt."""

    def respond(seen: Seen) -> Reply:
        if extra is not None:
            reply = extra(seen)
            if reply is not None:
                return reply
        path = seen.target
        if path == "/robots.txt":
            return Reply(200, [("Content-Type", "text/plain")], b"User-agent: *\nAllow: /\n")
        if path == "/":
            return Reply(200, [*HTML, ("X-Page", "index")], _html("Index", ["/a", "/moved"]))
        if path == "/moved":
            return Reply(301, [("Location", "/b")])
        if path in ("/a", "/b"):
            return Reply(200, [*HTML, ("X-Page", path)], _html(f"Page {path}", ["/"]))
        return Reply(404, HTML, _html("Missing", []))

    return respond


def cached(base: str, directory: Path, **overrides: Any) -> Settings:
    return settings(base, http_cache=True, http_cache_dir=str(directory), **overrides)


async def run_with(
    s: Settings, cache: HttpCache | None = None, spider: type[Spider] = Pages
) -> tuple[Crawler, list[dict[str, Any]]]:
    collector = Collector()
    async with Engine(s) as engine:
        crawler = Crawler(spider, s, engine.pool, pipelines=[collector], http_cache=cache)
        with trio.fail_after(30):
            await crawler.run()
    return crawler, collector.items


def by_url(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(items, key=lambda item: str(item["url"]))


class Clock:
    """Unix time that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Tagging:
    """A crawl middleware that only marks what it saw: its presence makes the workers
    run the middleware chain around the fetch step."""

    def process_request(self, request: Request, spider: Spider) -> None:
        request.meta["tagged"] = True


# -- dev policy ------------------------------------------------------------------------


async def test_a_second_run_asks_the_site_nothing_and_yields_the_same_items(
    tmp_path: Path,
) -> None:
    async with serve_h11(site()) as server:
        s = cached(server.url, tmp_path / "cache")
        first, items = await run_with(s)
        sent = len(server.requests)
        # robots.txt, /, /a, /moved and its target /b.
        assert sorted(r.target for r in server.requests) == [
            "/",
            "/a",
            "/b",
            "/moved",
            "/robots.txt",
        ]
        assert first.stats.http_cache["store"] == 5
        assert first.stats.http_cache["miss"] == 5
        assert first.stats.http_cache["hit"] == 0

        second, again = await run_with(s)

    assert len(server.requests) == sent  # not one request more, robots.txt included
    assert by_url(again) == by_url(items)
    assert len(again) == 3
    assert second.stats.requests == 0
    assert second.stats.http_cache["hit"] == 5
    assert second.stats.http_cache["miss"] == 0
    assert second.stats.to_dict()["httpcache/hit"] == 5


async def test_a_redirect_is_replayed_hop_by_hop_to_its_target(tmp_path: Path) -> None:
    async with serve_h11(site()) as server:
        s = cached(server.url, tmp_path / "cache")
        await run_with(s)
        second, items = await run_with(s)
        assert len(server.requests) == 5
    moved = [item for item in items if item["x"] == "/b"]
    assert moved == [{"url": server.url + "/b", "status": 200, "title": "Page /b", "x": "/b"}]
    assert second.stats.redirects == 1
    assert second.stats.status[301] == 1


async def test_a_hit_takes_no_politeness_turn(tmp_path: Path) -> None:
    """With a download delay longer than the guard, a run that waited its turns
    would time out; a cached run books none."""
    async with serve_h11(site()) as server:
        s = cached(server.url, tmp_path / "cache", download_delay=0.0)
        await run_with(s)
        slow = cached(server.url, tmp_path / "cache", download_delay=3600.0)
        second, items = await run_with(slow)
    assert len(items) == 3
    host = "127.0.0.1"
    assert second.politeness.next_allowed_time(host) == -math.inf


async def test_ignored_status_codes_are_fetched_again(tmp_path: Path) -> None:
    def extra(seen: Seen) -> Reply | None:
        if seen.target == "/":
            return Reply(200, HTML, _html("Index", ["/a", "/gone"]))
        return None

    async with serve_h11(site(extra)) as server:
        s = cached(server.url, tmp_path / "cache", http_cache_ignore_http_codes=(404,))
        first, _ = await run_with(s)
        assert first.stats.http_cache["uncacheable"] == 1
        second, _ = await run_with(s)
        gone = [r for r in server.requests if r.target == "/gone"]
    assert len(gone) == 2
    assert second.stats.http_cache["hit"] == 3  # robots.txt, / and /a
    assert second.stats.http_cache["miss"] == 1


async def test_a_request_with_cache_control_no_store_is_left_alone(tmp_path: Path) -> None:
    class NoStore(Pages):
        def start_requests(self) -> Iterator[Request]:
            yield Request(self.settings["base"] + "/a", headers={"Cache-Control": "no-store"})

    async with serve_h11(site()) as server:
        s = cached(server.url, tmp_path / "cache")
        await run_with(s, spider=NoStore)
        await run_with(s, spider=NoStore)
        fetched = [r.target for r in server.requests if r.target == "/a"]
    assert fetched == ["/a", "/a"]


async def test_entries_older_than_the_expiration_are_fetched_again(tmp_path: Path) -> None:
    clock = Clock()

    def cache(s: Settings) -> HttpCache:
        return HttpCache(tmp_path / "cache", expiration=60, clock=clock)

    async with serve_h11(site()) as server:
        s = cached(server.url, tmp_path / "cache")
        await run_with(s, cache(s))
        clock.now += 59
        await run_with(s, cache(s))
        assert len(server.requests) == 5  # still fresh
        clock.now += 2
        third, _ = await run_with(s, cache(s))
        assert len(server.requests) == 10
    assert third.stats.http_cache["miss"] == 5
    assert third.stats.http_cache["store"] == 5


async def test_the_cache_file_reports_its_size(tmp_path: Path) -> None:
    assert cache_size(tmp_path / "cache") is None
    async with serve_h11(site()) as server:
        await run_with(cached(server.url, tmp_path / "cache"))
    found = cache_size(tmp_path / "cache")
    assert found is not None and found[0] == 5 and found[1] > 0
    assert (tmp_path / "cache" / CACHE_FILE).is_file()


async def test_a_damaged_cache_file_is_a_clear_error(tmp_path: Path) -> None:
    from crawler import HttpCacheError

    directory = tmp_path / "cache"
    directory.mkdir()
    (directory / CACHE_FILE).write_bytes(b"not a database" * 100)
    cache = HttpCache(directory)
    try:
        await cache.open()
    except HttpCacheError as exc:
        assert str(directory / CACHE_FILE) in str(exc)
    else:
        raise AssertionError("a damaged cache file was opened")


class LoginSite:
    """Pages behind a login (a ``sid`` cookie); every session ends once, after
    ``expire_after`` item pages, so that some pages come back as redirects to /login."""

    def __init__(self, items: int, expire_after: int) -> None:
        self.items = items
        self.expire_after = expire_after
        self.valid: set[str] = set()
        self.logins = 0
        self.served = 0

    def __call__(self, seen: Seen) -> Reply:
        sid = seen.headers.get("cookie", "").partition("sid=")[2].split(";")[0]
        if seen.target == "/login":
            self.logins += 1
            self.valid.add(str(self.logins))
            return Reply(200, [*HTML, ("Set-Cookie", f"sid={self.logins}; Path=/")], b"hi")
        if seen.target == "/robots.txt":
            return Reply(404, HTML, b"")
        if sid not in self.valid:
            return Reply(302, [("Location", "/login")])
        if seen.target == "/items/":
            return Reply(200, HTML, _html("Items", [f"/items/{n}" for n in range(self.items)]))
        self.served += 1
        if self.served == self.expire_after:
            self.valid.clear()
        return Reply(200, HTML, _html(seen.target, []))


class Member(Spider):
    name = "member"
    login_url = "/login"

    async def login(self, session: Session) -> None:
        await session.get(self.settings["base"] + "/login")

    def start_requests(self) -> Iterator[Request]:
        yield Request(self.settings["base"] + "/items/")

    def parse(self, response: Response) -> Iterator[Any]:
        if response.url.path == "/items/":
            yield from response.follow_all(css="a")
        else:
            yield {"page": response.css_first("title").text()}


async def test_a_logged_out_page_is_not_replayed_to_the_resend_nor_to_the_next_run(
    tmp_path: Path,
) -> None:
    site = LoginSite(items=20, expire_after=5)
    async with serve_h11(site) as server:
        s = cached(server.url, tmp_path / "cache", concurrency=1)
        first, items = await run_with(s, spider=Member)
        assert site.logins == 2  # the session did end, and was logged in again
        before = len(server.requests)
        second, again = await run_with(s, spider=Member)
        asked = [seen.target for seen in server.requests[before:]]
    expected = sorted(f"/items/{n}" for n in range(20))
    assert sorted(item["page"] for item in items) == expected
    assert first.stats.finish_reason == "finished"
    assert sorted(item["page"] for item in again) == expected
    assert asked == []  # every page from the cache, and the second login too
    # robots.txt, /items/, 20 pages and the login (the first was stale: deleted).
    assert second.stats.http_cache["hit"] == 23


class PostLogin(Spider):
    """Logs in with a POST of its password, which answers with a cookie and a redirect."""

    name = "postlogin"
    password = "s3cret"

    async def login(self, session: Session) -> None:
        body = f"user=me&password={self.password}".encode()
        await session.post(self.settings["base"] + "/login", content=body)

    def start_requests(self) -> Iterator[Request]:
        yield Request(self.settings["base"] + "/a")

    def parse(self, response: Response) -> Iterator[Any]:
        yield {"page": response.css_first("title").text()}


class OtherPassword(PostLogin):
    password = "other"


def post_login_site(seen: Seen) -> Reply | None:
    if seen.target == "/login" and seen.method == "POST":
        sid = "good" if seen.body.endswith(b"password=s3cret") else "bad"
        return Reply(302, [("Set-Cookie", f"sid={sid}; Path=/"), ("Location", "/home")])
    if seen.target == "/home":
        return Reply(200, HTML, _html("Home", []))
    return None


async def test_a_post_login_is_replayed_with_its_cookie_and_keyed_by_its_body(
    tmp_path: Path,
) -> None:
    async with serve_h11(site(post_login_site)) as server:
        s = cached(server.url, tmp_path / "cache")
        await run_with(s, spider=PostLogin)
        assert [r.target for r in server.requests if r.method == "POST"] == ["/login"]
        before = len(server.requests)
        second, items = await run_with(s, spider=PostLogin)
        replayed = server.requests[before:]
        # Another password is another body, so another key: that login is sent.
        await run_with(s, spider=OtherPassword)
        other = [r.target for r in server.requests[before + len(replayed) :]]
    assert replayed == []
    assert items == [{"page": "Page /a"}]
    assert second.sessions["default"].cookies.get("sid") == "good"  # from the replayed Set-Cookie
    assert second.stats.requests == 0
    assert other == ["/login"]  # the redirect's /home is the same page: replayed
    stored = (tmp_path / "cache" / CACHE_FILE).read_bytes()
    assert b"s3cret" not in stored


# -- rfc9111 policy ----------------------------------------------------------------------


async def test_rfc9111_revalidates_with_the_etag_and_serves_the_stored_body_on_304(
    tmp_path: Path,
) -> None:
    def extra(seen: Seen) -> Reply | None:
        if seen.target != "/":
            return None
        if seen.headers.get("if-none-match") == '"v1"':
            return Reply(304, [("ETag", '"v1"'), ("X-Page", "revalidated")])
        headers = [*HTML, ("ETag", '"v1"'), ("Cache-Control", "no-cache"), ("X-Page", "index")]
        return Reply(200, headers, _html("Index", []))

    async with serve_h11(site(extra)) as server:
        s = cached(server.url, tmp_path / "cache", http_cache_policy="rfc9111")
        _, items = await run_with(s)
        second, again = await run_with(s)
        index = [r for r in server.requests if r.target == "/"]
    assert len(index) == 2
    assert "if-none-match" not in index[0].headers
    assert index[1].headers["if-none-match"] == '"v1"'
    assert items == [{"url": server.url + "/", "status": 200, "title": "Index", "x": "index"}]
    # The stored body, status 200, with the headers the 304 updated.
    assert again == [{"url": server.url + "/", "status": 200, "title": "Index", "x": "revalidated"}]
    assert second.stats.http_cache["revalidate"] == 1
    assert second.stats.status[200] == 1


async def test_rfc9111_revalidates_with_last_modified(tmp_path: Path) -> None:
    stamp = email.utils.formatdate(1_700_000_000, usegmt=True)

    def extra(seen: Seen) -> Reply | None:
        if seen.target != "/":
            return None
        if seen.headers.get("if-modified-since") == stamp:
            return Reply(304, [])
        headers = [*HTML, ("Last-Modified", stamp), ("Cache-Control", "max-age=0")]
        return Reply(200, headers, _html("Index", []))

    async with serve_h11(site(extra)) as server:
        s = cached(server.url, tmp_path / "cache", http_cache_policy="rfc9111")
        await run_with(s)
        second, again = await run_with(s)
        index = [r for r in server.requests if r.target == "/"]
    assert [r.headers.get("if-modified-since") for r in index] == [None, stamp]
    assert [item["title"] for item in again] == ["Index"]
    assert second.stats.http_cache["revalidate"] == 1


async def test_rfc9111_does_not_refetch_a_fresh_max_age_response(tmp_path: Path) -> None:
    fresh = [("Cache-Control", "max-age=3600")]

    def extra(seen: Seen) -> Reply | None:
        if seen.target == "/":
            return Reply(200, [*HTML, *fresh], _html("Index", ["/a", "/nostore"]))
        if seen.target == "/a":
            return Reply(200, [*HTML, *fresh], _html("A", []))
        if seen.target == "/nostore":
            return Reply(200, [*HTML, ("Cache-Control", "no-store")], _html("No", []))
        if seen.target == "/robots.txt":
            return Reply(200, fresh, b"User-agent: *\nAllow: /\n")
        return None

    async with serve_h11(site(extra)) as server:
        s = cached(server.url, tmp_path / "cache", http_cache_policy="rfc9111")
        first, _ = await run_with(s)
        second, items = await run_with(s)
        targets = sorted(r.target for r in server.requests)
    assert first.stats.http_cache["uncacheable"] == 1
    assert targets == ["/", "/a", "/nostore", "/nostore", "/robots.txt"]
    assert len(items) == 3
    assert second.stats.http_cache["hit"] == 3
    assert second.stats.http_cache["uncacheable"] == 1


async def test_rfc9111_refetches_once_max_age_is_over(tmp_path: Path) -> None:
    clock = Clock()

    def extra(seen: Seen) -> Reply | None:
        if seen.target == "/":
            return Reply(200, [*HTML, ("Cache-Control", "max-age=100")], _html("Index", []))
        return None

    async with serve_h11(site(extra)) as server:
        s = cached(server.url, tmp_path / "cache", http_cache_policy="rfc9111")

        def cache() -> HttpCache:
            return HttpCache(tmp_path / "cache", policy="rfc9111", clock=clock)

        await run_with(s, cache())
        clock.now += 99
        await run_with(s, cache())
        assert [r.target for r in server.requests].count("/") == 1
        clock.now += 2
        await run_with(s, cache())
        assert [r.target for r in server.requests].count("/") == 2


def test_freshness_follows_rfc9111() -> None:
    now = 1_800_000_000.0
    date = email.utils.formatdate(now - 10, usegmt=True)
    # max-age minus the age the response already had (Date 10 s ago, Age 30).
    assert fresh_until(200, [("Cache-Control", "max-age=100"), ("Date", date)], now) == now + 90
    assert fresh_until(200, [("Cache-Control", "max-age=100"), ("Age", "30")], now) == now + 70
    expires = email.utils.formatdate(now + 50, usegmt=True)
    assert fresh_until(200, [("Expires", expires)], now) == now + 50
    assert fresh_until(200, [("Expires", "0")], now) == now
    # Heuristic: 10% of the time since Last-Modified, for statuses that allow it.
    modified = email.utils.formatdate(now - 1000, usegmt=True)
    assert fresh_until(200, [("Last-Modified", modified)], now) == now + 100
    assert fresh_until(302, [("Last-Modified", modified)], now) == 0.0
    assert fresh_until(200, [("Cache-Control", "no-cache, max-age=100")], now) == 0.0
    assert fresh_until(200, [], now) == 0.0


async def test_with_a_middleware_configured_the_cache_still_answers(tmp_path: Path) -> None:
    """The middleware chain sends through the same exchange as the plain fetch step."""
    middleware = ("tests.engine.test_http_cache:Tagging",)
    async with serve_h11(site()) as server:
        s = cached(server.url, tmp_path / "cache", middlewares=middleware)
        _, items = await run_with(s)
        sent = len(server.requests)
        second, again = await run_with(s)
    assert by_url(again) == by_url(items)
    assert len(server.requests) == sent  # nothing asked the second time
    assert second.stats.http_cache["hit"] >= 4
