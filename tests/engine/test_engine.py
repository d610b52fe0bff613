"""The engine end to end, through its Python API, against real loopback servers."""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import trio
import trio.testing

from crawler import Request, Response, Settings, Spider
from crawler.engine._stats import Stats, run_progress, write_stats_json
from crawler.http import HTTPStatusError
from tests.crawl.helpers import run, run_crawler, settings
from tests.servers import Reply, Seen, serve_asgi, serve_h11

# -- the test site -------------------------------------------------------------------


class Site:
    """A small shop: an index linking to products (with duplicates, query-order
    variants, an off-site link, a mailto and a robots-disallowed page), a
    depth chain, a page that fails once with 503, and a page whose callback raises.
    """

    ROBOTS = "User-agent: *\nDisallow: /private\nCrawl-delay: 0.01\n"

    def __init__(self, offsite: str = "http://127.0.0.3:1/elsewhere") -> None:
        self.hits: Counter[str] = Counter()
        self.offsite = offsite

    def page(self, path: str) -> tuple[int, str, str]:
        if path == "/robots.txt":
            return 200, "text/plain", self.ROBOTS
        if path == "/":
            links = [
                "/p/1",
                "/p/2",
                "/p/2#again",
                "p/2",
                "/p/3?b=2&a=1",
                "/p/3?a=1&b=2",
                "/private/secret",
                "/flaky",
                "/boom",
                "/d/0",
                "/moved",
                "/away",
                "mailto:shop@example.com",
                self.offsite,
            ]
            return 200, "text/html", _html("Index", links)
        if path.startswith("/p/"):
            return 200, "text/html", _html(f"Product {path[3:]}", ["/", "/p/1", "/p/2"])
        if path.startswith("/d/"):
            n = int(path[3:])
            return 200, "text/html", _html(f"Depth {n}", [f"/d/{n + 1}"] if n < 9 else [])
        if path == "/flaky":
            if self.hits["/flaky"] == 1:
                return 503, "text/plain", "try again"
            return 200, "text/html", _html("Flaky", [])
        if path == "/moved":
            return 302, "/new-home", ""
        if path == "/away":
            return 301, self.offsite + "-too", ""
        if path == "/new-home":
            return 200, "text/html", _html("New home", ["/moved", "/p/1"])
        if path == "/boom":
            return 200, "text/html", _html("Boom", [])
        if path == "/private/secret":
            return 200, "text/html", _html("Secret", [])
        return 404, "text/plain", "not found"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        path = scope["path"] + (
            "?" + scope["query_string"].decode() if scope["query_string"] else ""
        )
        self.hits[path] += 1
        status, ctype, body = self.page(scope["path"])
        data = body.encode()
        headers = [(b"content-length", b"%d" % len(data))]
        if 300 <= status < 400:
            headers.append((b"location", ctype.encode()))
        else:
            headers.append((b"content-type", ctype.encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})


def _html(title: str, links: list[str]) -> str:
    anchors = "".join(f'<a href="{href}">{href}</a>' for href in links)
    return f"<html><head><title>{title}</title></head><body><h1>{title}</h1>{anchors}</body></html>"


class ShopSpider(Spider):
    name = "shop"
    allowed_domains = ["127.0.0.1"]

    def start_requests(self) -> Iterator[Request]:
        yield Request(self.settings["base"] + "/", callback=self.parse)

    def parse(self, response: Response) -> Iterator[Any]:
        if response.url.path == "/boom":
            raise RuntimeError("the callback broke on purpose")
        yield {"url": str(response.url), "title": response.css_first("title").text()}
        yield from response.follow_all(callback=self.parse)


# -- tests ------------------------------------------------------------------------------

EXPECTED_TITLES = {
    "Index",
    "Product 1",
    "Product 2",
    "Product 3",
    "Flaky",
    "New home",
    *(f"Depth {n}" for n in range(10)),
}


async def test_full_crawl_items_dedup_retry_robots_offsite_and_errors() -> None:
    site = Site()
    async with serve_asgi(site) as base:
        stats, items, crawler = await run_crawler(ShopSpider, settings(base))
    titles = [item["title"] for item in items]
    # Product 3 is reached by two query orders: one fetch, under the first-seen form.
    assert sorted(titles) == sorted(EXPECTED_TITLES)
    assert len(titles) == len(set(titles))
    # Every page fetched exactly once, except the 503 one (fetched twice: the retry).
    assert site.hits["/p/2"] == 1
    assert site.hits["/p/3?b=2&a=1"] == 1 and site.hits["/p/3?a=1&b=2"] == 0
    assert site.hits["/flaky"] == 2
    assert site.hits["/robots.txt"] == 1
    assert site.hits["/private/secret"] == 0
    assert stats.retries == 1
    assert stats.callback_errors == 1
    assert stats.dropped["robots"] == 1
    # Redirects go through the scheduler: the off-site target is dropped, not fetched.
    assert stats.dropped["offsite"] == 2
    assert stats.redirects == 2
    assert site.hits["/moved"] == 1 and site.hits["/new-home"] == 1
    assert items[titles.index("New home")]["url"].endswith("/new-home")
    # robots.txt's Crawl-delay became the host's delay.
    assert crawler.politeness.delay("127.0.0.1") == 0.01
    assert stats.dropped["duplicate"] > 0
    assert stats.failed == 0
    assert stats.pages == len(EXPECTED_TITLES) + 1  # + /boom, whose callback raised
    assert stats.finish_reason == "finished"


async def test_depth_limit() -> None:
    class DepthSpider(ShopSpider):
        def start_requests(self) -> Iterator[Request]:
            yield Request(self.settings["base"] + "/d/0", callback=self.parse)

    site = Site()
    async with serve_asgi(site) as base:
        stats, items = await run(DepthSpider, settings(base, depth_limit=3, obey_robots=False))
    assert sorted(item["title"] for item in items) == ["Depth 0", "Depth 1", "Depth 2", "Depth 3"]
    assert site.hits["/d/4"] == 0
    assert stats.dropped["depth"] == 1


async def test_max_pages_stops_after_exactly_that_many() -> None:
    site = Site()
    async with serve_asgi(site) as base:
        stats, items = await run(ShopSpider, settings(base, max_pages=3, obey_robots=False))
    assert stats.pages == 3
    assert sum(site.hits.values()) == 3
    assert len(items) == 3
    assert stats.finish_reason == "max_pages"


async def test_max_items() -> None:
    site = Site()
    async with serve_asgi(site) as base:
        stats, items = await run(
            ShopSpider, settings(base, max_items=2, concurrency=1, obey_robots=False)
        )
    assert len(items) == 2
    assert stats.finish_reason == "max_items"
    assert stats.pages < len(EXPECTED_TITLES)


async def test_capped_host_keeps_its_cap_while_another_host_proceeds() -> None:
    fast_done = trio.Event()
    fast_seen = 0

    def fast(seen: Seen) -> Reply:
        nonlocal fast_seen
        fast_seen += 1
        if fast_seen == 10:
            fast_done.set()
        return Reply(200, [("Content-Type", "text/html")], b"<title>fast</title>")

    async def slow(seen: Seen) -> Reply:
        # The capped host only answers once the other host got all its requests:
        # if scheduling waited on the capped host, this would never happen.
        await fast_done.wait()
        return Reply(200, [("Content-Type", "text/html")], b"<title>slow</title>")

    async with (
        serve_h11(slow, "127.0.0.2") as slow_server,
        serve_h11(fast, "127.0.0.3") as fast_server,
    ):

        class TwoHosts(Spider):
            name = "two"

            def start_requests(self) -> Iterator[Request]:
                for i in range(10):
                    yield Request(f"{slow_server.url}/s{i}", callback=self.parse)
                    yield Request(f"{fast_server.url}/f{i}", callback=self.parse)

            def parse(self, response: Response) -> dict[str, str]:
                return {"url": str(response.url), "title": response.css_first("title").text()}

        s = settings(
            "",
            concurrency=16,
            obey_robots=False,
            domains={"127.0.0.2": {"max_connections": 1}},
        )
        stats, items = await run(TwoHosts, s)
    assert len(items) == 20
    assert slow_server.peak_open == 1
    assert fast_server.peak_open > 1
    assert stats.pages == 20


async def test_callback_kinds_and_errback() -> None:
    site = Site()

    class Kinds(Spider):
        name = "kinds"
        errors: list[str] = []

        async def start_requests(self) -> AsyncIterator[Request]:
            base = self.settings["base"]
            yield Request(base + "/p/1", callback=self.plain)
            yield Request(base + "/p/2", callback=self.coroutine)
            yield Request(base + "/p/3", callback=self.agen)
            yield Request(base + "/missing", callback=self.plain, errback=self.failed)

        def plain(self, response: Response) -> dict[str, str]:
            return {"kind": "plain"}

        async def coroutine(self, response: Response) -> list[dict[str, str]]:
            return [{"kind": "coroutine"}]

        async def agen(self, response: Response) -> AsyncIterator[dict[str, str]]:
            yield {"kind": "agen"}

        def failed(self, request: Request, error: BaseException) -> dict[str, str]:
            assert isinstance(error, HTTPStatusError) and error.response.status_code == 404
            Kinds.errors.append(request.url)
            return {"kind": "errback"}

    async with serve_asgi(site) as base:
        stats, items = await run(Kinds, settings(base, obey_robots=False))
    assert sorted(item["kind"] for item in items) == ["agen", "coroutine", "errback", "plain"]
    assert Kinds.errors == [base + "/missing"]
    assert stats.errors["http_404"] == 1
    assert stats.failed == 1


async def test_python_api_crawl_function(tmp_path: Path) -> None:
    from crawler import crawl

    site = Site()
    out = tmp_path / "items.jsonl"
    async with serve_asgi(site) as base:

        class Small(ShopSpider):
            def start_requests(self) -> Iterator[Request]:
                yield Request(base + "/d/8", callback=self.parse)

        stats = await crawl(Small, settings(base, obey_robots=False), feeds=[out])
    lines = out.read_text().splitlines()
    assert len(lines) == 2 == stats.items
    assert '"Depth 9"' in lines[1] or '"Depth 9"' in lines[0]


# -- stats ------------------------------------------------------------------------------


class _TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_progress_is_drawn_on_a_tty_only(autojump_clock: trio.testing.MockClock) -> None:
    stats = Stats("x")
    stats.pages = 5
    out = _TTY()
    with trio.move_on_after(1.2):
        await run_progress(lambda: [stats], lambda: {"http://h.test:80": (2, 1)}, out)
    text = out.getvalue()
    assert "pages 5" in text and "h.test:80=2/1" in text
    assert text.endswith("\r\x1b[2K")  # the line is cleared when progress stops
    plain = io.StringIO()
    await run_progress(lambda: [stats], dict, plain)  # returns at once: not a TTY
    assert plain.getvalue() == ""


def test_stats_json(tmp_path: Path) -> None:
    stats = Stats("x")
    stats.pages = 3
    stats.dropped["offsite"] += 2
    stats.finish("finished")
    path = tmp_path / "stats.json"
    write_stats_json(path, [stats])
    data = json.loads(path.read_text())
    assert data["pages"] == 3 and data["dropped"] == {"offsite": 2}
    assert data["finish_reason"] == "finished" and data["spider"] == "x"


async def test_max_seconds_also_ends_endless_start_requests() -> None:
    site = Site()

    class Endless(Spider):
        name = "endless"

        async def start_requests(self) -> AsyncIterator[Request]:
            yield Request(self.settings["base"] + "/p/1", callback=self.parse)
            await trio.sleep_forever()

        def parse(self, response: Response) -> dict[str, str]:
            return {"title": response.css_first("title").text()}

    async with serve_asgi(site) as base:
        stats, items = await run(Endless, settings(base, max_seconds=0.2, obey_robots=False))
    assert items == [{"title": "Product 1"}]
    assert stats.finish_reason == "max_seconds"


# -- run_crawl: several spiders, one pool, exports and stats file ----------------------------


class _Quotes(Spider):
    options: ClassVar[dict[str, Any]] = {"site_url": ""}

    def start_requests(self) -> Iterator[Request]:
        yield Request(self.settings["site_url"] + "/", callback=self.parse)

    def parse(self, response: Response) -> Iterator[Any]:
        for quote in response.css("div.quote"):
            text = quote.css_first("span.text")
            assert text is not None
            yield {"text": text.text()}
        yield from response.follow_all(css="li.next a", callback=self.parse)


class QuotesA(_Quotes):
    name = "qa"


class QuotesB(_Quotes):
    name = "qb"


def test_run_crawl_runs_spiders_side_by_side(tmp_path: Path) -> None:
    from crawler.cli._demo import start_demo_site
    from crawler.engine._engine import run_crawl

    def settings_for(cls: type[Spider]) -> Settings:
        return Settings(
            serve_demo_site=True,
            obey_robots=False,
            max_pages=2,
            concurrency=2,
            options={"site_url": ""},
        )

    stats_path = tmp_path / "stats.json"
    status = run_crawl(
        [QuotesA, QuotesB],
        settings_for,
        feeds=[tmp_path / "items-{spider}.jsonl"],
        stats_json=stats_path,
        prepare=start_demo_site,
    )
    assert status == 0
    for name in ("qa", "qb"):
        lines = (tmp_path / f"items-{name}.jsonl").read_text().splitlines()
        assert len(lines) == 20  # two pages of ten quotes
    stats = json.loads(stats_path.read_text())
    assert [s["spider"] for s in stats["spiders"]] == ["qa", "qb"]
    assert all(s["pages"] == 2 and s["finish_reason"] == "max_pages" for s in stats["spiders"])


# -- retry policy ------------------------------------------------------------------------------


def test_retry_policy_backoff_cap_methods_and_status() -> None:
    from crawler.engine._retry import RetryPolicy
    from crawler.http import ConnectError, ResponseTooLarge

    policy = RetryPolicy(retry_times=2, retry_http_codes=[503], backoff=1.0, backoff_max=3.0)
    get = Request("http://a.test/")
    assert policy.should_retry_status(503) and not policy.should_retry_status(404)
    first = policy.delay_for(get, 1, status=503)
    second = policy.delay_for(get, 2, error=ConnectError("refused"))
    assert first is not None and 1.0 <= first <= 3.0
    assert second is not None and 2.0 <= second <= 3.0  # exponential, capped
    assert policy.delay_for(get, 3, status=503) is None  # retry_times used up
    assert policy.delay_for(get, 1, error=ResponseTooLarge("big")) is None  # not transient
    assert policy.delay_for(get, 1, status=503, retry_after=2.5) == pytest.approx(2.5, abs=0.5)
    post = Request("http://a.test/", method="POST", body=b"x")
    assert policy.delay_for(post, 1, status=503) is None
    post_ok = Request("http://a.test/", method="POST", body=b"x", retry_any_method=True)
    assert policy.delay_for(post_ok, 1, status=503) is not None


async def test_connection_errors_are_retried_then_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A port nobody listens on: every attempt fails to connect.
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/nothing"

    class Dead(Spider):
        name = "dead"
        failures: list[str] = []

        def start_requests(self) -> Iterator[Request]:
            yield Request(dead, callback=self.parse, errback=self.failed)

        def parse(self, response: Response) -> None:
            raise AssertionError("no response expected")

        def failed(self, request: Request, error: BaseException) -> None:
            Dead.failures.append(type(error).__name__)

        async def closed(self, reason: str) -> None:
            Dead.failures.append(f"closed: {reason}")

    stats, items = await run(Dead, settings("", obey_robots=False, retry_times=2))
    assert items == []
    assert stats.retries == 2 and stats.failed == 1
    assert stats.errors == {"ConnectError": 1}
    assert Dead.failures == ["ConnectError", "closed: finished"]
    assert any(dead in r.getMessage() and "giving up" in r.getMessage() for r in caplog.records)


async def test_sessions_keep_their_own_cookies() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = dict(scope["headers"])
        body = headers.get(b"cookie", b"")
        extra = [(b"set-cookie", b"sid=alice; Path=/")] if scope["path"] == "/login" else []
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain"), *extra],
            }
        )
        await send({"type": "http.response.body", "body": body})

    class Sessions(Spider):
        name = "sessions"

        def start_requests(self) -> Iterator[Request]:
            yield Request(
                self.settings["base"] + "/login", callback=self.logged_in, session="alice"
            )

        def logged_in(self, response: Response) -> Iterator[Request]:
            base = self.settings["base"]
            yield Request(base + "/me?who=alice", callback=self.parse, session="alice")
            yield Request(base + "/me?who=anonymous", callback=self.parse)

        def parse(self, response: Response) -> dict[str, str]:
            return {"who": response.url.query, "cookie": response.text}

    async with serve_asgi(app) as base:
        _, items = await run(Sessions, settings(base, obey_robots=False))
    assert sorted((i["who"], i["cookie"]) for i in items) == [
        ("who=alice", "sid=alice"),
        ("who=anonymous", ""),
    ]


async def test_download_delay_spaces_one_host_without_slowing_another(
    mock_clock: trio.testing.MockClock,
) -> None:
    # Virtual time: the clock skips ahead only when every task has been idle for
    # 50 ms of real time, i.e. while the crawl waits on a politeness delay. No
    # timeouts are set, so nothing else can be skipped to.
    mock_clock.autojump_threshold = 0.05
    slow, fast = Site(), Site()
    seen: dict[str, list[float]] = {"slow": [], "fast": []}

    async with serve_asgi(slow) as slow_base, serve_asgi(fast, "127.0.0.2") as fast_base:

        class Delayed(Spider):
            name = "delayed"

            def start_requests(self) -> Iterator[Request]:
                for n in range(3):
                    yield Request(f"{slow_base}/p/{n}", callback=self.parse, meta={"k": "slow"})
                    yield Request(f"{fast_base}/p/{n}", callback=self.parse, meta={"k": "fast"})

            def parse(self, response: Response) -> None:
                seen[response.meta["k"]].append(trio.current_time())

        s = settings(
            "",
            obey_robots=False,
            connect_timeout=0,
            read_timeout=0,
            write_timeout=0,
            pool_timeout=0,
            download_timeout=0,
            domains={"127.0.0.1": {"download_delay": 10.0}},
        )
        start = trio.current_time()
        stats, _ = await run(Delayed, s)
    assert stats.pages == 6
    slow_times = [t - start for t in seen["slow"]]
    fast_times = [t - start for t in seen["fast"]]
    # The delayed host got one request per 10 s; the other host did not wait for it.
    assert slow_times[1] - slow_times[0] >= 10.0 and slow_times[2] - slow_times[1] >= 10.0
    assert max(fast_times) < 10.0
